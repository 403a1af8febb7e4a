"""KServe V2 (the Open Inference Protocol, as Triton speaks it), so Triton and KServe clients
work unchanged: server and model health and metadata, and /infer with JSON tensors or the
binary tensor extension (Inference-Header-Content-Length). Image models take a BYTES input of
encoded images; tensor models take FP32, INT32 or UINT8. Errors are {"error": "..."}."""
import base64
import binascii
import json
import re
import struct

from flask import Blueprint, Response, current_app, jsonify, request

from api import sync
from api.errors import ApiError
from api.jsonbody import parse_json
from jobs import registry
from jobs.images import check_image
from jobs.inputs import InputError, pack_tensor

bp = Blueprint("kserve", __name__)
STATUS = {"invalid": 400, "not_found": 404, "unavailable": 503, "deadline": 504, "internal": 500}
NUMERIC = {"FP32": "<f4", "FP64": "<f8", "INT32": "<i4", "INT64": "<i8", "UINT8": "u1"}
HEADER_LENGTH = "Inference-Header-Content-Length"
# ASCII digits only: str.isdigit() also takes "²", which int() refuses.
_DIGITS = re.compile(r"[0-9]{1,18}")
OUTPUT = "output_0"


class V2Error(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@bp.errorhandler(V2Error)
def _v2_error(exc):
    return jsonify({"error": exc.message}), exc.status


@bp.get("/v2")
def server_metadata():
    return jsonify({"name": "inferq", "version": "0.1.0", "extensions": ["binary_tensor_data"]})


@bp.get("/v2/health/live")
def live():
    return jsonify({"live": True})


@bp.get("/v2/health/ready")
def ready():
    ctx = current_app.extensions["inferq"]
    workers = registry.live_workers(ctx.redis, ctx.settings.heartbeat_ttl_s)
    is_ready = any(m["state"] == "available" for w in workers for m in w["models"])
    return jsonify({"ready": is_ready}), 200 if is_ready else 503


def _served(model: str, version: int | None) -> dict:
    served = current_app.extensions["inferq"].catalog.served(model, version)
    if served is None:
        raise V2Error(404, f"model {model!r}" + (f" version {version}" if version else "")
                      + " is not served")
    return served


@bp.get("/v2/models/<model>")
@bp.get("/v2/models/<model>/versions/<int:version>")
def model_metadata(model, version=None):
    served = _served(model, version)
    versions = current_app.extensions["inferq"].catalog.states()[model]["versions"]
    image = served.get("kind", "image") == "image"
    return jsonify({
        "name": model, "platform": served["platform"],  # from the model's files
        "versions": [str(v["version"]) for v in versions if v["state"] == "available"],
        "inputs": [{"name": served["input_name"], "datatype": "BYTES" if image else "FP32",
                    "shape": [-1] if image else [-1, *served["input_shape"]]}],
        "outputs": [{"name": OUTPUT, "datatype": "FP32",
                     "shape": [-1, *(served.get("output_shape") or [])]}]})


@bp.get("/v2/models/<model>/ready")
@bp.get("/v2/models/<model>/versions/<int:version>/ready")
def model_ready(model, version=None):
    served = current_app.extensions["inferq"].catalog.served(model, version)
    return jsonify({"name": model, "ready": served is not None}), 200 if served else 503


@bp.post("/v2/models/<model>/infer")
@bp.post("/v2/models/<model>/versions/<int:version>/infer")
def infer(model, version=None):
    import numpy as np  # here, not at import: ~16 MB an API process need not hold
    ctx = current_app.extensions["inferq"]
    req, binary = _split_body(ctx.settings)
    model_input = ctx.catalog.input_of(model) if ctx.catalog.exists(model) else None
    if model_input is None:
        raise V2Error(404, f"model {model!r} not found")
    tensors = req.get("inputs")
    if not isinstance(tensors, list) or len(tensors) != 1 or not isinstance(tensors[0], dict):
        raise V2Error(400, f"inputs must hold exactly one tensor, {model_input['name']!r}")
    tensor = tensors[0]
    if tensor.get("name") != model_input["name"]:
        raise V2Error(400, f"unknown input {tensor.get('name')!r}; the model's input is "
                      f"{model_input['name']!r}")
    params = _parameters(req, "the request's")
    binary_out = _requested_outputs(req, params)
    try:
        inputs = _inputs(tensor, binary, model_input, ctx.settings.max_image_pixels)
        deadline = sync.timeout_s(params.get("timeout"), ctx.settings.max_long_poll_s)
        ran, rows = sync.run(ctx, model, version, inputs, deadline)
    except InputError as exc:  # the same status as the other endpoints: 413 too_many_pixels, ...
        raise V2Error(exc.status if exc.status < 500 else 400, exc.message) from None
    except sync.SyncError as exc:
        raise V2Error(STATUS[exc.kind], exc.message) from None
    data = np.asarray(rows, dtype="<f4")
    output = {"name": OUTPUT, "datatype": "FP32", "shape": list(data.shape)}
    answer = {"model_name": model, "model_version": ran, "outputs": [output]}
    if "id" in req:
        answer["id"] = req["id"]
    if not binary_out:
        output["data"] = data.ravel().tolist()
        return jsonify(answer)
    raw = data.tobytes()
    output["parameters"] = {"binary_data_size": len(raw)}
    header = json.dumps(answer).encode()
    return Response(header + raw, content_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(header))})


def _split_body(settings) -> tuple[dict, bytes]:
    """The JSON request and, with the binary extension, the binary data that follows it."""
    body = request.get_data(cache=False)
    length = request.headers.get(HEADER_LENGTH)
    if length is not None:
        if not _DIGITS.fullmatch(length.strip()) or int(length) > len(body):
            raise V2Error(400, f"{HEADER_LENGTH} must be the byte length of the JSON header")
        body, binary = body[:int(length)], body[int(length):]
    else:
        binary = b""
    try:
        req = parse_json(body, settings)
    except ApiError as exc:  # over the size or depth limit, or not JSON
        raise V2Error(exc.status, exc.message) from None
    if not isinstance(req, dict):
        raise V2Error(400, "request must be a JSON object")
    if not isinstance(req.get("id", ""), str):
        raise V2Error(400, "id must be a string")
    return req, binary


def _parameters(obj: dict, whose: str) -> dict:
    """`obj`'s "parameters": an object, or {} when absent or null."""
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise V2Error(400, f"{whose} parameters must be an object")
    return params


def _requested_outputs(req: dict, params) -> bool:
    """Whether the output goes back as binary data; checks the outputs asked for exist."""
    binary = bool(params.get("binary_data_output")) if isinstance(params, dict) else False
    wanted = req.get("outputs")
    if wanted is None:
        return binary
    if not isinstance(wanted, list) or not all(isinstance(o, dict) for o in wanted):
        raise V2Error(400, "outputs must be a list of {\"name\": ...}")
    for out in wanted:
        if out.get("name") != OUTPUT:
            raise V2Error(400, f"unknown output {out.get('name')!r}; the model's output is "
                          f"{OUTPUT!r}")
        binary = bool(_parameters(out, "an output's").get("binary_data", binary))
    return binary


def _inputs(tensor: dict, binary: bytes, model_input: dict, max_pixels: int) -> list[bytes]:
    import numpy as np  # here, not at import: ~16 MB an API process need not hold
    shape, datatype = tensor.get("shape"), tensor.get("datatype")
    if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d >= 0
                                                       for d in shape)):
        raise V2Error(400, "shape must be a list of sizes, the batch first")
    size = _parameters(tensor, "an input's").get("binary_data_size")
    if size is not None and (not isinstance(size, int) or size < 0 or size > len(binary)):
        raise V2Error(400, "binary_data_size does not match the binary data sent")
    raw = binary[:size] if size is not None else None
    if model_input["kind"] == "image":
        if datatype != "BYTES":
            raise V2Error(400, "this model takes encoded images: a BYTES input")
        items = _bytes_items(raw) if raw is not None else _json_bytes(tensor.get("data"))
        if len(items) != int(np.prod(shape)):
            raise V2Error(400, f"{len(items)} elements do not fill shape {shape}")
        for i, data in enumerate(items):
            check_image(data, max_pixels, f"element {i}")
        return items
    if not isinstance(datatype, str) or datatype not in NUMERIC:  # a list or object: unhashable
        raise V2Error(400, f"this model takes numbers: one of {', '.join(NUMERIC)}")
    try:
        if raw is not None:
            values = np.frombuffer(raw, dtype=NUMERIC[datatype]).reshape(shape)
        else:
            values = np.asarray(tensor.get("data"), dtype=np.float64).reshape(shape)
    except (TypeError, ValueError, OverflowError) as exc:  # Overflow: an int past float64
        raise V2Error(400, f"data does not fit shape {shape}: {exc}") from None
    return [pack_tensor(row.tolist(), model_input, f"row {i}") for i, row in enumerate(values)]


def _bytes_items(raw: bytes) -> list[bytes]:
    """The binary BYTES layout: each element is a little-endian uint32 length, then its bytes."""
    items, at = [], 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise V2Error(400, "truncated BYTES element length")
        (n,) = struct.unpack_from("<I", raw, at)
        if at + 4 + n > len(raw):
            raise V2Error(400, "truncated BYTES element")
        items.append(raw[at + 4:at + 4 + n])
        at += 4 + n
    return items


def _json_bytes(data) -> list[bytes]:
    """BYTES elements in JSON: base64 text (encoded images are not valid UTF-8 text)."""
    import numpy as np  # here, not at import: ~16 MB an API process need not hold
    flat = list(np.asarray(data, dtype=object).ravel()) if isinstance(data, list) else None
    if not flat or not all(isinstance(x, str) for x in flat):
        raise V2Error(400, "BYTES data in JSON must be base64 strings")
    try:
        return [base64.b64decode(x, validate=True) for x in flat]
    except (binascii.Error, ValueError):
        raise V2Error(400, "BYTES data in JSON must be base64 strings") from None
