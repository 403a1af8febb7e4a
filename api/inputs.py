"""Reading a submit request: the images (multipart or JSON base64), each checked with Pillow,
and the submit options."""
import base64
import binascii
import json

from flask import request

from api.errors import ApiError
from api.images import check_image


def read_request(settings) -> tuple[list[bytes], dict]:
    """The checked input images, and the submit options (webhook, webhook_events_filter)."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        inputs = [f.read() for f in request.files.getlist("image")]
        if not inputs:
            raise ApiError(400, "no_input", "send one or more files in the multipart field 'image'")
        events = [e for v in request.form.getlist("webhook_events_filter") for e in v.split(",")]
        options = {"webhook": request.form.get("webhook"),
                   "webhook_events_filter": events or None}
    elif mimetype == "application/json":
        body = _json_body(request.get_data(cache=False))
        inputs = _json_images(body)
        options = {"webhook": body.get("webhook"),
                   "webhook_events_filter": body.get("webhook_events_filter")}
    else:
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data with 'image' "
                       "files, or application/json with {\"images\": [{\"b64\": ...}]}")
    if len(inputs) > settings.max_inputs_per_job:
        raise ApiError(400, "too_many_inputs", f"{len(inputs)} inputs in one job; the limit is "
                       f"{settings.max_inputs_per_job} (INFERQ_MAX_INPUTS_PER_JOB)")
    for i, data in enumerate(inputs):
        check_image(data, settings.max_image_pixels, f"input {i}")
    return inputs, options


def _json_body(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    return body


def _json_images(body: dict) -> list[bytes]:
    images = body.get("images")
    if not isinstance(images, list) or not images:
        raise ApiError(400, "no_input", "JSON body must be {\"images\": [{\"b64\": \"...\"}, ...]} "
                       "with at least one image")
    out = []
    for i, item in enumerate(images):
        b64 = item.get("b64") if isinstance(item, dict) else None
        if not isinstance(b64, str):
            raise ApiError(400, "invalid_input", f"images[{i}] must be an object with a string "
                           f"field 'b64'")
        if b64.startswith("data:") and "," in b64:
            b64 = b64.split(",", 1)[1]  # accept data URLs as browsers make them
        try:
            out.append(base64.b64decode(b64, validate=True))
        except (binascii.Error, ValueError):
            raise ApiError(400, "invalid_base64", f"images[{i}].b64 is not valid base64") from None
    return out
