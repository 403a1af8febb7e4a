"""Webhook deliveries in Redis: which are due, who attempts them, what each attempt gave.

A delivery is created atomically with its job's state change (jobs/lua/schedule_webhook.lua).
A sorted set holds each pending delivery's due time. A webhook worker claims due ones by pushing
their time forward by a lease, then sends one Celery task per claim. If that task is lost, or its worker
dies mid-attempt, the lease runs out and the delivery is claimed again. Retries are never
Celery countdowns, so the Redis broker's visibility timeout cannot lose or duplicate them.
"""
import json
import time

from jobs import keys, scripts
from jobs.record import iso

PENDING, DELIVERED, FAILED, STOPPED = "pending", "delivered", "failed", "stopped"
# Past its last attempt a delivery's record is kept this long, for GET .../deliveries.
KEEP_AFTER_LAST_ATTEMPT_S = 3600


def delivery_ttl_s(result_ttl_s: float, webhook_max_age_s: float) -> int:
    """How long a delivery's record lives: it is retried for `webhook_max_age_s` after it is
    created, and kept past that at least as long as its job's results."""
    return int(result_ttl_s + webhook_max_age_s + KEEP_AFTER_LAST_ATTEMPT_S)


class Deliveries:
    def __init__(self, redis, ttl_s: int):
        self.redis, self.ttl_s = redis, int(ttl_s)  # ttl_s: as the delivery record's
        self._claim = scripts.register(redis, "claim_deliveries")
        self._take = scripts.register(redis, "take_delivery")

    def claim_due(self, lease_s: float, count: int = 100) -> list[tuple[str, str]]:
        reply = self._claim(keys=[keys.webhooks_due()],
                            args=[repr(time.time()), lease_s, count, keys.delivery("")])
        pairs = [x.decode() for x in reply]
        return list(zip(pairs[::2], pairs[1::2]))

    def take(self, webhook_id: str, token: str) -> dict | None:
        """The delivery, if this claim is current; None for a duplicate or stale task."""
        if not self._take(keys=[keys.delivery(webhook_id)], args=[token]):
            return None
        raw = self.redis.hgetall(keys.delivery(webhook_id))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def save_body(self, webhook_id: str, body: str):
        """Every retry sends the same body. The body replaces the job record the delivery
        was made with (jobs/lua/schedule_webhook.lua), which it was built from."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(keys.delivery(webhook_id), "body", body)
        pipe.hdel(keys.delivery(webhook_id), "record")
        pipe.execute()

    def record(self, webhook_id: str, attempt: dict, status: str, next_at: float | None):
        """Record one attempt; schedule the next (status pending) or end the delivery."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.rpush(keys.delivery_attempts(webhook_id), json.dumps(attempt))
        pipe.expire(keys.delivery_attempts(webhook_id), self.ttl_s)
        pipe.hincrby(keys.delivery(webhook_id), "attempts", 1)
        if status == PENDING:
            pipe.hset(keys.delivery(webhook_id), mapping={"status": PENDING, "next_at": next_at})
            pipe.zadd(keys.webhooks_due(), {webhook_id: next_at})
        else:
            pipe.hset(keys.delivery(webhook_id), mapping={"status": status, "next_at": ""})
            pipe.zrem(keys.webhooks_due(), webhook_id)
        pipe.execute()

    def for_job(self, job_id: str) -> list[dict]:
        """The job's deliveries with every attempt, for GET /v1/jobs/{id}/deliveries."""
        ids = [w.decode() for w in self.redis.lrange(keys.deliveries(job_id), 0, -1)]
        pipe = self.redis.pipeline(transaction=False)
        for wid in ids:
            pipe.hgetall(keys.delivery(wid))
            pipe.lrange(keys.delivery_attempts(wid), 0, -1)
        replies = pipe.execute()
        out = []
        for wid, raw, attempts in zip(ids, replies[::2], replies[1::2]):
            d = {k.decode(): v.decode() for k, v in raw.items()}
            if not d:
                continue
            out.append({"id": wid, "event": d["event"], "url": d["url"], "status": d["status"],
                        "created_at": iso(d["created_at"]),
                        "next_attempt_at": iso(d.get("next_at")) if d["status"] == PENDING
                        else None,
                        "attempts": [json.loads(a) for a in attempts]})
        return out

