"""Every Redis key and channel inferq uses, in one place."""
PREFIX = "inferq:"
GROUP = "workers"  # the consumer group on every model stream


def job(job_id: str) -> str:
    """Hash: the job record, and one `out:<i>` field per finished input."""
    return f"{PREFIX}job:{job_id}"


def stream(model: str, version) -> str:
    """Stream: one entry per queued input of one model version."""
    return f"{PREFIX}stream:{model}:v{version}"


def job_input(job_id: str, idx: int) -> str:
    """String (expires with the job): one queued input's bytes. Its stream entry names it
    rather than holding it, so Redis never copies an image into a stream node or a Lua string
    (Lua hashes every byte of a string: 12 ms of Redis's one thread for a 5 MB image)."""
    return f"{PREFIX}input:{job_id}:{idx}"


def routing(model: str) -> str:
    """Hash: `default` -> the version unpinned jobs of `model` go to (set by the workers once
    that version is warm)."""
    return f"{PREFIX}model:{model}"


def finished(job_id: str) -> str:
    """Pub/sub channel: a message when the job reaches a final state (long-polls wait on it)."""
    return f"{PREFIX}finished:{job_id}"


def workers() -> str:
    """Sorted set: worker name -> time of its last heartbeat."""
    return f"{PREFIX}workers"


def worker(name: str) -> str:
    """String (JSON, expires): what one worker serves."""
    return f"{PREFIX}worker:{name}"


def models() -> str:
    """Set: names of models some worker has served; they accept jobs even while no worker is up."""
    return f"{PREFIX}models"


def idempotency(key_digest: str) -> str:
    """String "<job id> <request digest>" (expires): the job an Idempotency-Key made."""
    return f"{PREFIX}idempotency:{key_digest}"


def deliveries(job_id: str) -> str:
    """List: the webhook ids of a job's deliveries."""
    return f"{PREFIX}job:{job_id}:deliveries"


def delivery(webhook_id: str) -> str:
    """Hash: one webhook delivery (one event of one job): url, status, next attempt, and the
    job's record as the event left it, until the first attempt turns it into the body."""
    return f"{PREFIX}delivery:{webhook_id}"


def delivery_attempts(webhook_id: str) -> str:
    """List: JSON of each attempt of a delivery."""
    return f"{PREFIX}delivery:{webhook_id}:attempts"


def webhooks_due() -> str:
    """Sorted set: webhook id -> when its next attempt is due (a claimed one: its lease end)."""
    return f"{PREFIX}webhooks:due"


def tenant_jobs(tenant: str) -> str:
    """Sorted set: a tenant's job ids by creation time (GET /v1/jobs lists from it; the open
    API's tenant is ""). Trimmed on each enqueue to the newest and the unexpired."""
    return f"{PREFIX}tenant:{tenant}:jobs"


def live_slot(slot: int) -> str:
    """Hash (expires): what finished in one 10-second slot (`slot` = seconds since the epoch
    // 10): jobs, inputs and latency buckets per model version, batches per worker. GET
    /v1/stats and /v1/workers sum the last six (jobs/live.py)."""
    return f"{PREFIX}live:{slot}"


def stats() -> str:
    """Hash: the counters GET /metrics reports, kept by the scripts that change jobs:
    `<counter>|<label>|...` -> count, since this Redis's data began."""
    return f"{PREFIX}stats"


# -- bulk batches (jobs/batch.py, jobs/bulk.py) ------------------------------------------------

def batch(batch_id: str) -> str:
    """Hash: one bulk batch's record: status, counts, its file's format, the feeder's cursor,
    and the byte sizes of its results and errors files as last committed."""
    return f"{PREFIX}batch:{batch_id}"


def tenant_batches(tenant: str) -> str:
    """Sorted set: a tenant's batch ids by creation time (GET /v1/batches lists from it)."""
    return f"{PREFIX}tenant:{tenant}:batches"


def tenant_active_batches(tenant: str) -> str:
    """Set: a tenant's batches that are not final (the per-tenant limit counts them)."""
    return f"{PREFIX}tenant:{tenant}:batches:active"


def active_batches() -> str:
    """Sorted set: every batch that is not final, by creation time: what the feeder serves."""
    return f"{PREFIX}batches:active"


def bulk_stream(model: str, version) -> str:
    """Stream: the bulk lane of one model version: one entry per batch input in flight. Workers
    read it only to fill the room an interactive batch leaves."""
    return f"{PREFIX}bulk:{model}:v{version}"


def batch_input(batch_id: str, index: int) -> str:
    """String: one batch input's bytes while it is in flight (its bulk entry names it)."""
    return f"{PREFIX}batch:{batch_id}:input:{index}"


def batch_results(batch_id: str) -> str:
    """List: result lines the workers wrote for a batch, until the feeder appends them to the
    batch's files."""
    return f"{PREFIX}batch:{batch_id}:results"


def batch_lease(batch_id: str) -> str:
    """String (expires): the feeder process serving a batch now, so two never write its files."""
    return f"{PREFIX}batch:{batch_id}:lease"


def batch_done(batch_id: str) -> str:
    """Bitmap: bit i set once input i's line is in the results or errors file."""
    return f"{PREFIX}batch:{batch_id}:done"


# Rate-limit counters (Flask-Limiter's Redis storage puts its keys under this prefix).
RATE_LIMITS = f"{PREFIX}ratelimit"
