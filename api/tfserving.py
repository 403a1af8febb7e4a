"""TF Serving's REST API, so clients written for TF Serving work unchanged:
POST /v1/models/{m}[/versions/{v}]:predict (row `instances` or columnar `inputs`, {"b64": ...}
for encoded images), GET /v1/models/{m}/versions/{v} (status), and .../metadata.
GET /v1/models/{m} is inferq's own model view, which also carries TF Serving's
`model_version_status`. Errors are {"error": "..."} with TF Serving's status codes."""
from flask import Blueprint, current_app, jsonify, request

from api import sync
from api.errors import ApiError
from api.jsonbody import parse_json
from jobs.images import check_image
from jobs.inputs import InputError, decode_b64, pack_tensor

bp = Blueprint("tfserving", __name__)
STATUS = {"invalid": 400, "not_found": 404, "unavailable": 503, "deadline": 504, "internal": 500}
SIGNATURES = ("", "serving_default")


def _error(status: int, message: str):
    return jsonify({"error": message}), status


@bp.post("/v1/models/<model>:predict")
@bp.post("/v1/models/<model>/versions/<int:version>:predict")
def predict(model, version=None):
    ctx = current_app.extensions["inferq"]
    try:
        body = parse_json(request.get_data(cache=False), ctx.settings)
    except ApiError as exc:  # over the size or depth limit, or not JSON
        return _error(exc.status, f"JSON Parse error: {exc.message}")
    if not isinstance(body, dict):
        return _error(400, "JSON Value: request must be an object")
    if body.get("signature_name", "") not in SIGNATURES:
        return _error(400, f"Serving signature name: \"{body['signature_name']}\" not found "
                      "in signature def")
    if not ctx.catalog.exists(model):
        return _error(404, f"Servable not found for request: Latest({model})")
    model_input = ctx.catalog.input_of(model)
    try:
        if "instances" in body and "inputs" not in body:
            columnar, values = False, body["instances"]
        elif "inputs" in body and "instances" not in body:
            columnar, values = True, body["inputs"]
            if isinstance(values, dict):  # {"<input name>": batch}
                if list(values) != [model_input["name"]]:
                    return _error(400, f"inputs must name the model's one input "
                                  f"{model_input['name']!r}")
                values = values[model_input["name"]]
        else:
            return _error(400, "Missing 'inputs' or 'instances' key (exactly one of them)")
        if not isinstance(values, list):
            return _error(400, "instances/inputs must be a list of instances")
        inputs = [_input(v, model_input, f"instance {i}") for i, v in enumerate(values)]
        deadline = sync.timeout_s(request.args.get("timeout"), ctx.settings.max_long_poll_s)
        _, outputs = sync.run(ctx, model, version, inputs, deadline)
    except InputError as exc:
        return _error(exc.status if exc.status < 500 else 400, exc.message)
    except sync.SyncError as exc:
        return _error(STATUS[exc.kind], exc.message)
    return jsonify({"outputs": outputs} if columnar else {"predictions": outputs})


def _input(value, model_input: dict, where: str) -> bytes:
    """One instance: an encoded image as {"b64": ...} (or keyed by the input's name), or the
    numbers of a tensor instance."""
    if isinstance(value, dict) and list(value) == [model_input["name"]]:
        value = value[model_input["name"]]
    if model_input["kind"] == "image":
        if not (isinstance(value, dict) and list(value) == ["b64"]):
            raise ApiError(400, "invalid_input", f"{where}: this model takes encoded images as "
                           "{\"b64\": \"...\"}")
        data = decode_b64(value["b64"], where)
        check_image(data, current_app.extensions["inferq"].settings.max_image_pixels, where)
        return data
    return pack_tensor(value, model_input, where)


@bp.get("/v1/models/<model>/versions/<int:version>")
def version_status(model, version):
    state = current_app.extensions["inferq"].catalog.states().get(model)
    statuses = [s for s in (state or {}).get("model_version_status", [])
                if s["version"] == str(version)]
    if not statuses:
        return _error(404, f"Servable not found for request: Specific({model}, {version})")
    return jsonify({"model_version_status": statuses})


@bp.get("/v1/models/<model>/metadata")
@bp.get("/v1/models/<model>/versions/<int:version>/metadata")
def metadata(model, version=None):
    ctx = current_app.extensions["inferq"]
    served = ctx.catalog.served(model, version)
    if served is None:
        what = f"Specific({model}, {version})" if version else f"Latest({model})"
        return _error(404, f"Servable not found for request: {what}")
    image = served.get("kind", "image") == "image"
    inputs = {served["input_name"]: _tensor_info(served["input_name"],
                                                 "DT_STRING" if image else "DT_FLOAT",
                                                 [-1] if image else [-1, *served["input_shape"]])}
    outputs = {"output_0": _tensor_info("output_0", "DT_FLOAT",
                                        [-1, *(served.get("output_shape") or [])])}
    return jsonify({
        "model_spec": {"name": model, "signature_name": "", "version": str(served["version"])},
        "metadata": {"signature_def": {"signature_def": {"serving_default": {
            "inputs": inputs, "outputs": outputs,
            "method_name": "tensorflow/serving/predict"}}}}})


def _tensor_info(name: str, dtype: str, dims: list[int]) -> dict:
    return {"dtype": dtype, "name": f"{name}:0",
            "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in dims],
                             "unknown_rank": False}}
