"""The job store's consumer side, what workers call: start a batch's jobs (fetching their
inputs' bytes in the same round trip) and record their results. Each call is one Lua script
(jobs/lua/), so a job completes exactly once however often an input is delivered."""
import functools
import json
import time
from dataclasses import dataclass

from jobs import keys, scripts
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


@dataclass
class InputResult:
    """What a worker writes back for one stream entry."""
    entry_id: str
    job_id: str
    idx: int
    output: dict | None = None  # {"top_k": [...], "metrics": {...}} on success
    error: str | None = None


class Consumer:
    def __init__(self, redis, result_ttl_s: int, webhook_max_age_s: float):
        self.redis = redis
        self.result_ttl_s = result_ttl_s
        self.delivery_ttl_s = delivery_ttl_s(result_ttl_s, webhook_max_age_s)
        self._start = scripts.register(redis, "schedule_webhook", "start")
        self._finish = scripts.register(redis, "schedule_webhook", "finish")

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
        script_keys = [keys.webhooks_due(), keys.stream(model, version), keys.stats()]
        args = [repr(time.time()), self.result_ttl_s, self.delivery_ttl_s, keys.GROUP,
                f"{model}|{version}", batch, RECORD_IN_MESSAGE_MAX]
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
