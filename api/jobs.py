"""/v1/models/<model>/jobs (submit), /v1/jobs/<id> (get, long-poll) and /v1/jobs/<id>/cancel."""
import base64
import binascii
import json
import logging
from datetime import datetime, timezone

from flask import Blueprint, current_app, jsonify, request

from api.errors import ApiError
from api.images import check_image
from jobs.store import FINAL, BacklogFull, is_job_id

bp = Blueprint("jobs", __name__)
log = logging.getLogger("inferq.api")


@bp.post("/v1/models/<model>/jobs")
def submit(model):
    ctx = current_app.extensions["inferq"]
    if not ctx.model_exists(model):
        raise ApiError(404, "unknown_model", f"no model named {model!r}; GET /v1/models lists them")
    inputs = _read_inputs(ctx.settings)
    try:
        record = ctx.store.enqueue(model, inputs)
    except BacklogFull:
        raise ApiError(503, "backlog_full", f"model {model!r} already has "
                       f"{ctx.settings.max_backlog} inputs waiting; try again shortly",
                       {"Retry-After": "5"}) from None
    log.info("job %s queued: model=%s inputs=%d", record["id"], model, len(inputs))
    body = job_json(record)
    return jsonify(body), 202, {"Location": body["urls"]["get"]}


@bp.get("/v1/jobs/<job_id>")
def get(job_id):
    ctx = current_app.extensions["inferq"]
    wait_s = _wait_param(ctx.settings.max_long_poll_s)
    record = ctx.store.wait(job_id, wait_s) if is_job_id(job_id) else None
    if record is None:
        raise _no_job(job_id)
    return jsonify(job_json(record))


@bp.post("/v1/jobs/<job_id>/cancel")
def cancel(job_id):
    ctx = current_app.extensions["inferq"]
    outcome = ctx.store.cancel(job_id) if is_job_id(job_id) else -1
    if outcome == -1:
        raise _no_job(job_id)
    record = ctx.store.get(job_id)
    if outcome == 0:
        raise ApiError(409, "already_finished", f"job {job_id} already ended as "
                       f"{record['status'] if record else 'finished'}; it cannot be canceled")
    log.info("job %s canceled", job_id)
    return jsonify(job_json(record))


def _no_job(job_id):
    return ApiError(404, "unknown_job", f"no job {job_id!r} (unknown, or its result expired)")


def _wait_param(cap_s: float) -> float:
    raw = request.args.get("wait")
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ApiError(400, "invalid_wait", f"wait must be a number of seconds, got {raw!r}")
    return min(value, cap_s)


def _read_inputs(settings) -> list[bytes]:
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        inputs = [f.read() for f in request.files.getlist("image")]
        if not inputs:
            raise ApiError(400, "no_input", "send one or more files in the multipart field 'image'")
    elif mimetype == "application/json":
        inputs = _json_images(request.get_data(cache=False))
    else:
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data with 'image' "
                       "files, or application/json with {\"images\": [{\"b64\": ...}]}")
    if len(inputs) > settings.max_inputs_per_job:
        raise ApiError(400, "too_many_inputs", f"{len(inputs)} inputs in one job; the limit is "
                       f"{settings.max_inputs_per_job} (INFERQ_MAX_INPUTS_PER_JOB)")
    for i, data in enumerate(inputs):
        check_image(data, settings.max_image_pixels, f"input {i}")
    return inputs


def _json_images(raw: bytes) -> list[bytes]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    images = body.get("images") if isinstance(body, dict) else None
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


def _iso(ts: str | None) -> str | None:
    if not ts:
        return None
    return datetime.fromtimestamp(float(ts), timezone.utc).isoformat(timespec="milliseconds")


def job_json(record: dict) -> dict:
    """The public form of a job record."""
    n = int(record["n_inputs"])
    outputs = []
    for i in range(n):
        raw = record.get(f"out:{i}")
        out = {"index": i, "status": "pending"} if raw is None else {"index": i, **json.loads(raw)}
        if raw is not None:
            out["status"] = "failed" if "error" in out else "succeeded"
        outputs.append(out)
    metrics = [o["metrics"] for o in outputs if "metrics" in o]
    base = request.host_url.rstrip("/") + f"/v1/jobs/{record['id']}"
    return {
        "id": record["id"],
        "model": record["model"],
        "version": record.get("version") or None,
        "status": record["status"],
        "created_at": _iso(record.get("created_at")),
        "started_at": _iso(record.get("started_at")),
        "completed_at": _iso(record.get("completed_at")),
        "inputs": n,
        "outputs": outputs,
        "error": record.get("error") or None,
        # The job's figures: its slowest input's queue and predict time, its largest batch.
        "metrics": {k: max(m[k] for m in metrics) for k in ("queue_ms", "predict_ms",
                                                           "batch_size")} if metrics else None,
        "finished": record["status"] in FINAL,
        "urls": {"get": base, "cancel": base + "/cancel"},
    }
