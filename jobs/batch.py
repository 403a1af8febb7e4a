"""The bulk batch record: its states, its id, what the API and the feeder change in it, and its
public JSON form. A batch's inputs and results live in files (the batch store); Redis holds the
record, the inputs in flight and the results not yet appended (jobs/bulk.py)."""
import json
import os
import secrets
import time

from jobs import keys, scripts
from jobs.record import iso, webhook_id

VALIDATING, IN_PROGRESS, FINALIZING, COMPLETED = "validating", "in_progress", "finalizing", "completed"
FAILED, CANCELLING, CANCELLED, EXPIRED = "failed", "cancelling", "cancelled", "expired"
FINAL = (COMPLETED, FAILED, CANCELLED, EXPIRED)
WEBHOOK_EVENTS = tuple(f"batch.{s}" for s in FINAL)


class TooManyBatches(Exception):
    """The tenant already has the most batches that may run at once."""


def new_batch_id() -> str:
    return "batch_" + secrets.token_urlsafe(16)


def is_batch_id(value: str) -> bool:
    rest = value.removeprefix("batch_")
    return rest != value and 16 <= len(rest) <= 64 and all(c.isalnum() or c in "-_" for c in rest)


class Batches:
    def __init__(self, redis, ttl_s: int, delivery_ttl_s: int):
        """`ttl_s`: how long a final batch's record is kept; its files go with it."""
        self.redis, self.ttl_s, self.delivery_ttl_s = redis, int(ttl_s), int(delivery_ttl_s)
        self._create = scripts.register(redis, "batch_create")
        self._status = scripts.register(redis, "schedule_webhook", "batch_status")

    def create(self, batch_id: str, tenant: str, max_active: int, fields: dict) -> dict:
        """Write a new batch (status validating). Raises TooManyBatches past `max_active`."""
        now = repr(time.time())
        record = {"id": batch_id, "tenant": tenant, "status": VALIDATING, "created_at": now,
                  "total": 0, "completed": 0, "failed": 0, **fields}
        args = [batch_id, now, max_active]
        for name, value in record.items():
            args += [name, value]
        created = self._create(keys=[keys.batch(batch_id), keys.tenant_batches(tenant),
                                     keys.tenant_active_batches(tenant), keys.active_batches()],
                               args=args)
        if not created:
            raise TooManyBatches(tenant)
        return {k: str(v) for k, v in record.items()}

    def get(self, batch_id: str) -> dict | None:
        raw = self.redis.hgetall(keys.batch(batch_id))
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    def set_status(self, batch_id: str, status: str, from_: tuple = (), **fields) -> str | None:
        """Move the batch to `status` if it is in one of `from_` (default: any that is not
        final). Returns its status afterwards, None when it is gone."""
        record = self.redis.hget(keys.batch(batch_id), "tenant")
        tenant = record.decode() if record else ""
        args = [status, repr(time.time()), ",".join(from_), int(status in FINAL), self.ttl_s,
                self.delivery_ttl_s, webhook_id(batch_id, status)]
        for name, value in fields.items():
            args += [name, value]
        reply = self._status(keys=[keys.batch(batch_id), keys.finished(batch_id),
                                   keys.deliveries(batch_id),
                                   keys.delivery(webhook_id(batch_id, status)),
                                   keys.webhooks_due(), keys.tenant_active_batches(tenant),
                                   keys.active_batches()], args=args)
        return reply.decode() or None

    def cancel(self, batch_id: str) -> str | None:
        """Stop a batch that is validating or running: the feeder feeds nothing more of it and
        ends it as cancelled. Returns its status afterwards (None: gone)."""
        return self.set_status(batch_id, CANCELLING, (VALIDATING, IN_PROGRESS))

    def active_count(self, tenant: str) -> int:
        """How many of a tenant's batches have not ended (what `create`'s limit counts)."""
        return self.redis.scard(keys.tenant_active_batches(tenant))

    def active(self) -> list[str]:
        """The batches the feeder serves, oldest first."""
        return [b.decode() for b in self.redis.zrange(keys.active_batches(), 0, -1)]

    def list(self, tenant: str, limit: int, after: str | None = None) -> tuple[list[dict], bool]:
        """A tenant's batches, newest first, `limit` of them after batch `after`; and whether
        more follow."""
        key = keys.tenant_batches(tenant)
        start = 0
        if after:
            rank = self.redis.zrevrank(key, after)
            if rank is None:
                return [], False
            start = rank + 1
        ids = [b.decode() for b in self.redis.zrevrange(key, start, start + limit)]
        pipe = self.redis.pipeline(transaction=False)
        for batch_id in ids[:limit]:
            pipe.hgetall(keys.batch(batch_id))
        records = []
        for batch_id, raw in zip(ids, pipe.execute()):
            if raw:
                records.append({k.decode(): v.decode() for k, v in raw.items()})
            else:  # expired: forget it
                self.redis.zrem(key, batch_id)
        return records, len(ids) > limit

    def delete(self, batch_id: str, tenant: str):
        """Forget a final batch: its record and what Redis still holds of it."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(keys.batch(batch_id), keys.batch_results(batch_id), keys.batch_done(batch_id))
        pipe.zrem(keys.tenant_batches(tenant), batch_id)
        pipe.execute()


def counts(record: dict) -> dict:
    return {"total": int(record.get("total") or 0),
            "completed": int(record.get("completed") or 0),
            "failed": int(record.get("failed") or 0)}


def batch_json(record: dict, base_url: str, now: float | None = None) -> dict:
    """The public form of a batch record; `base_url` is where clients reach the API."""
    base = base_url.rstrip("/") + f"/v1/batches/{record['id']}"
    c = counts(record)
    status = record["status"]
    out = {
        "id": record["id"],
        "object": "batch",
        "model": record["model"],
        "version": int(record["version"]) if record.get("version") else None,
        "status": status,
        "input_format": record.get("format"),
        "request_counts": c,
        "metadata": json.loads(record["metadata"]) if record.get("metadata") else None,
        "errors": json.loads(record["errors"]) if record.get("errors") else None,
        "created_at": iso(record.get("created_at")),
        "expires_at": iso(record.get("expires_at")),
    }
    for state in (IN_PROGRESS, FINALIZING, COMPLETED, FAILED, CANCELLING, CANCELLED, EXPIRED):
        out[f"{state}_at"] = iso(record.get(f"{state}_at"))
    out["progress"] = _progress(record, c, now or time.time()) if status == IN_PROGRESS else None
    out["urls"] = {"get": base, "cancel": base + "/cancel", "results": base + "/results",
                   "errors": base + "/errors"}
    return out


def webhook_body(event: str, at, record: dict, base_url: str) -> dict:
    """A batch event's webhook body (Standard Webhooks' payload): `batch.completed`, ...,
    when it happened, and the batch as it was then."""
    return {"type": event, "timestamp": iso(at), "data": batch_json(record, base_url)}


def _progress(record: dict, c: dict, now: float) -> dict:
    """Inputs per second since the batch started running, and the seconds left at that rate."""
    started = float(record.get(f"{IN_PROGRESS}_at") or now)
    done = c["completed"] + c["failed"]
    rate = done / (now - started) if now > started and done else 0.0
    left = c["total"] - done
    return {"inputs_per_s": round(rate, 2),
            "eta_s": round(left / rate, 1) if rate else None}


class Files:
    """Where a batch's files are in the batch store: `<batch_dir>/<batch id>/`. Only batch ids
    (made here) name paths; nothing from an upload does."""

    def __init__(self, batch_dir: str, batch_id: str):
        if not is_batch_id(batch_id):
            raise ValueError(f"not a batch id: {batch_id!r}")
        self.dir = os.path.join(batch_dir, batch_id)
        self.input = os.path.join(self.dir, "input")  # the upload, as it came
        self.plain = os.path.join(self.dir, "input.tar")  # a .tar.gz upload, unpacked
        self.results = os.path.join(self.dir, "results.jsonl")
        self.errors = os.path.join(self.dir, "errors.jsonl")
