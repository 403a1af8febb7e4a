"""The model streams as workers read them: one consumer of the shared group, reading new
entries, reclaiming those of dead consumers, dropping those that need no result."""
from dataclasses import dataclass

import redis as redis_lib

from jobs import keys


@dataclass
class Entry:
    """One queued input as a worker receives it."""
    id: str
    job_id: str
    idx: int
    enqueued_at: float
    data: bytes | None = None  # its bytes, once Consumer.start has fetched them
    deliveries: int = 1
    raw: bool = False  # the job wants the model's output rows (the standard protocols)


def _entry(entry_id, fields) -> Entry:
    return Entry(id=entry_id.decode(), job_id=fields[b"job"].decode(), idx=int(fields[b"idx"]),
                 enqueued_at=float(fields[b"t"]))


class StreamConsumer:
    """Reads one model version's stream as one named consumer of the shared group."""

    def __init__(self, redis, model: str, version, consumer: str):
        self.redis, self.model, self.version, self.consumer = redis, model, version, consumer
        self.stream = keys.stream(model, version)
        self._claim_cursor = "0-0"

    def ensure_group(self):
        try:
            # id 0: entries enqueued before any worker existed are served too.
            self.redis.xgroup_create(self.stream, keys.GROUP, id="0", mkstream=True)
        except redis_lib.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, count: int, block_ms: int | None = None) -> list[Entry]:
        """Up to `count` new entries; waits up to `block_ms` for the first (None: no wait)."""
        reply = self.redis.xreadgroup(keys.GROUP, self.consumer, {self.stream: ">"},
                                      count=count, block=block_ms)
        if not reply:
            return []
        return [_entry(i, f) for i, f in reply[0][1] if f]

    def reclaim(self, min_idle_s: float, count: int) -> list[Entry]:
        """Take over entries another consumer read but has not acked for `min_idle_s` (its
        worker died). Each entry carries how often it has been delivered, this time included."""
        cursor, claimed, _deleted = self.redis.xautoclaim(
            self.stream, keys.GROUP, self.consumer, int(min_idle_s * 1000),
            start_id=self._claim_cursor, count=count)
        self._claim_cursor = cursor
        entries = [_entry(i, f) for i, f in claimed if f]
        if entries:
            pending = self.redis.xpending_range(self.stream, keys.GROUP, min=entries[0].id,
                                                max=entries[-1].id, count=len(entries) * 2,
                                                consumername=self.consumer)
            counts = {p["message_id"].decode(): p["times_delivered"] for p in pending}
            for entry in entries:
                entry.deliveries = counts.get(entry.id, entry.deliveries)
        return entries

    def drop(self, entries: list[Entry]):
        """Ack and delete entries that need no result (their job is gone or was canceled),
        and their bytes."""
        if entries:
            ids = [e.id for e in entries]
            pipe = self.redis.pipeline(transaction=False)
            pipe.xack(self.stream, keys.GROUP, *ids)
            pipe.xdel(self.stream, *ids)
            pipe.delete(*[keys.job_input(e.job_id, e.idx) for e in entries])
            pipe.execute()

    def leave(self):
        """Remove this consumer from the group if it holds nothing (a clean shutdown)."""
        pending = self.redis.xpending_range(self.stream, keys.GROUP, min="-", max="+", count=1,
                                            consumername=self.consumer)
        if not pending:
            self.redis.xgroup_delconsumer(self.stream, keys.GROUP, self.consumer)

