"""The job store's consumer side, what workers call: start a batch's jobs (fetching their
inputs' bytes in the same round trip) and record their results. Each call is one Lua script
(jobs/lua/), so a job completes exactly once however often an input is delivered. Bulk batch
inputs (the bulk lane) are checked and fetched in one round trip too, and their result lines
written by one script per model run."""
import functools
import json
import time
from dataclasses import dataclass

from jobs import keys, live, scripts
from jobs.deliveries import delivery_ttl_s
from jobs.record import webhook_id

# A finished job's record is published with its finish message up to this size (JSON).
RECORD_IN_MESSAGE_MAX = 16384


@functools.cache
def _result_encoder():
    """orjson when installed (the worker); imported on first use, so a process that only reads
    results does not load it."""
    try:
        from orjson import dumps
    except ImportError:  # the stdlib writes the same JSON, with spaces
        dumps = json.dumps
    return dumps


def _compact(value) -> bytes:
    """JSON without spaces, as the lines of a batch's results files are written."""
    dumps = _result_encoder()
    if dumps is json.dumps:
        return json.dumps(value, separators=(",", ":")).encode()
    return dumps(value)


@dataclass
class BulkResult:
    """What a worker writes back for one bulk entry: its batch's result line."""
    entry_id: str
    batch_id: str
    idx: int
    custom_id: str
    outputs: object = None  # on success: top-k list (image models) or the raw output
    model_version: int = 0
    error: tuple[str, str] | None = None  # on failure: (code, message)

    def line(self) -> bytes:
        if self.error is None:
            return _compact({"custom_id": self.custom_id, "index": self.idx,
                             "outputs": self.outputs, "model_version": self.model_version})
        code, message = self.error
        return _compact({"custom_id": self.custom_id, "index": self.idx,
                         "error": {"code": code, "message": message}})


@dataclass
class InputResult:
    """What a worker writes back for one stream entry."""
    entry_id: str
    job_id: str
    idx: int
    output: dict | None = None  # {"top_k": [...], "metrics": {...}} on success
    error: str | None = None


class Consumer:
    def __init__(self, redis, result_ttl_s: int, webhook_max_age_s: float, worker: str = ""):
        """`worker`: the worker's name, under which its batches are counted (GET /v1/workers);
        "" counts none."""
        self.redis, self.worker = redis, worker
        self.result_ttl_s = result_ttl_s
        self.delivery_ttl_s = delivery_ttl_s(result_ttl_s, webhook_max_age_s)
        self._start = scripts.register(redis, "schedule_webhook", "start")
        self._finish = scripts.register(redis, "schedule_webhook", "ack_entries", "finish")
        self._finish_bulk = scripts.register(redis, "ack_entries", "finish_bulk")

    def start(self, job_ids, version: str = "", entries=()) -> dict[str, tuple[str | None, str]]:
        """Mark jobs running on model `version`, in one call. Returns each job's status
        afterwards (None: gone) and the output form it asked for ("raw": the model's output
        rows, for the standard protocols; "": the model's usual result).
        `entries` (jobs.stream.Entry, of these jobs): in the same round trip, each one's input
        bytes are read into `entry.data` (None: gone, as its job expired or another delivery
        of it finished), so a worker can decode as soon as it has started the jobs."""
        job_ids = list(dict.fromkeys(job_ids))
        if not job_ids:
            return {}
        script_keys = [keys.webhooks_due()]
        for job_id in job_ids:
            script_keys += [keys.job(job_id), keys.deliveries(job_id),
                            keys.delivery(webhook_id(job_id, "started"))]
        args = [repr(time.time()), version, self.delivery_ttl_s,
                *(webhook_id(job_id, "started") for job_id in job_ids)]
        entries = list(entries)
        fetch = (lambda pipe: pipe.mget([keys.job_input(e.job_id, e.idx) for e in entries])
                 ) if entries else None
        replies = scripts.pipelined(self.redis, False, None, self._start, script_keys, args, fetch)
        for entry, data in zip(entries, replies[1] if entries else ()):
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
        now = time.time()
        script_keys = [keys.webhooks_due(), keys.stream(model, version), keys.stats(),
                       keys.live_slot(live.slot_of(now))]
        args = [repr(now), self.result_ttl_s, self.delivery_ttl_s, keys.GROUP,
                f"{model}|{version}", batch, RECORD_IN_MESSAGE_MAX, self.worker, live.SLOT_TTL_S]
        dumps = _result_encoder()
        for res in results:
            job_id = res.job_id
            started, completed = webhook_id(job_id, "started"), webhook_id(job_id, "completed")
            script_keys += [keys.job(job_id), keys.finished(job_id), keys.deliveries(job_id),
                            keys.delivery(started), keys.delivery(completed),
                            keys.job_input(job_id, res.idx)]
            if res.error is None:
                args += [res.idx, dumps(res.output), 0, "", started, completed]
            else:
                args += [res.idx, dumps({"error": res.error}), 1, res.error, started, completed]
        args += [res.entry_id for res in results]
        replies = self._finish(keys=script_keys, args=args)
        return [res.job_id for res, rc in zip(results, replies) if rc == 2]

    def start_bulk(self, entries) -> dict[str, str | None]:
        """In one round trip, the status of each batch that bulk `entries` (jobs.stream.Entry)
        belong to (None: gone), and each entry's input bytes into `entry.data` (None: gone)."""
        entries = list(entries)
        batch_ids = list(dict.fromkeys(e.batch for e in entries))
        if not batch_ids:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for batch_id in batch_ids:
            pipe.hget(keys.batch(batch_id), "status")
        pipe.mget([keys.batch_input(e.batch, e.idx) for e in entries])
        replies = pipe.execute()
        for entry, data in zip(entries, replies[-1]):
            entry.data = data
        return {b: (st.decode() if st is not None else None)
                for b, st in zip(batch_ids, replies)}

    def finish_bulk(self, model: str, version, results: list[BulkResult], batch: int = 0
                    ) -> int:
        """Write the result lines of bulk inputs of `model` v`version` for the feeder (those of
        batches still running or being cancelled), delete their bytes, then ack and delete their
        entries, in one atomic call; `batch` as for `finish` (0 when that call of the same run
        counted it). Returns how many lines were kept."""
        if not results:
            return 0
        script_keys = [keys.bulk_stream(model, version), keys.stats(),
                       keys.live_slot(live.slot_of(time.time()))]
        args = [keys.GROUP, f"{model}|{version}", batch, self.worker, live.SLOT_TTL_S]
        for res in results:
            script_keys += [keys.batch(res.batch_id), keys.batch_results(res.batch_id),
                            keys.batch_input(res.batch_id, res.idx)]
            args += [res.line(), int(res.error is not None)]
        args += [res.entry_id for res in results]
        return sum(self._finish_bulk(keys=script_keys, args=args))
