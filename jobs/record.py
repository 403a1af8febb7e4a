"""The job record: its states, its id, the webhook events it raises, and its public JSON form
(what GET /v1/jobs/{id} answers and webhooks deliver)."""
import json
import secrets
from datetime import datetime, timezone

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED = "queued", "running", "succeeded", "failed", "canceled"
FINAL = (SUCCEEDED, FAILED, CANCELED)
WEBHOOK_EVENTS = ("started", "completed")


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


def published_record(message: bytes | None) -> dict | None:
    """The job record a finish message carries (a JSON array of fields and values, as HGETALL
    gives them), or None when it carries only the status."""
    if not message or not message.startswith(b"["):
        return None
    try:
        flat = json.loads(message)
    except ValueError:  # not UTF-8 (Lua's cjson passes bytes as they are): read the job instead
        return None
    return dict(zip(flat[::2], flat[1::2]))


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
