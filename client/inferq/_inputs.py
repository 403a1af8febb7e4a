"""A job's body from what the caller passes: images (multipart, or one raw image body) or
tensor rows (JSON `instances`, as TF Serving takes them)."""
from .images import image_bytes, media_type


def as_list(inputs) -> list:
    """The job's inputs: one input or a list of them. A list of numbers, a dict of features
    or a one-dimensional array is one tensor row; a 2-D array is one row per input."""
    if hasattr(inputs, "tolist") and hasattr(inputs, "ndim"):  # a numpy array
        rows = inputs.tolist()
        return rows if inputs.ndim > 1 else [rows]
    if isinstance(inputs, (list, tuple)):
        if inputs and all(isinstance(x, (int, float)) for x in inputs):
            return [list(inputs)]
        return list(inputs)
    return [inputs]


def _is_tensor(item) -> bool:
    return isinstance(item, (list, tuple, dict)) or hasattr(item, "tolist")


def job_body(inputs, webhook: str | None = None, events=None) -> dict:
    """The request's body as httpx keyword arguments (content, files, data, json, params,
    headers)."""
    items = as_list(inputs)
    if not items:
        raise ValueError("a job needs at least one input")
    events = ",".join(events) if isinstance(events, (list, tuple, set)) else events
    options = {k: v for k, v in (("webhook", webhook), ("webhook_events_filter", events)) if v}
    if any(_is_tensor(x) for x in items):
        rows = [x.tolist() if hasattr(x, "tolist") else x for x in items]
        if "webhook_events_filter" in options:
            options["webhook_events_filter"] = options["webhook_events_filter"].split(",")
        return {"json": {"instances": rows, **options}}
    images = [image_bytes(x) for x in items]
    kind = media_type(images[0])
    if len(images) == 1 and kind:
        # One image as the whole body: the API skips multipart parsing.
        return {"content": images[0], "headers": {"Content-Type": kind}, "params": options}
    return {"files": [("image", (f"image{i}", data, "application/octet-stream"))
                      for i, data in enumerate(images)], "data": options}
