"""The job store's producer side, what the API calls: enqueue a job, read it, cancel it, wait
for it to finish. Each state change is one Lua script (jobs/lua/), so it is atomic: a job is
enqueued whole or not at all."""
import time

from jobs import keys, scripts
from jobs.deliveries import delivery_ttl_s
from jobs.record import FINAL, QUEUED, new_job_id, published_record, webhook_id

IDEMPOTENCY_TTL_S = 24 * 3600
# The most jobs a tenant's list (GET /v1/jobs) keeps; older ones drop off as new ones come.
TENANT_JOBS_MAX = 10_000


class BacklogFull(Exception):
    """The model's stream already holds `max_backlog` inputs."""


class NoVersion(Exception):
    """No version of the model is known to route the job to."""


class NotReplicated(Exception):
    """Fewer replicas than asked confirmed the job in time: it is stored on the master, but a
    failover now could lose it."""

    def __init__(self, job_id: str, acked: int):
        super().__init__(job_id)
        self.job_id, self.acked = job_id, acked


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request."""

    def __init__(self, job_id: str):
        super().__init__(job_id)
        self.job_id = job_id


def _allowed(record: dict | None, allowed) -> dict | None:
    return None if record is None or (allowed is not None and not allowed(record)) else record


class Producer:
    def __init__(self, redis, result_ttl_s: int, max_backlog: int, webhook_max_age_s: float,
                 listener=None, replicas: tuple[int, int] = (0, 0)):
        """`listener`: a jobs.listener.FinishListener shared by the process's waiting threads
        (the API); without one, each wait subscribes on a connection of its own. `replicas`:
        (how many replicas must have a job before enqueue returns, the most ms to wait)."""
        self.redis = redis
        self.min_replicas, self.replica_wait_ms = replicas
        self.listener = listener
        self.result_ttl_s = result_ttl_s
        self.max_backlog = max_backlog
        self.delivery_ttl_s = delivery_ttl_s(result_ttl_s, webhook_max_age_s)
        self._enqueue = scripts.register(redis, "enqueue")
        self._cancel = scripts.register(redis, "schedule_webhook", "cancel")

    def enqueue(self, model: str, inputs: list[bytes], version: str = "",
                fallback_version: str = "", fields: dict | None = None,
                idempotency: tuple[str, str] | None = None) -> tuple[dict, bool]:
        """Write the job record and one stream entry per input in one round trip.
        `version` pins a version; otherwise the workers' default, or `fallback_version` while
        no worker has set one. `fields` are extra record fields (the webhook); `idempotency`
        is (key digest, request digest). Returns (job record, replayed): replayed when the key
        already made this job."""
        job_id, now = new_job_id(), time.time()
        fields = fields or {}
        input_keys = [keys.job_input(job_id, i) for i in range(len(inputs))]
        job_keys = [keys.job(job_id), keys.routing(model), keys.stats(),
                    keys.tenant_jobs(fields.get("tenant", "")), *input_keys]
        if idempotency:
            job_keys.append(keys.idempotency(idempotency[0]))
        digest = idempotency[1] if idempotency else ""
        args = [job_id, model, version, repr(now), self.max_backlog, self.result_ttl_s,
                len(inputs), digest, IDEMPOTENCY_TTL_S, fallback_version,
                keys.stream(model, ""), TENANT_JOBS_MAX, len(fields)]
        for name, value in fields.items():
            args += [name, value]

        def write(pipe):
            # SET keeps a large value as Redis read it off the socket, without a copy.
            for key, data in zip(input_keys, inputs):
                pipe.set(key, data, ex=self.result_ttl_s)

        reply = scripts.pipelined(self.redis, True, write, self._enqueue, job_keys, args)[-1]
        outcome = reply[0].decode()
        if outcome == "full":
            raise BacklogFull(model)
        if outcome == "noversion":
            raise NoVersion(model)
        replayed = outcome == "dup"
        if replayed:
            prior_id, prior_digest = reply[1].decode().split(" ", 1)
            if prior_digest != digest:
                raise IdempotencyConflict(prior_id)
            job_id = prior_id
        if self.min_replicas:
            # WAIT also covers a replayed job: its first write may not have reached a replica.
            acked = self.redis.wait(self.min_replicas, self.replica_wait_ms)
            if acked < self.min_replicas:
                raise NotReplicated(job_id, acked)
        if replayed:
            return self.get(job_id), True
        record = {"id": job_id, "model": model, "version": reply[1].decode(), "status": QUEUED,
                  "created_at": repr(now), "n_inputs": str(len(inputs)), "n_done": "0",
                  "n_failed": "0", **fields}
        return record, False

    def get(self, job_id: str) -> dict | None:
        raw = self.redis.hgetall(keys.job(job_id))
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    def cancel(self, job_id: str) -> int:
        """1 canceled, 0 already final, -1 no such job."""
        return self._cancel(keys=[keys.job(job_id), keys.finished(job_id),
                                  keys.deliveries(job_id),
                                  keys.delivery(webhook_id(job_id, "completed")),
                                  keys.webhooks_due(), keys.stats()],
                            args=[repr(time.time()), self.result_ttl_s, self.delivery_ttl_s,
                                  webhook_id(job_id, "completed")])

    def wait(self, job_id: str, timeout_s: float, allowed=None) -> dict | None:
        """The job record once it is final, or as it stands when `timeout_s` runs out.
        Wakes on the job's finished message, not by polling. With `allowed` (record -> bool),
        a job it refuses is answered at once as None, as a missing one is."""
        if timeout_s <= 0:
            return _allowed(self.get(job_id), allowed)
        deadline = time.monotonic() + timeout_s
        if self.listener is None:
            return self._wait_subscribed(job_id, deadline, allowed)
        # Watching costs no Redis call (the listener is subscribed already), so the job is
        # read once, after the watch starts: a finish cannot fall between the two.
        with self.listener.watch(job_id, timeout_s) as finished:
            record = _allowed(self.get(job_id), allowed)
            while record is not None and record["status"] not in FINAL:
                left = deadline - time.monotonic()
                if left <= 0 or not finished.wait(left):
                    break
                finished.clear()
                record = published_record(finished.take_message()) or self.get(job_id)
        return record

    def _wait_subscribed(self, job_id: str, deadline: float, allowed) -> dict | None:
        record = _allowed(self.get(job_id), allowed)
        if record is None or record["status"] in FINAL:
            return record
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(keys.finished(job_id))
            # Read again after subscribing: a finish between the first read and the subscribe
            # would otherwise be missed.
            record = self.get(job_id)
            while record is not None and record["status"] not in FINAL:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if pubsub.get_message(timeout=left) is not None:
                    record = self.get(job_id)
            return record
        finally:
            pubsub.close()
