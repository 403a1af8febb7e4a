"""The job record and its state changes. Each change is one Lua script, so it is atomic: a job
is enqueued whole or not at all, and completes exactly once however often an input is delivered.
"""
import functools
import json
import secrets
import time
from dataclasses import dataclass

from redis.exceptions import NoScriptError

from jobs import keys


@functools.cache
def _result_encoder():
    """orjson when installed (the worker): a result encodes ~10x faster, 18 us less each.
    Imported on first use, so the API (which only reads results) does not load it."""
    try:
        from orjson import dumps
    except ImportError:  # the stdlib writes the same JSON, with spaces
        dumps = json.dumps
    return dumps

IDEMPOTENCY_TTL_S = 24 * 3600
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED = "queued", "running", "succeeded", "failed", "canceled"
FINAL = (SUCCEEDED, FAILED, CANCELED)

# Run in one transaction right after the SETs that write the inputs' bytes (keys.job_input): the
# bytes never pass through Lua, which hashes every byte of a string, nor into a stream node.
# KEYS: job, routing, stats, each input's key[, idempotency]. ARGV: id, model, pinned version
# ('' = the default), created_at, max_backlog, ttl_s, n, request digest, idempotency ttl_s,
# fallback version, stream key prefix, n_fields, field, value, ...
# The version is resolved here, in the same atomic step as the write: once the workers switch
# the default to a new version, no job can still land on the old one. A refused job's inputs
# are deleted again.
# Returns {'ok', version}, {'full'}, {'noversion'} or {'dup', "<job id> <digest>"}.
_ENQUEUE = """
local n = tonumber(ARGV[7])
local function refuse(reply, reason)
  for i = 4, 3 + n do redis.call('DEL', KEYS[i]) end
  if reason then redis.call('HINCRBY', KEYS[3], 'refused|' .. ARGV[2] .. '|' .. reason, 1) end
  return reply
end
local idempotency = KEYS[4 + n]
if idempotency then
  local prior = redis.call('GET', idempotency)
  if prior then return refuse({'dup', prior}) end
end
local version = ARGV[3]
if version == '' then version = redis.call('HGET', KEYS[2], 'default') or ARGV[10] end
if version == '' then return refuse({'noversion'}, 'no_version') end
local stream = ARGV[11] .. version
if redis.call('XLEN', stream) + n > tonumber(ARGV[5]) then
  return refuse({'full'}, 'backlog_full')
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'model', ARGV[2], 'version', version,
           'status', 'queued', 'created_at', ARGV[4], 'n_inputs', n, 'n_done', 0, 'n_failed', 0)
local n_fields = tonumber(ARGV[12])
for i = 1, n_fields do
  redis.call('HSET', KEYS[1], ARGV[11 + 2 * i], ARGV[12 + 2 * i])
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
for i = 0, n - 1 do
  redis.call('XADD', stream, '*', 'job', ARGV[1], 'idx', i, 't', ARGV[4])
end
if idempotency then
  redis.call('SET', idempotency, ARGV[1] .. ' ' .. ARGV[8], 'EX', ARGV[9])
end
redis.call('HINCRBY', KEYS[3], 'submitted|' .. ARGV[2] .. '|' .. version, 1)
return {'ok', version}
"""

# Shared by the scripts that change a job's state: when the job has a webhook for `event`,
# create its delivery and make it due now, in the same atomic step as the state change.
# KEYS passed: job, deliveries list, the event's delivery hash, the due set.
_SCHEDULE_WEBHOOK = """
local function schedule_webhook(job_key, list_key, delivery_key, due_key, event, now, ttl)
  local url = redis.call('HGET', job_key, 'webhook')
  if not url or url == '' then return end
  local events = ',' .. (redis.call('HGET', job_key, 'webhook_events') or 'completed') .. ','
  if not string.find(events, ',' .. event .. ',', 1, true) then return end
  if redis.call('EXISTS', delivery_key) == 1 then return end
  local job_id = redis.call('HGET', job_key, 'id')
  local wid = 'msg_' .. job_id .. '_' .. event
  redis.call('HSET', delivery_key, 'id', wid, 'job', job_id, 'event', event, 'url', url,
             'status', 'pending', 'created_at', now, 'next_at', now, 'attempts', 0)
  redis.call('EXPIRE', delivery_key, ttl)
  redis.call('RPUSH', list_key, wid)
  redis.call('EXPIRE', list_key, ttl)
  redis.call('ZADD', due_key, now, wid)
end
"""

# One call per batch. KEYS: due, then for each job: job, deliveries, started delivery.
# ARGV: now, model version, delivery ttl_s.
# Returns, for each job in turn: its status afterwards ('' when the job is gone), and the output
# form the job asked for.
_START = _SCHEDULE_WEBHOOK + """
local now, version, ttl = ARGV[1], ARGV[2], ARGV[3]
local out = {}
for i = 2, #KEYS, 3 do
  local job = KEYS[i]
  local st = redis.call('HGET', job, 'status')
  if st == 'queued' then
    redis.call('HSET', job, 'status', 'running', 'started_at', now, 'version', version)
    schedule_webhook(job, KEYS[i + 1], KEYS[i + 2], KEYS[1], 'started', now, ttl)
    st = 'running'
  end
  out[#out + 1] = st or ''
  out[#out + 1] = redis.call('HGET', job, 'output') or ''
end
return out
"""

# A finished job's record is published with its finish message up to this size (JSON).
RECORD_IN_MESSAGE_MAX = 16384

# One call per batch: record each input's result, then ack and delete the batch's stream entries,
# in one atomic step, and delete each input's bytes; count them (keys.stats). KEYS: due, stream,
# stats, then for each result: job, finished channel, deliveries, started delivery, completed
# delivery, input. ARGV: now, ttl_s, delivery ttl_s, consumer group, "<model>|<version>", the
# size of the batch the model ran (0: none), then for each result: idx, output json, failed
# (0/1), error; then the stream entry ids to ack.
# Returns for each result: -1 job gone, 0 duplicate or job already final, 1 recorded,
# 2 recorded and job finished.
_FINISH = _SCHEDULE_WEBHOOK + f"local RECORD_IN_MESSAGE_MAX = {RECORD_IN_MESSAGE_MAX}\n" + """
local function finish(job, channel, list, started, completed, idx, payload, failed, err, now,
                      ttl, dttl, label)
  local st = redis.call('HGET', job, 'status')
  if not st then return -1 end
  if st ~= 'queued' and st ~= 'running' then return 0 end
  if redis.call('HSETNX', job, 'out:' .. idx, payload) == 0 then return 0 end
  local outcome = failed == '1' and 'failed' or 'succeeded'
  redis.call('HINCRBY', KEYS[3], 'inputs|' .. label .. '|' .. outcome, 1)
  if st == 'queued' then
    redis.call('HSET', job, 'status', 'running', 'started_at', now)
    schedule_webhook(job, list, started, KEYS[1], 'started', now, dttl)
  end
  if failed == '1' then
    redis.call('HINCRBY', job, 'n_failed', 1)
    redis.call('HSETNX', job, 'first_error', err)
  end
  local done = redis.call('HINCRBY', job, 'n_done', 1)
  local n = tonumber(redis.call('HGET', job, 'n_inputs'))
  if done < n then return 1 end
  local n_failed = tonumber(redis.call('HGET', job, 'n_failed'))
  local status = 'succeeded'
  if n_failed > 0 then
    status = 'failed'
    local first = redis.call('HGET', job, 'first_error')
    if n == 1 then
      redis.call('HSET', job, 'error', first)
    else
      redis.call('HSET', job, 'error',
                 string.format('%d of %d inputs failed; first error: %s', n_failed, n, first))
    end
  end
  redis.call('HSET', job, 'status', status, 'completed_at', now)
  redis.call('EXPIRE', job, ttl)
  local model = redis.call('HGET', job, 'model') or ''
  redis.call('HINCRBY', KEYS[3], 'jobs|' .. model .. '|' .. status, 1)
  schedule_webhook(job, list, completed, KEYS[1], 'completed', now, dttl)
  -- The final record rides with the message, so a waiter need not read it back; past
  -- RECORD_IN_MESSAGE_MAX bytes, only the status (every API process receives every message).
  local record = cjson.encode(redis.call('HGETALL', job))
  if #record > RECORD_IN_MESSAGE_MAX then record = status end
  redis.call('PUBLISH', channel, record)
  return 2
end

local now, ttl, dttl, label, batch = ARGV[1], ARGV[2], ARGV[3], ARGV[5], tonumber(ARGV[6])
if batch > 0 then
  redis.call('HINCRBY', KEYS[3], 'batches|' .. label, 1)
  redis.call('HINCRBY', KEYS[3], 'batched_inputs|' .. label, batch)
end
local n = (#KEYS - 3) / 6
local rcs = {}
for r = 0, n - 1 do
  local k, a = 4 + 6 * r, 7 + 4 * r
  rcs[r + 1] = finish(KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4],
                      ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], now, ttl, dttl, label)
  redis.call('DEL', KEYS[k + 5])
end
local first = 7 + 4 * n
for i = first, #ARGV, 500 do
  local last = math.min(i + 499, #ARGV)
  redis.call('XACK', KEYS[2], ARGV[4], unpack(ARGV, i, last))
  redis.call('XDEL', KEYS[2], unpack(ARGV, i, last))
end
return rcs
"""

# KEYS: job, finished channel, deliveries, completed delivery, due, stats. ARGV: now, ttl_s,
# delivery ttl_s. Returns -1 gone, 0 already final, 1 canceled.
_CANCEL = _SCHEDULE_WEBHOOK + """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
if st ~= 'queued' and st ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'canceled', 'completed_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
local model = redis.call('HGET', KEYS[1], 'model') or ''
redis.call('HINCRBY', KEYS[6], 'jobs|' .. model .. '|canceled', 1)
schedule_webhook(KEYS[1], KEYS[3], KEYS[4], KEYS[5], 'completed', ARGV[1], ARGV[3])
redis.call('PUBLISH', KEYS[2], 'canceled')
return 1
"""


WEBHOOK_EVENTS = ("started", "completed")
WEBHOOK_MAX_AGE_S = 24 * 3600  # deliveries are retried this long; their records outlive the job


class BacklogFull(Exception):
    """The model's stream already holds `max_backlog` inputs."""


class NoVersion(Exception):
    """No version of the model is known to route the job to."""


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request."""

    def __init__(self, job_id: str):
        super().__init__(job_id)
        self.job_id = job_id


def webhook_id(job_id: str, event: str) -> str:
    """The same id on every attempt of one event, so receivers can drop duplicates."""
    return f"msg_{job_id}_{event}"


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


def _allowed(record: dict | None, allowed) -> dict | None:
    return None if record is None or (allowed is not None and not allowed(record)) else record


def is_job_id(value: str) -> bool:
    return 16 <= len(value) <= 64 and all(c.isalnum() or c in "-_" for c in value)


class JobStore:
    def __init__(self, redis, result_ttl_s: int, max_backlog: int, listener=None):
        """`listener`: a jobs.listener.FinishListener shared by the process's waiting threads
        (the API); without one, each wait subscribes on a connection of its own."""
        self.redis = redis
        self.listener = listener
        self.result_ttl_s = result_ttl_s
        self.max_backlog = max_backlog
        self.delivery_ttl_s = result_ttl_s + WEBHOOK_MAX_AGE_S + 3600
        self._enqueue = redis.register_script(_ENQUEUE)
        self._start = redis.register_script(_START)
        self._finish = redis.register_script(_FINISH)
        self._cancel = redis.register_script(_CANCEL)

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
        job_keys = [keys.job(job_id), keys.routing(model), keys.stats(), *input_keys]
        if idempotency:
            job_keys.append(keys.idempotency(idempotency[0]))
        digest = idempotency[1] if idempotency else ""
        args = [job_id, model, version, repr(now), self.max_backlog, self.result_ttl_s,
                len(inputs), digest, IDEMPOTENCY_TTL_S, fallback_version,
                keys.stream(model, ""), len(fields)]
        for name, value in fields.items():
            args += [name, value]
        reply = self._write_then_enqueue(dict(zip(input_keys, inputs)), job_keys, args)
        outcome = reply[0].decode()
        if outcome == "full":
            raise BacklogFull(model)
        if outcome == "noversion":
            raise NoVersion(model)
        if outcome == "dup":
            prior_id, prior_digest = reply[1].decode().split(" ", 1)
            if prior_digest != digest:
                raise IdempotencyConflict(prior_id)
            return self.get(prior_id), True
        record = {"id": job_id, "model": model, "version": reply[1].decode(), "status": QUEUED,
                  "created_at": repr(now), "n_inputs": str(len(inputs)), "n_done": "0",
                  "n_failed": "0", **fields}
        return record, False

    def _write_then_enqueue(self, inputs: dict, script_keys: list, args: list):
        """SET each input's bytes, then run the enqueue script, in one transaction and one
        round trip. SET keeps a large value as Redis read it off the socket, without a copy."""
        def write(pipe):
            for key, data in inputs.items():
                pipe.set(key, data, ex=self.result_ttl_s)
        return self._pipelined(True, write, self._enqueue, script_keys, args)[-1]

    def _pipelined(self, transaction: bool, before, script, script_keys: list, args: list,
                   after=None) -> list:
        """One round trip: the commands `before(pipe)` adds, the script, then those `after(pipe)`
        adds; their replies. A Redis that forgot the script (restarted) is given it, and the
        whole pipeline is sent again."""
        for attempt in (1, 2):
            pipe = self.redis.pipeline(transaction=transaction)
            if before:
                before(pipe)
            pipe.evalsha(script.sha, len(script_keys), *script_keys, *args)
            if after:
                after(pipe)
            try:
                return pipe.execute()
            except NoScriptError:
                if attempt == 2:
                    raise
                self.redis.script_load(script.script)

    def get(self, job_id: str) -> dict | None:
        raw = self.redis.hgetall(keys.job(job_id))
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    def start(self, job_ids, version: str = "", entries=()) -> dict[str, tuple[str | None, str]]:
        """Mark jobs running on model `version`, in one call. Returns each job's status
        afterwards (None: gone) and the output form it asked for ("raw": the model's output
        rows, for the standard protocols; "": the model's usual result).
        `entries` (jobs.streams.Entry, of these jobs): in the same round trip, each one's
        input bytes are read into `entry.data` (None: gone, as its job expired or another
        delivery of it finished), so a worker can decode as soon as it has started the jobs.
        An entry that carries its bytes (queued by an older API) is left as it is."""
        job_ids = list(dict.fromkeys(job_ids))
        if not job_ids:
            return {}
        script_keys = [keys.webhooks_due()]
        for job_id in job_ids:
            script_keys += [keys.job(job_id), keys.deliveries(job_id),
                            keys.delivery(webhook_id(job_id, "started"))]
        missing = [e for e in entries if e.data is None]
        fetch = (lambda pipe: pipe.mget([keys.job_input(e.job_id, e.idx) for e in missing])
                 ) if missing else None
        replies = self._pipelined(False, None, self._start, script_keys,
                                  [repr(time.time()), version, self.delivery_ttl_s], fetch)
        for entry, data in zip(missing, replies[1] if missing else ()):
            entry.data = data
        reply = replies[0]
        return {j: (reply[2 * i].decode() or None, reply[2 * i + 1].decode())
                for i, j in enumerate(job_ids)}

    def finish(self, model: str, version, results: list[InputResult], batch: int = 0
               ) -> list[str]:
        """Record results of inputs of `model` v`version`, then ack and delete their entries,
        in one atomic call; `batch`: how many of them the model ran, as one batch (counted for
        GET /metrics). Returns the ids of jobs that this call finished."""
        if not results:
            return []
        script_keys = [keys.webhooks_due(), keys.stream(model, version), keys.stats()]
        args = [repr(time.time()), self.result_ttl_s, self.delivery_ttl_s, keys.GROUP,
                f"{model}|{version}", batch]
        dumps = _result_encoder()
        for res in results:
            job_id = res.job_id
            script_keys += [keys.job(job_id), keys.finished(job_id), keys.deliveries(job_id),
                            keys.delivery(webhook_id(job_id, "started")),
                            keys.delivery(webhook_id(job_id, "completed")),
                            keys.job_input(job_id, res.idx)]
            if res.error is None:
                args += [res.idx, dumps(res.output), 0, ""]
            else:
                args += [res.idx, dumps({"error": res.error}), 1, res.error]
        args += [res.entry_id for res in results]
        replies = self._finish(keys=script_keys, args=args)
        return [res.job_id for res, rc in zip(results, replies) if rc == 2]

    def cancel(self, job_id: str) -> int:
        """1 canceled, 0 already final, -1 no such job."""
        return self._cancel(keys=[keys.job(job_id), keys.finished(job_id),
                                  keys.deliveries(job_id),
                                  keys.delivery(webhook_id(job_id, "completed")),
                                  keys.webhooks_due(), keys.stats()],
                            args=[repr(time.time()), self.result_ttl_s, self.delivery_ttl_s])

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
