"""Bulk batches: /v1/models/<model>/batches (upload a file of inputs), /v1/batches (list),
/v1/batches/<id> (get, long-poll; delete), .../cancel, .../results and .../errors (the files
as they stand). A tenant sees only its own batches: another's is answered as a missing one."""
import logging
import os
import shutil
import time

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.datastructures import MultiDict

from api import auth, batch_options, storage, upload
from api.errors import ApiError
from api.schemas import BatchListQuery, BatchQuery, validate
from jobs import keys
from jobs.batch import FINAL, Files, TooManyBatches, batch_json, is_batch_id, new_batch_id

bp = Blueprint("batches", __name__)
log = logging.getLogger("inferq.api")
CHUNK = 256 * 1024


@bp.post("/v1/models/<model>/batches")
def create(model):
    ctx = current_app.extensions["inferq"]
    settings = ctx.settings
    if not ctx.catalog.exists(model):
        raise ApiError(404, "unknown_model", f"no model named {model!r}; GET /v1/models lists them")
    tenant = auth.tenant()
    # Checked again when the batch is written; here so that a refused upload is not read.
    if ctx.batches.active_count(tenant) >= settings.batch_max_active:
        raise _too_many(settings)
    # A raw body's options are all in the query string: checked before the body is read.
    # A form's may come after its file: only the query string's values are checked first.
    early = None
    if request.mimetype == "multipart/form-data":
        batch_options.read(MultiDict())
    else:
        early = _options(ctx, model, MultiDict())
    batch_id = new_batch_id()
    files = Files(settings.batch_dir, batch_id)
    try:
        with _writing(settings):
            os.makedirs(files.dir)
            with open(files.input, "wb") as out:
                received = upload.receive(out, settings.batch_max_bytes)
                # On disk before the 202 says the batch is stored.
                os.fsync(out.fileno())
        options, fields = early or _options(ctx, model, received.fields)
        fields.update(model=model, format=received.format, input_bytes=str(received.size))
        if options.expires_after_s is not None:
            fields["expires_at"] = repr(time.time() + options.expires_after_s)
        record = ctx.batches.create(batch_id, tenant, settings.batch_max_active, fields)
    except TooManyBatches:
        _remove(files)
        raise _too_many(settings) from None
    except BaseException:
        _remove(files)
        raise
    log.info("batch %s created: model=%s v%s %s of %d bytes", batch_id, model,
             record["version"], record["format"], received.size)
    body = batch_json(record, request.host_url)
    return jsonify(body), 202, {"Location": body["urls"]["get"]}


def _options(ctx, model: str, form: MultiDict):
    options = batch_options.read(form)
    return options, batch_options.record_fields(ctx, model, options)


def _too_many(settings) -> ApiError:
    return ApiError(429, "too_many_batches", f"you already have {settings.batch_max_active} "
                    "batches that have not ended (INFERQ_BATCH_MAX_ACTIVE); wait for one to "
                    "end, or cancel one", {"Retry-After": "60"})


def _writing(settings):
    return storage.writing("the batch store", settings.batch_dir, "INFERQ_BATCH_DIR")


def _remove(files: Files):
    shutil.rmtree(files.dir, ignore_errors=True)


@bp.get("/v1/batches")
def list_batches():
    ctx = current_app.extensions["inferq"]
    query = validate(BatchListQuery, request.args.to_dict(), {
        "limit": ("invalid_limit", "limit must be a whole number from 1 to 100"),
        "after": ("invalid_after", "after must be a batch id (a page's last_id)")},
        strict=False)
    tenant, after = auth.tenant(), query.after or None
    if after is not None and (not is_batch_id(after) or ctx.redis.zscore(
            keys.tenant_batches(tenant), after) is None):
        raise ApiError(400, "invalid_after", f"after={after!r} is none of your batches "
                       "(deleted, expired, or not a batch id); list again without it")
    records, more = ctx.batches.list(tenant, query.limit, after)
    data = [batch_json(r, request.host_url) for r in records if auth.owns(r)]
    return jsonify({"object": "list", "data": data,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None, "has_more": more})


@bp.get("/v1/batches/<batch_id>")
def get(batch_id):
    ctx = current_app.extensions["inferq"]
    raw = request.args.get("wait")
    query = validate(BatchQuery, request.args.to_dict(), {"wait": (
        "invalid_wait", f"wait must be a number of seconds, got {raw!r}")}, strict=False)
    record = _own(ctx, batch_id)
    wait_s = min(query.wait, ctx.settings.max_long_poll_s)
    if wait_s > 0 and record["status"] not in FINAL:
        record = _changed(ctx, record, wait_s)
        if record is None:  # deleted meanwhile
            raise _no_batch(batch_id)
    return jsonify(batch_json(record, request.host_url))


def _changed(ctx, record: dict, wait_s: float) -> dict | None:
    """The batch once its status is no longer `record`'s, or as it stands after `wait_s`.
    Wakes on the status message each change publishes (the API's shared listener), not by
    polling."""
    batch_id, status = record["id"], record["status"]
    deadline = time.monotonic() + wait_s
    with ctx.store.listener.watch(batch_id, wait_s) as changed:
        # Read once more inside the watch: a change just before it is not missed.
        record = ctx.batches.get(batch_id)
        while record is not None and record["status"] == status:
            left = deadline - time.monotonic()
            if left <= 0 or not changed.wait(left):
                break
            changed.clear()
            changed.take_message()
            record = ctx.batches.get(batch_id)
    return record


@bp.post("/v1/batches/<batch_id>/cancel")
def cancel(batch_id):
    ctx = current_app.extensions["inferq"]
    before = _own(ctx, batch_id)["status"]
    ctx.batches.cancel(batch_id)
    record = ctx.batches.get(batch_id)
    if record is None:
        raise _no_batch(batch_id)
    if record["status"] != before:
        log.info("batch %s: %s, cancelling", batch_id, before)
    return jsonify(batch_json(record, request.host_url))


@bp.delete("/v1/batches/<batch_id>")
def delete(batch_id):
    ctx = current_app.extensions["inferq"]
    record = _own(ctx, batch_id)
    if record["status"] not in FINAL:
        raise ApiError(409, "batch_running", f"batch {batch_id} is {record['status']}: cancel "
                       f"it first (POST /v1/batches/{batch_id}/cancel), then delete it once it "
                       "has ended")
    with _writing(ctx.settings):
        try:
            shutil.rmtree(Files(ctx.settings.batch_dir, batch_id).dir)
        except FileNotFoundError:
            pass
    ctx.batches.delete(batch_id, record.get("tenant", ""))
    log.info("batch %s deleted", batch_id)
    return "", 204


@bp.get("/v1/batches/<batch_id>/results")
def results(batch_id):
    return _lines(batch_id, "results")


@bp.get("/v1/batches/<batch_id>/errors")
def errors(batch_id):
    return _lines(batch_id, "errors")


def _lines(batch_id: str, which: str) -> Response:
    """One of the batch's files, up to its committed size (the feeder may be writing lines
    past it), streamed a chunk at a time."""
    ctx = current_app.extensions["inferq"]
    record = _own(ctx, batch_id)
    size = int(record.get(f"{which}_bytes") or 0)
    try:
        f = open(getattr(Files(ctx.settings.batch_dir, batch_id), which), "rb")
    except FileNotFoundError:
        f, size = None, 0
    if f is not None:
        size = min(size, os.fstat(f.fileno()).st_size)

    def chunks():
        if f is None:
            return
        with f:
            left = size
            while left > 0 and (chunk := f.read(min(CHUNK, left))):
                left -= len(chunk)
                yield chunk

    response = Response(chunks(), mimetype="application/x-ndjson",
                        headers={"Content-Length": str(size)})
    if f is not None:
        response.call_on_close(f.close)  # also when the body is never read (HEAD)
    return response


def _own(ctx, batch_id: str) -> dict:
    """The caller's batch; another tenant's batch is answered exactly as a missing one."""
    record = ctx.batches.get(batch_id) if is_batch_id(batch_id) else None
    if not auth.owns(record):
        raise _no_batch(batch_id)
    return record


def _no_batch(batch_id: str) -> ApiError:
    return ApiError(404, "unknown_batch", f"no batch {batch_id!r} (unknown, or it was deleted "
                    "or expired); GET /v1/batches lists yours")
