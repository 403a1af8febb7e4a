"""The public JSON form of a job: what GET /v1/jobs/{id} answers and webhooks deliver."""
import json
from datetime import datetime, timezone

from jobs.store import FINAL


def iso(ts) -> str | None:
    """Seconds since the epoch (as stored) to ISO 8601, UTC."""
    if not ts:
        return None
    return datetime.fromtimestamp(float(ts), timezone.utc).isoformat(timespec="milliseconds")


def job_json(record: dict, base_url: str) -> dict:
    """The public form of a job record; `base_url` is where clients reach the API."""
    n = int(record["n_inputs"])
    outputs = []
    for i in range(n):
        raw = record.get(f"out:{i}")
        out = {"index": i, "status": "pending"} if raw is None else {"index": i, **json.loads(raw)}
        if raw is not None:
            out["status"] = "failed" if "error" in out else "succeeded"
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
