"""Reading a submit request: the images (multipart, JSON base64, or one raw image body), each
checked with Pillow, and the submit options."""
from flask import request

from api import multipart
from api.errors import ApiError
from api.jsonbody import parse_json
from api.schemas import SubmitForm, SubmitImages, TensorInstances, WebhookOptions, validate
from jobs.images import check_image
from jobs.inputs import decode_b64, pack_tensor

# What each field's check failure answers: (code, message); "field[]" for one bad item.
_NO_IMAGES = ("no_input", "JSON body must be {\"images\": [{\"b64\": \"...\"}, ...]} with at "
              "least one image")
_WEBHOOK = {
    "webhook": ("invalid_webhook", "webhook must be an http(s) URL string of at most 2048 "
                "characters"),
    "webhook_events_filter": ("invalid_webhook", "webhook_events_filter must be a non-empty "
                              "list of started, completed"),
}
_IMAGES_ERRORS = {"images": _NO_IMAGES, "images[]": (
    "invalid_input", "images[{i}] must be an object with a string field 'b64'"), **_WEBHOOK}
_FORM_ERRORS = {"image": ("no_input", "send one or more files in the multipart field 'image'"),
                **_WEBHOOK}
_INSTANCES_ERRORS = {
    "instances": ("no_input", "JSON body must be {\"instances\": [...]} with at least one "
                  "instance"),
    "instances[]": ("invalid_input", "instances[{i}] must be a list of numbers (a number "
                    "for a scalar input), or an object keyed by feature name"),
}
# A body that is one encoded image; its options come from the query string.
RAW_IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif")


def read_request(settings, model_input: dict) -> tuple[list[bytes], dict]:
    """The checked inputs (encoded images, or packed tensor instances), and the submit options
    (webhook, webhook_events_filter). `model_input` is what the model takes."""
    mimetype = request.mimetype
    if model_input["kind"] == "tensor":
        if mimetype != "application/json":
            raise ApiError(415, "unsupported_media_type", "this model takes tensors: send "
                           "application/json with {\"instances\": [...]}")
        body = _json_body(request.get_data(cache=False), settings)
        inputs = tensor_instances(body, model_input)
        _check_count(settings, inputs)
        return inputs, _options(body)
    if mimetype == "multipart/form-data":
        inputs, options = _form(*_multipart())
    elif mimetype in RAW_IMAGE_TYPES:
        # No multipart parsing: the body is the image (any accepted format, whatever the
        # subtype says: check_image looks at the bytes).
        inputs, options = _form(request.args, [request.get_data(cache=False)])
    elif mimetype == "application/json":
        body = _json_body(request.get_data(cache=False), settings)
        if "instances" in body and "images" not in body:
            raise ApiError(400, "invalid_input", "this model takes images: send "
                           "{\"images\": [{\"b64\": ...}]} or multipart 'image' files")
        inputs, options = _json_images(body)
    else:
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data with 'image' "
                       "files, application/json with {\"images\": [{\"b64\": ...}]}, or "
                       f"one image as the body ({', '.join(RAW_IMAGE_TYPES)})")
    _check_count(settings, inputs)
    for i, data in enumerate(inputs):
        check_image(data, settings.max_image_pixels, f"input {i}")
    return inputs, options


def _multipart():
    """A multipart body's text fields and its 'image' files: split here when it is plain,
    else by werkzeug (from the same bytes, kept for it)."""
    parsed = multipart.parse(request.get_data(cache=True), request.mimetype_params.get("boundary"),
                             request.max_form_parts, request.max_form_memory_size)
    if parsed is None:
        return request.form, [f.read() for f in request.files.getlist("image")]
    fields, files = parsed
    return fields, files.getlist("image")


def _form(fields, images: list[bytes]) -> tuple[list[bytes], dict]:
    """Images and options from form fields (multipart) or query parameters (a raw image)."""
    form = validate(SubmitForm, {
        "image": images, "webhook": fields.get("webhook"),
        "webhook_events_filter": fields.getlist("webhook_events_filter") or None}, _FORM_ERRORS)
    # Each value of the field may name several events, comma-separated.
    events = [e for v in form.webhook_events_filter or [] for e in v.split(",")]
    return form.image, _options({"webhook": form.webhook, "webhook_events_filter": events or None})


def _check_count(settings, inputs):
    if len(inputs) > settings.max_inputs_per_job:
        raise ApiError(400, "too_many_inputs", f"{len(inputs)} inputs in one job; the limit is "
                       f"{settings.max_inputs_per_job} (INFERQ_MAX_INPUTS_PER_JOB)")
    if len(inputs) > settings.max_backlog:  # a 503 would ask the client to wait forever
        raise ApiError(400, "too_many_inputs", f"{len(inputs)} inputs in one job, more than "
                       f"a model's whole backlog ({settings.max_backlog}, INFERQ_MAX_BACKLOG): "
                       "it could never be queued; send fewer at a time")


def _options(body: dict) -> dict:
    return validate(WebhookOptions, body, _WEBHOOK).model_dump()


def tensor_instances(body: dict, model_input: dict) -> list[bytes]:
    """TF Serving's row format: each instance a (nested) list of numbers, or an object keyed by
    the model's feature names. Each becomes one packed input of the model's dtype and shape."""
    instances = validate(TensorInstances, body, _INSTANCES_ERRORS).instances
    return [pack_tensor(inst, model_input, f"instances[{i}]") for i, inst in enumerate(instances)]


def _json_body(raw: bytes, settings) -> dict:
    body = parse_json(raw, settings)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    return body


def _json_images(body: dict) -> tuple[list[bytes], dict]:
    checked = validate(SubmitImages, body, _IMAGES_ERRORS)
    images = [decode_b64(item.b64, f"images[{i}].b64") for i, item in enumerate(checked.images)]
    return images, checked.model_dump(exclude={"images"})
