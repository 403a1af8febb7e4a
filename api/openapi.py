"""GET /openapi.json (OpenAPI 3.1) and GET /docs (Swagger UI reading it, its files served from
the flask-swagger-ui package, so the page works offline).

The document is generated, never written by hand. apispec assembles it from:
- app.url_map: every path, method and path parameter, exactly as Flask routes them;
- the pydantic models in api/schemas.py, whose JSON Schemas become components/schemas (the
  request models are the ones the handlers validate with);
- OPERATIONS below: for each Flask endpoint ("blueprint.function"), a summary, the request body
  and query/header parameter models, and the answer for every status code it can return.

To document a new route: declare its request and response models in api/schemas.py, then add
`"<blueprint>.<function>": Op(...)` to OPERATIONS. One entry covers every rule of the endpoint
(e.g. with and without /versions/<int:version>). Path parameters need nothing unless their
name is new and has a known format (PATH_PARAMS). tests/test_openapi.py fails while any route
of the app is missing here, and fuzzes every operation against a live server with schemathesis.
"""
import re
from dataclasses import dataclass, field
from importlib.resources import files

from apispec import APISpec
from flask import Blueprint, Response, current_app, jsonify, send_file
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api import auth
from api.console import EXAMPLE_TYPES, TYPES as CONSOLE_TYPES
from api.errors import ApiError
from api.inputs import RAW_IMAGE_TYPES
from api.upload import RAW_TYPES as RAW_BATCH_TYPES
from api import schemas as s

bp = Blueprint("openapi", __name__)
REF = "#/components/schemas/{model}"
JSON = "application/json"


@dataclass
class Resp:
    description: str
    # media type -> a model, a tuple of models (any of them), or a plain JSON Schema
    content: dict = field(default_factory=dict)
    headers: tuple[str, ...] = ()
    # OpenAPI links: name -> (operationId, {parameter: runtime expression})
    links: dict = field(default_factory=dict)


@dataclass
class Op:
    summary: str
    responses: dict[int, Resp]
    body: dict = field(default_factory=dict)  # media type -> model (or tuple, or JSON Schema)
    query: type[BaseModel] | None = None  # its fields are the query parameters
    headers: type[BaseModel] | None = None  # its fields (by alias) are the request headers
    description: str = ""


def ok(model, description: str = "OK", *headers: str) -> Resp:
    return Resp(description, {JSON: model}, headers)


# Response headers, by name. "required": sent on every answer that lists the header.
HEADERS = {
    "Location": {"description": "The URL of what was made", "required": True,
                 "schema": {"type": "string"}},
    "Retry-After": {"description": "Seconds to wait before trying again", "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "Preference-Applied": {"description": "`wait=N` when `Prefer: wait` was honoured",
                           "schema": {"type": "string"}},
    "Idempotent-Replayed": {"description": "`true` when the Idempotency-Key matched an earlier "
                            "request", "schema": {"type": "string", "enum": ["true"]}},
    "Inference-Header-Content-Length": {"description": "Binary answer: the length of its JSON "
                                        "header", "required": True,
                                        "schema": {"type": "string", "pattern": "^[0-9]+$"}},
}

# Swagger UI's files that /docs loads, with their media types.
DOCS_ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript",
               "favicon-32x32.png": "image/png"}

# Path parameters with a known format, by name (the examples are the demo model's); others
# are typed from their converter.
PATH_PARAMS = {
    "model": {"type": "string", "pattern": s.MODEL_NAME, "examples": ["shapes"]},
    "version": {"type": "integer", "minimum": 0, "examples": [1]},
    "job_id": {"type": "string", "pattern": s.JOB_ID},
    "batch_id": {"type": "string", "pattern": s.BATCH_ID},
    "asset": {"type": "string", "enum": sorted(DOCS_ASSETS)},
    "name": {"type": "string", "examples": ["console.js", "circle.png"]},
}

# inferq's own errors: {"error": {"code", "message"}}.
ERRORS = {
    400: "Invalid request; `error.code` says what is wrong",
    401: "No API key, or an unknown one (`Authorization: Bearer <key>`)",
    403: "Needs an admin key: model administration (with no keys set, INFERQ_MODEL_ADMIN=1) "
         "and the worker list",
    404: "Unknown model, version, job or batch (or the job's result expired)",
    409: "Conflicts with the current state",
    413: "Body over INFERQ_MAX_BODY_BYTES, an image over INFERQ_MAX_IMAGE_PIXELS, or a batch "
         "file over INFERQ_BATCH_MAX_BYTES",
    414: "The request line (the URL with its query string) is over the server's limit",
    431: "Too many request headers, or one over the server's limit",
    415: "Not an accepted image format, neither multipart nor JSON, or a batch file that is "
         "not a tar, zip or JSONL file",
    422: "The Idempotency-Key was used for a different request",
    429: "Over the tenant's rate limit, or its limit of batches that have not ended; retry "
         "after Retry-After seconds",
    503: "Overloaded, no version served yet, or the job store is unavailable",
    507: "The model repository or the batch store cannot be written (permissions, a "
         "read-only or full disk)",
}


def errors(*statuses: int) -> dict[int, Resp]:
    return {st: Resp(ERRORS[st], {JSON: s.Error}, ("Retry-After",) if st in (429, 503) else ())
            for st in statuses}


# TF Serving and KServe answer {"error": "..."}; the body limit and a Redis outage are
# answered by the app's handlers in inferq's form.
PROTOCOL_ERRORS = {
    400: "Invalid request", 404: "Model or version not served",
    415: "Not an accepted image format",
    500: "The model failed on this input", 504: "The deadline passed; the request was canceled",
}


def protocol_errors(*statuses: int) -> dict[int, Resp]:
    out = {st: Resp(PROTOCOL_ERRORS[st], {JSON: s.ProtocolError}) for st in statuses}
    out[413] = Resp(ERRORS[413], {JSON: s.Error})
    out[503] = Resp("Overloaded, no version served yet, or the job store is unavailable",
                    {JSON: (s.ProtocolError, s.Error)})
    return out


# What a client does next with a job it made (schemathesis' stateful phase follows these).
JOB_LINKS = {name: (op_id, {"job_id": "$response.body#/id"}) for name, op_id in (
    ("GetJob", "jobs_get"), ("CancelJob", "jobs_cancel"), ("JobDeliveries", "jobs_deliveries"))}
SUBMIT_BODY = {JSON: (s.SubmitImages, s.SubmitInstances), "multipart/form-data": s.SubmitForm,
               # One image as the whole body (OpenAPI 3.1: a media type with no schema is bytes).
               **{media: {} for media in RAW_IMAGE_TYPES}}
SUBMIT = Op(
    "Submit a job", description="Images go as multipart `image` files, JSON base64, or one "
    "image as the body (`Content-Type: image/...`; then `webhook` and `webhook_events_filter` "
    "are query parameters); tensor models take `{\"instances\": [...]}`. Answers 202 with "
    "the queued job, or 200 with the "
    "finished job when `Prefer: wait=N` saw it end (or an Idempotency-Key replayed it).",
    body=SUBMIT_BODY, headers=s.SubmitHeaders,
    responses={202: Resp("Queued", {JSON: s.Job}, ("Location",), JOB_LINKS),
               200: Resp("Finished within Prefer: wait, or replayed", {JSON: s.Job},
                         ("Location",), JOB_LINKS),
               **errors(400, 404, 409, 413, 415, 422, 503)})

# What a client does next with a batch it made.
BATCH_LINKS = {name: (op_id, {"batch_id": "$response.body#/id"}) for name, op_id in (
    ("GetBatch", "batches_get"), ("CancelBatch", "batches_cancel"),
    ("BatchResults", "batches_results"), ("BatchErrors", "batches_errors"),
    ("DeleteBatch", "batches_delete"))}
NDJSON = "application/x-ndjson"

OPERATIONS: dict[str, Op] = {
    "jobs.submit": SUBMIT,
    "jobs.submit_to_version": SUBMIT,
    "jobs.list_jobs": Op(
        "Your recent jobs, newest first", description="A page of `limit` jobs; pass its "
        "`next` as `after` for the next page. Jobs whose result expired are left out.",
        query=s.JobListQuery, responses={200: ok(s.JobList), **errors(400, 503)}),
    "jobs.get": Op("Get a job (long-poll with ?wait=N)", query=s.JobQuery,
                   responses={200: ok(s.Job), **errors(400, 404, 503)}),
    "jobs.cancel": Op("Cancel a queued or running job", {
        200: ok(s.Job, "Canceled"), **errors(404, 409, 503)}),
    "jobs.deliveries": Op("The job's webhook deliveries", {
        200: ok(s.Deliveries), **errors(404, 503)}),
    "batches.create": Op(
        "Create a batch from a file of inputs", description="The file goes as the multipart "
        "field `input` (`curl -F input=@photos.tar`), or as the whole body with one of the "
        "Content-Types below (then the options are query parameters). A tar (or .tar.gz) or "
        "zip of images, each member's path its custom_id; or JSONL, one {\"custom_id\", "
        "\"b64\"} (image models) or {\"custom_id\", \"inputs\"} (tensor models) object a "
        "line. The format is read from the content, never the name. Answers 202 with the "
        "batch (status validating), which the feeder then validates and runs.",
        body={"multipart/form-data": s.BatchForm,
              **{media: {} for media in RAW_BATCH_TYPES}},
        query=s.BatchQueryOptions,
        responses={202: Resp("Accepted", {JSON: s.Batch}, ("Location",), BATCH_LINKS),
                   **errors(400, 404, 413, 415, 429, 503, 507)}),
    "batches.list_batches": Op("Your batches, newest first", query=s.BatchListQuery,
                               responses={200: ok(s.BatchList), **errors(400, 503)}),
    "batches.get": Op("Get a batch (long-poll with ?wait=N)", query=s.BatchQuery,
                      responses={200: ok(s.Batch), **errors(400, 404, 503)}),
    "batches.cancel": Op("Cancel a batch: nothing more is fed; what finished stays in its "
                         "files", {200: ok(s.Batch, "Cancelling (or the status it had "
                                                    "already ended with)"),
                                   **errors(404, 503)}),
    "batches.delete": Op("Delete a batch that has ended, and its files", {
        204: Resp("Deleted"), **errors(404, 409, 503, 507)}),
    "batches.results": Op(
        "The results so far: one JSON line per input that succeeded",
        description="`{\"custom_id\", \"index\", \"outputs\", \"model_version\"}` a line; "
        "complete once the batch is completed.",
        responses={200: Resp("JSONL", {NDJSON: {"type": "string"}}), **errors(404, 503)}),
    "batches.errors": Op(
        "The errors so far: one JSON line per input that failed",
        description="`{\"custom_id\", \"index\", \"error\": {\"code\", \"message\"}}` a "
        "line; complete once the batch is completed.",
        responses={200: Resp("JSONL", {NDJSON: {"type": "string"}}), **errors(404, 503)}),
    "models.list_models": Op("Every model, its versions and their states", {
        200: ok(s.Models), **errors(503)}),
    "models.get_model": Op("One model", {200: ok(s.Model), **errors(404, 503)}),
    "admin.upload": Op("Upload a model version (admin key)",
                       body={"multipart/form-data": s.UploadForm},
                       responses={201: ok(s.ModelChange, "Written; workers load it",
                                          "Location"),
                                  **errors(400, 403, 409, 413, 507)}),
    "admin.remove_version": Op("Unload and remove a model version (admin key)", {
        202: ok(s.ModelChange, "Removed; workers unload it"),
        **errors(400, 403, 404, 503, 507)}),
    "admin.remove_model": Op("Unload and remove a model (admin key)", {
        202: ok(s.ModelChange, "Removed; workers unload it"),
        **errors(400, 403, 404, 503, 507)}),
    "stats.stats": Op(
        "Live figures per model version over the last minute", description="Backlog and "
        "workers now; jobs and inputs finished per second, and the submit-to-finish p50 and "
        "p99 of the jobs finished, over the last `window_s` seconds.",
        responses={200: ok(s.Stats), **errors(503)}),
    "workers.list_workers": Op(
        "Live workers, what they serve, their batches over the last minute (admin key)",
        {200: ok(s.Workers), **errors(403, 503)}),
    "health.healthz": Op("The API process is up", {200: ok(s.Health)}),
    "metrics.metrics": Op("Counters and gauges for Prometheus", {
        200: Resp("The Prometheus text format, version 0.0.4",
                  {"text/plain": {"type": "string"}}), **errors(503)}),
    "health.readyz": Op("Redis answers and a worker serves a model", {
        200: ok(s.Ready), 503: Resp("Not ready", {JSON: s.Error}, ("Retry-After",))}),
    "tfserving.predict": Op(
        "Predict (TF Serving REST)", body={JSON: s.TFServingPredict}, query=s.TimeoutQuery,
        responses={200: ok((s.TFServingPredictions, s.TFServingOutputs)),
                   **protocol_errors(400, 404, 415, 500, 504)}),
    "tfserving.version_status": Op("Version status (TF Serving REST)", {
        200: ok(s.TFServingVersions), **protocol_errors(404)}),
    "tfserving.metadata": Op("Signature metadata (TF Serving REST)", {
        200: ok(s.TFServingMetadata), **protocol_errors(404)}),
    "kserve.server_metadata": Op("Server metadata (KServe V2)", {200: ok(s.V2Server)}),
    "kserve.live": Op("Server liveness (KServe V2)", {200: ok(s.V2Live)}),
    "kserve.ready": Op("Server readiness (KServe V2)", {
        200: ok(s.V2Ready), 503: Resp("Not ready, or the job store is unavailable",
                                      {JSON: (s.V2Ready, s.Error)})}),
    "kserve.model_metadata": Op("Model metadata (KServe V2)", {
        200: ok(s.V2Model), **protocol_errors(404)}),
    "kserve.model_ready": Op("Is the model ready (KServe V2)", {
        200: ok(s.V2ModelReady), 503: Resp("Not ready, or the job store is unavailable",
                                           {JSON: (s.V2ModelReady, s.Error)})}),
    "kserve.infer": Op(
        "Inference (KServe V2)", description="JSON tensors, or the binary tensor extension: "
        "the JSON header, then the tensors' bytes, with Inference-Header-Content-Length.",
        body={JSON: s.V2InferRequest, "application/octet-stream": {"type": "string",
                                                                   "format": "binary"}},
        responses={200: Resp("OK", {JSON: s.V2InferResponse,
                                    "application/octet-stream": {"type": "string",
                                                                 "format": "binary"}}),
                   **protocol_errors(400, 404, 500, 504)}),
    "openapi.document": Op("This OpenAPI document", {
        200: ok({"type": "object"})}),
    "openapi.docs": Op("API documentation (Swagger UI)", {
        200: Resp("HTML", {"text/html": {"type": "string"}})}),
    "openapi.docs_asset": Op("A file of the Swagger UI page", {
        200: Resp("The file", {media: {"type": "string"} for media in
                               sorted(set(DOCS_ASSETS.values()))}),
        404: Resp("No such file", {JSON: s.Error})}),
    "index.index": Op("To the web console", {
        302: Resp("Redirect to /console", headers=("Location",))}),
    "index.v1": Op("Where to start: links to the console, the docs, the models and health", {
        200: ok(s.Index)}),
    "console.page": Op("The web console (HTML; it asks for an API key in the browser)", {
        200: Resp("HTML", {"text/html": {"type": "string"}})}),
    "console.asset": Op("A file of the web console (CSS, JavaScript module)", {
        200: Resp("The file", {media: {"type": "string"} for media in
                               sorted(set(CONSOLE_TYPES.values()))}),
        404: Resp("No such file", {JSON: s.Error})}),
    "console.examples": Op("The example images the console offers", {200: ok(s.Examples)}),
    "console.example": Op("An example image", {
        200: Resp("The image", {media: {"type": "string", "format": "binary"} for media in
                                sorted(set(EXAMPLE_TYPES.values()))}),
        404: Resp("No such example", {JSON: s.Error})}),
    "index.favicon": Op("No icon (204), so browsers stop asking", {204: Resp("No content")}),
}

_RULE_ARG = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


@bp.get("/openapi.json")
def document():
    ext = current_app.extensions
    if "inferq.openapi" not in ext:
        ext["inferq.openapi"] = build(current_app)
    return jsonify(ext["inferq.openapi"])


@bp.get("/docs")
def docs():
    return Response(DOCS_HTML, content_type="text/html; charset=utf-8")


@bp.get("/docs/assets/<asset>")
def docs_asset(asset):
    if asset not in DOCS_ASSETS:
        raise ApiError(404, "not_found", f"no docs file {asset!r}")
    return send_file(files("flask_swagger_ui") / "dist" / asset, mimetype=DOCS_ASSETS[asset],
                     max_age=3600)


# Paths relative to /docs, so the page works behind a path prefix too. No validatorUrl: the
# page would otherwise fetch a badge from swagger.io.
DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>inferq API</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
</head><body><div id="ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "openapi.json", dom_id: "#ui", validatorUrl: null});</script>
<noscript>The API is described in <a href="openapi.json">openapi.json</a>.</noscript>
</body></html>
"""


def build(app) -> dict:
    """The OpenAPI document for every route of `app` that OPERATIONS describes."""
    spec = APISpec(title="inferq", version="1", openapi_version="3.1.0", info={
        "description": "Queue-backed inference: submit jobs, poll or long-poll them, get "
        "webhooks; TF Serving REST and KServe V2 endpoints answer synchronously."})
    refs = _register_models(spec)
    ctx = app.extensions["inferq"]
    # What this server asks of callers: keys only when it has some, 429 only with limits.
    guard = {}
    if ctx.keyring.enabled:
        spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                                   "description": "An INFERQ_API_KEYS key"})
        guard[401] = errors(401)[401]
    if ctx.settings.rate_limit_submit or ctx.settings.rate_limit_read:
        guard[429] = errors(429)[429]
    seen: dict[str, int] = {}
    paths: dict[str, dict] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        op = OPERATIONS.get(rule.endpoint)
        if op is None:
            continue  # tests/test_openapi.py lists what is missing
        path, params = _path(rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            n = seen[rule.endpoint] = seen.get(rule.endpoint, 0) + 1
            op_id = rule.endpoint.replace(".", "_") + (f"_{n}" if n > 1 else "")
            guarded = not auth.is_open(rule.endpoint, ctx.settings)
            paths.setdefault(path, {})[method.lower()] = _operation(
                op, op_id, rule, params, refs, guard if guarded else {})
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def _register_models(spec) -> dict:
    """Every model the operations name, as components; returns model -> {"$ref": ...}."""
    requests, responses = set(), set()
    for op in OPERATIONS.values():
        requests.update(_models_in(op.body.values()))
        for resp in op.responses.values():
            responses.update(_models_in(resp.content.values()))
    pairs = [(m, "validation") for m in requests] + [(m, "serialization") for m in responses]
    pairs.sort(key=lambda p: (p[0].__name__, p[1]))
    mapping, defs = models_json_schema(pairs, ref_template=REF)
    for name, schema in sorted(defs.get("$defs", {}).items()):
        spec.components.schema(name, schema)
    return mapping


def _models_in(values) -> list:
    out = []
    for v in values:
        out += [m for m in (v if isinstance(v, tuple) else (v,)) if isinstance(m, type)]
    return out


def _schema(value, mode: str, refs: dict) -> dict:
    if isinstance(value, tuple):
        return {"anyOf": [_schema(v, mode, refs) for v in value]}
    if isinstance(value, type):
        return refs[(value, mode)]
    return value


def _path(rule: str) -> tuple[str, list[dict]]:
    """A Flask rule as an OpenAPI path, and its path parameters."""
    params = []
    for converter, name in _RULE_ARG.findall(rule):
        schema = PATH_PARAMS.get(name) or (
            {"type": "integer", "minimum": 0} if converter == "int" else {"type": "string"})
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return _RULE_ARG.sub(r"{\2}", rule), params


def _operation(op: Op, op_id: str, rule, params: list[dict], refs: dict, guard: dict) -> dict:
    out = {"operationId": op_id, "summary": op.summary, "tags": [rule.endpoint.split(".")[0]],
           "parameters": params + _params(op.query, "query") + _params(op.headers, "header"),
           "responses": {}}
    if op.description:
        out["description"] = op.description
    if op.body:
        out["requestBody"] = {"required": True, "content": {
            media: {"schema": _schema(m, "validation", refs)} for media, m in op.body.items()}}
    # gunicorn answers these before any route runs, so every operation can get them.
    responses = {**op.responses, **guard, **errors(414, 431)}
    if 401 in guard:
        out["security"] = [{"bearer": []}]
    if params:  # a path parameter that fits no route's converter gets the router's 404
        responses[404] = _with_router_404(responses.get(404))
    for status, resp in responses.items():
        entry = {"description": resp.description}
        if resp.content:
            entry["content"] = {media: {"schema": _schema(m, "serialization", refs)}
                                for media, m in resp.content.items()}
        if resp.headers:
            entry["headers"] = {h: HEADERS[h] for h in resp.headers}
        if resp.links:
            entry["links"] = {name: {"operationId": target, "parameters": values}
                              for name, (target, values) in resp.links.items()}
        out["responses"][str(status)] = entry
    return out


def _with_router_404(resp: Resp | None) -> Resp:
    """The 404 answer, widened to the router's own (inferq's error form)."""
    if resp is None:
        return Resp("No such route", {JSON: s.Error})
    model = resp.content.get(JSON)
    models = model if isinstance(model, tuple) else (model,)
    if s.Error in models:
        return resp
    return Resp(resp.description + "; or no such route",
                {**resp.content, JSON: (*models, s.Error)}, resp.headers, resp.links)


def _params(model: type[BaseModel] | None, where: str) -> list[dict]:
    """A model's fields as query or header parameters (headers by their alias)."""
    if model is None:
        return []
    schema = model.model_json_schema(by_alias=True)
    out = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        nullable = [p for p in prop.pop("anyOf", []) if p.get("type") != "null"]
        if nullable:  # "X or null": a parameter is absent, never null
            prop.update(nullable[0])
        if prop.get("default", 0) is None:
            del prop["default"]
        prop.pop("title", None)
        param = {"name": name, "in": where, "required": name in schema.get("required", []),
                 "schema": prop}
        if "description" in prop:
            param["description"] = prop.pop("description")
        out.append(param)
    return out
