"""The job record: its states, its id, the webhook events it raises, and its public JSON form
(what GET /v1/jobs/{id} answers and each webhook event carries)."""
import json
import secrets
from datetime import datetime, timezone

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED = "queued", "running", "succeeded", "failed", "canceled"
FINAL = (SUCCEEDED, FAILED, CANCELED)
WEBHOOK_EVENTS = ("started", "completed")
# The `type` each event's webhook body carries (Standard Webhooks' payload), by event.
WEBHOOK_TYPES = {"started": "job.started", "completed": "job.completed"}


def new_job_id() -> str:
    return secrets.token_urlsafe(16)


def is_job_id(value: str) -> bool:
    return 16 <= len(value) <= 64 and all(c.isalnum() or c in "-_" for c in value)


def webhook_id(job_id: str, event: str) -> str:
    """The same id on every attempt of one event, so receivers can drop duplicates."""
    return f"msg_{job_id}_{event}"


def iso(ts) -> str | None:
    """Seconds since the epoch (as stored) to ISO 8601, UTC."""
    if not ts:
        return None
    return datetime.fromtimestamp(float(ts), timezone.utc).isoformat(timespec="milliseconds")


def flat_record(text: bytes | str) -> dict:
    """A job record that Lua encoded as `cjson.encode(redis.call('HGETALL', key))`: a JSON
    array of fields and values. Raises ValueError when it is not one (Lua's cjson passes
    bytes as they are, so it need not be UTF-8)."""
    flat = json.loads(text)
    if not isinstance(flat, list):
        raise ValueError("not a record")
    return dict(zip(flat[::2], flat[1::2]))


def published_record(message: bytes | None) -> dict | None:
    """The job record a finish message carries, or None when it carries only the status."""
    if not message or not message.startswith(b"["):
        return None
    try:
        return flat_record(message)
    except ValueError:  # read the job instead
        return None


def webhook_body(event: str, at, record: dict, base_url: str) -> dict:
    """An event's webhook body, in Standard Webhooks' payload shape: its type, when it
    happened (`at`, seconds since the epoch), and the job as it was then."""
    return {"type": WEBHOOK_TYPES[event], "timestamp": iso(at),
            "data": job_json(record, base_url)}


def job_json(record: dict, base_url: str) -> dict:
    """The public form of a job record; `base_url` is where clients reach the API."""
    n = int(record["n_inputs"])
    # A finished job has no pending output: a canceled job's unfinished ones are canceled.
    unfinished = CANCELED if record["status"] == CANCELED else "pending"
    outputs = []
    for i in range(n):
        raw = record.get(f"out:{i}")
        out = {"index": i, "status": unfinished} if raw is None else {"index": i, **json.loads(raw)}
        if raw is not None:
            out["status"] = FAILED if "error" in out else SUCCEEDED
        outputs.append(out)
    metrics = [o["metrics"] for o in outputs if "metrics" in o]
    base = base_url.rstrip("/") + f"/v1/jobs/{record['id']}"
    return {
        "id": record["id"],
        "model": record["model"],
        "version": record.get("version") or None,
        "status": record["status"],
        "created_at": iso(record.get("created_at")),
        "started_at": iso(record.get("started_at")),
        "completed_at": iso(record.get("completed_at")),
        "inputs": n,
        "outputs": outputs,
        "error": record.get("error") or None,
        # The job's figures: its slowest input's queue and predict time, its largest batch.
        "metrics": {k: max(m[k] for m in metrics) for k in ("queue_ms", "predict_ms",
                                                           "batch_size")} if metrics else None,
        "finished": record["status"] in FINAL,
        "urls": {"get": base, "cancel": base + "/cancel"},
    }
