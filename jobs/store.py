"""The job record and its state changes. Each change is one Lua script, so it is atomic: a job
is enqueued whole or not at all, and completes exactly once however often an input is delivered.
"""
import json
import secrets
import time
from dataclasses import dataclass

from jobs import keys

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED = "queued", "running", "succeeded", "failed", "canceled"
FINAL = (SUCCEEDED, FAILED, CANCELED)

# KEYS: job, stream. ARGV: id, model, version, created_at, max_backlog, ttl_s, n, data...
_ENQUEUE = """
local n = tonumber(ARGV[7])
if redis.call('XLEN', KEYS[2]) + n > tonumber(ARGV[5]) then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'model', ARGV[2], 'version', ARGV[3],
           'status', 'queued', 'created_at', ARGV[4], 'n_inputs', n, 'n_done', 0, 'n_failed', 0)
redis.call('EXPIRE', KEYS[1], ARGV[6])
for i = 1, n do
  redis.call('XADD', KEYS[2], '*', 'job', ARGV[1], 'idx', i - 1, 't', ARGV[4], 'data', ARGV[7 + i])
end
return 1
"""

# KEYS: job. ARGV: now, model version. Returns the status afterwards (false: job gone).
_START = """
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1], 'version', ARGV[2])
  return 'running'
end
return st
"""

# KEYS: job, finished channel. ARGV: idx, output json, failed (0/1), now, ttl_s, error.
# Returns -1 job gone, 0 duplicate or job already final, 1 recorded, 2 recorded and job finished.
_FINISH = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
if st ~= 'queued' and st ~= 'running' then return 0 end
if redis.call('HSETNX', KEYS[1], 'out:' .. ARGV[1], ARGV[2]) == 0 then return 0 end
if st == 'queued' then redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[4]) end
if ARGV[3] == '1' then
  redis.call('HINCRBY', KEYS[1], 'n_failed', 1)
  redis.call('HSETNX', KEYS[1], 'first_error', ARGV[6])
end
local done = redis.call('HINCRBY', KEYS[1], 'n_done', 1)
local n = tonumber(redis.call('HGET', KEYS[1], 'n_inputs'))
if done < n then return 1 end
local failed = tonumber(redis.call('HGET', KEYS[1], 'n_failed'))
local status = 'succeeded'
if failed > 0 then
  status = 'failed'
  local first = redis.call('HGET', KEYS[1], 'first_error')
  if n == 1 then
    redis.call('HSET', KEYS[1], 'error', first)
  else
    redis.call('HSET', KEYS[1], 'error',
               string.format('%d of %d inputs failed; first error: %s', failed, n, first))
  end
end
redis.call('HSET', KEYS[1], 'status', status, 'completed_at', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', KEYS[2], status)
return 2
"""

# KEYS: job, finished channel. ARGV: now, ttl_s. Returns -1 gone, 0 already final, 1 canceled.
_CANCEL = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
if st ~= 'queued' and st ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'canceled', 'completed_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], 'canceled')
return 1
"""


class BacklogFull(Exception):
    """The model's stream already holds `max_backlog` inputs."""


@dataclass
class InputResult:
    """What a worker writes back for one stream entry."""
    entry_id: str
    job_id: str
    idx: int
    output: dict | None = None  # {"top_k": [...], "metrics": {...}} on success
    error: str | None = None


def new_job_id() -> str:
    return secrets.token_urlsafe(16)


def is_job_id(value: str) -> bool:
    return 16 <= len(value) <= 64 and all(c.isalnum() or c in "-_" for c in value)


class JobStore:
    def __init__(self, redis, result_ttl_s: int, max_backlog: int):
        self.redis = redis
        self.result_ttl_s = result_ttl_s
        self.max_backlog = max_backlog
        self._enqueue = redis.register_script(_ENQUEUE)
        self._start = redis.register_script(_START)
        self._finish = redis.register_script(_FINISH)
        self._cancel = redis.register_script(_CANCEL)

    def enqueue(self, model: str, inputs: list[bytes], version: str = "") -> dict:
        """Write the job record and one stream entry per input in one round trip."""
        job_id, now = new_job_id(), time.time()
        args = [job_id, model, version, repr(now), self.max_backlog, self.result_ttl_s, len(inputs)]
        if not self._enqueue(keys=[keys.job(job_id), keys.stream(model)], args=args + inputs):
            raise BacklogFull(model)
        return {"id": job_id, "model": model, "version": version, "status": QUEUED,
                "created_at": repr(now), "n_inputs": str(len(inputs)), "n_done": "0",
                "n_failed": "0"}

    def get(self, job_id: str) -> dict | None:
        raw = self.redis.hgetall(keys.job(job_id))
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    def start(self, job_ids, version: str = "") -> dict[str, str | None]:
        """Mark jobs running on model `version`; returns each status afterwards (None: gone)."""
        job_ids = list(dict.fromkeys(job_ids))
        pipe = self.redis.pipeline(transaction=False)
        now = repr(time.time())
        for job_id in job_ids:
            self._start(keys=[keys.job(job_id)], args=[now, version], client=pipe)
        return {j: (s.decode() if s else None) for j, s in zip(job_ids, pipe.execute())}

    def finish(self, model: str, results: list[InputResult]) -> list[str]:
        """Record results, then ack and delete their entries, in one round trip.
        Returns the ids of jobs that this call finished."""
        pipe = self.redis.pipeline(transaction=False)
        now = repr(time.time())
        for res in results:
            payload = json.dumps(res.output if res.error is None else {"error": res.error})
            self._finish(keys=[keys.job(res.job_id), keys.finished(res.job_id)],
                         args=[res.idx, payload, int(res.error is not None), now,
                               self.result_ttl_s, res.error or ""], client=pipe)
        entry_ids = [res.entry_id for res in results]
        if entry_ids:
            pipe.xack(keys.stream(model), keys.GROUP, *entry_ids)
            pipe.xdel(keys.stream(model), *entry_ids)
        replies = pipe.execute()
        return [res.job_id for res, rc in zip(results, replies) if rc == 2]

    def cancel(self, job_id: str) -> int:
        """1 canceled, 0 already final, -1 no such job."""
        return self._cancel(keys=[keys.job(job_id), keys.finished(job_id)],
                            args=[repr(time.time()), self.result_ttl_s])

    def wait(self, job_id: str, timeout_s: float) -> dict | None:
        """The job record once it is final, or as it stands when `timeout_s` runs out.
        Wakes on the job's finished message, not by polling."""
        record = self.get(job_id)
        if record is None or record["status"] in FINAL or timeout_s <= 0:
            return record
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(keys.finished(job_id))
            # Read again after subscribing: a finish between the first read and the subscribe
            # would otherwise be missed.
            record = self.get(job_id)
            deadline = time.monotonic() + timeout_s
            while record is not None and record["status"] not in FINAL:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if pubsub.get_message(timeout=left) is not None:
                    record = self.get(job_id)
            return record
        finally:
            pubsub.close()
