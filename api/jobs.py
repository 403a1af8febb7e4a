"""/v1/models/<model>/jobs (submit), /v1/jobs (the caller's recent jobs), /v1/jobs/<id> (get,
long-poll), .../cancel and .../deliveries."""
import logging

from flask import Blueprint, current_app, jsonify, request

from api import auth
from api.errors import ApiError
from api.inputs import read_request
from api.options import idempotency, prefer_wait, webhook_fields
from api.schemas import JobListQuery, JobQuery, validate
from jobs import job_list
from jobs.deliveries import Deliveries
from jobs.producer import BacklogFull, IdempotencyConflict, NoVersion
from jobs.record import FINAL, iso, is_job_id, job_json

bp = Blueprint("jobs", __name__)
log = logging.getLogger("inferq.api")


@bp.post("/v1/models/<model>/jobs")
def submit(model):
    return _submit(model, version=None)


@bp.post("/v1/models/<model>/versions/<int:version>/jobs")
def submit_to_version(model, version):
    return _submit(model, version)


def _submit(model: str, version: int | None):
    ctx = current_app.extensions["inferq"]
    catalog = ctx.catalog
    if not catalog.exists(model):
        raise ApiError(404, "unknown_model", f"no model named {model!r}; GET /v1/models lists them")
    if version is not None and not catalog.version_exists(model, version):
        raise ApiError(404, "unknown_version", f"model {model!r} has no version {version} "
                       f"that is served; GET /v1/models/{model} lists them")
    inputs, options = read_request(ctx.settings, catalog.input_of(model))
    fields = {**webhook_fields(ctx.settings, options), **auth.owner_fields()}
    wait_s = prefer_wait(ctx.settings.max_long_poll_s)
    pinned = "" if version is None else str(version)  # not `version or ""`: 0 is a version
    try:
        record, replayed = ctx.store.enqueue(
            model, inputs, version=pinned, fallback_version=catalog.fallback_version(model),
            fields=fields,
            idempotency=idempotency(auth.tenant(), f"{model}:{pinned}", inputs, fields))
    except BacklogFull:
        raise ApiError(503, "backlog_full", f"model {model!r} already has "
                       f"{ctx.settings.max_backlog} inputs waiting; try again shortly",
                       {"Retry-After": "5"}) from None
    except NoVersion:
        raise ApiError(503, "no_version", f"no version of model {model!r} is served yet; "
                       "try again shortly", {"Retry-After": "5"}) from None
    except IdempotencyConflict as exc:
        raise ApiError(422, "idempotency_key_reused", "this Idempotency-Key was used for a "
                       f"different request (job {exc.job_id})") from None
    if record is None:
        raise ApiError(409, "idempotent_job_expired", "this Idempotency-Key made a job whose "
                       "result has expired")
    headers = {}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    else:
        log.debug("job %s queued: model=%s v%s inputs=%d", record["id"], model,
                 record["version"], len(inputs))
    if wait_s is not None:
        record = ctx.store.wait(record["id"], wait_s) or record
        headers["Preference-Applied"] = f"wait={wait_s:g}"
    body = job_json(record, request.host_url)
    headers["Location"] = body["urls"]["get"]
    finished = record["status"] in FINAL and (wait_s is not None or replayed)
    return jsonify(body), 200 if finished else 202, headers


@bp.get("/v1/jobs")
def list_jobs():
    ctx = current_app.extensions["inferq"]
    query = validate(JobListQuery, request.args.to_dict(), {
        "limit": ("invalid_limit", "limit must be a whole number from 1 to 100"),
        "after": ("invalid_after", "after must be the `next` cursor of a previous page")},
        strict=False)
    try:
        records, cursor = job_list.page(ctx.redis, auth.tenant(), query.limit,
                                        query.after or None)
    except job_list.BadCursor:
        raise ApiError(400, "invalid_after", f"after={query.after!r} is not a cursor this API "
                       "gave (a page's `next`); list again without it") from None
    return jsonify({"jobs": [_summary(r) for r in records], "next": cursor})


def _summary(record: dict) -> dict:
    """A job in a list: what it is and how it stands, without its outputs."""
    return {"id": record["id"], "model": record.get("model"),
            "version": record.get("version") or None, "status": record.get("status"),
            "created_at": iso(record.get("created_at")),
            "finished_at": iso(record.get("completed_at")),
            "inputs": int(record.get("n_inputs") or 0), "url": f"/v1/jobs/{record['id']}"}


@bp.get("/v1/jobs/<job_id>")
def get(job_id):
    ctx = current_app.extensions["inferq"]
    wait_s = _wait_param(ctx.settings.max_long_poll_s)
    # Another tenant's job is refused before any waiting: its answer comes as fast as a
    # missing job's.
    record = ctx.store.wait(job_id, wait_s, allowed=auth.owns) if is_job_id(job_id) else None
    if record is None:
        raise _no_job(job_id)
    return jsonify(job_json(record, request.host_url))


@bp.post("/v1/jobs/<job_id>/cancel")
def cancel(job_id):
    ctx = current_app.extensions["inferq"]
    _own_job(ctx, job_id)
    outcome = ctx.store.cancel(job_id)
    if outcome == -1:
        raise _no_job(job_id)
    record = ctx.store.get(job_id)
    if outcome == 0:
        raise ApiError(409, "already_finished", f"job {job_id} already ended as "
                       f"{record['status'] if record else 'finished'}; it cannot be canceled")
    log.info("job %s canceled", job_id)
    return jsonify(job_json(record, request.host_url))


@bp.get("/v1/jobs/<job_id>/deliveries")
def deliveries(job_id):
    ctx = current_app.extensions["inferq"]
    _own_job(ctx, job_id)
    return jsonify({"deliveries": Deliveries(ctx.redis, ctx.store.delivery_ttl_s).for_job(job_id)})


def _own_job(ctx, job_id: str) -> dict:
    """The caller's job; another tenant's job is answered exactly as a missing one."""
    record = ctx.store.get(job_id) if is_job_id(job_id) else None
    if not auth.owns(record):
        raise _no_job(job_id)
    return record


def _no_job(job_id):
    return ApiError(404, "unknown_job", f"no job {job_id!r} (unknown, or its result expired)")


def _wait_param(cap_s: float) -> float:
    raw = request.args.get("wait")
    query = validate(JobQuery, request.args.to_dict(), {"wait": (
        "invalid_wait", f"wait must be a number of seconds, got {raw!r}")}, strict=False)
    return min(query.wait, cap_s)
