"""The model streams as workers read them: one consumer of the shared group over a model
version's two lanes (interactive jobs, and bulk batch inputs), reading new entries, reclaiming
those of dead consumers, dropping those that need no result."""
from dataclasses import dataclass

import redis as redis_lib

from jobs import keys


@dataclass
class Entry:
    """One queued input as a worker receives it: a job's input (`job_id`), or a bulk batch's
    (`batch` and `custom_id`; no job id)."""
    id: str
    job_id: str
    idx: int
    enqueued_at: float
    data: bytes | None = None  # its bytes, once Consumer.start/start_bulk has fetched them
    deliveries: int = 1
    raw: bool = False  # the job wants the model's output rows (the standard protocols)
    batch: str = ""  # bulk entries: the batch id
    custom_id: str = ""  # bulk entries: the input's id in the batch file

    @property
    def bulk(self) -> bool:
        return bool(self.batch)


def _entry(entry_id, fields) -> Entry:
    if b"batch" in fields:
        # A custom_id is the user's; one that is not UTF-8 must not stop the read loop.
        return Entry(id=entry_id.decode(), job_id="", idx=int(fields[b"idx"]),
                     enqueued_at=float(fields[b"t"]), batch=fields[b"batch"].decode(),
                     custom_id=fields[b"cid"].decode("utf-8", "replace"))
    return Entry(id=entry_id.decode(), job_id=fields[b"job"].decode(), idx=int(fields[b"idx"]),
                 enqueued_at=float(fields[b"t"]))


def _input_key(entry: Entry) -> str:
    return keys.batch_input(entry.batch, entry.idx) if entry.bulk else \
        keys.job_input(entry.job_id, entry.idx)


class StreamConsumer:
    """Reads one model version's streams as one named consumer of the shared group: the
    interactive stream (`stream`) and the bulk lane (`bulk_stream`)."""

    def __init__(self, redis, model: str, version, consumer: str):
        self.redis, self.model, self.version, self.consumer = redis, model, version, consumer
        self.stream = keys.stream(model, version)
        self.bulk_stream = keys.bulk_stream(model, version)
        self._claim_cursors = {self.stream: "0-0", self.bulk_stream: "0-0"}

    def ensure_group(self):
        for stream in (self.stream, self.bulk_stream):
            try:
                # id 0: entries enqueued before any worker existed are served too.
                self.redis.xgroup_create(stream, keys.GROUP, id="0", mkstream=True)
            except redis_lib.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def read(self, count: int, block_ms: int | None = None) -> list[Entry]:
        """Up to `count` new interactive entries; waits up to `block_ms` for the first (None:
        no wait)."""
        return self._read({self.stream: ">"}, count, block_ms)

    def read_bulk(self, count: int) -> list[Entry]:
        """Up to `count` new bulk entries, without waiting."""
        return self._read({self.bulk_stream: ">"}, count, None)

    def read_both(self, count: int, block_ms: int | None) -> list[Entry]:
        """Up to `count` new entries of each lane, interactive first; waits up to `block_ms`
        for the first of either (None: no wait), so an idle worker wakes for both."""
        return self._read({self.stream: ">", self.bulk_stream: ">"}, count, block_ms)

    def _read(self, streams: dict, count: int, block_ms: int | None) -> list[Entry]:
        reply = self.redis.xreadgroup(keys.GROUP, self.consumer, streams, count=count,
                                      block=block_ms)
        by_stream = {name.decode(): items for name, items in reply or ()}
        return [_entry(i, f) for name in streams for i, f in by_stream.get(name, ()) if f]

    def reclaim(self, min_idle_s: float, count: int) -> list[Entry]:
        """Take over up to `count` entries another consumer read but has not acked for
        `min_idle_s` (its worker died), interactive ones first. Each entry carries how often
        it has been delivered, this time included."""
        entries = self._reclaim(self.stream, min_idle_s, count)
        if len(entries) < count:
            entries += self._reclaim(self.bulk_stream, min_idle_s, count - len(entries))
        return entries

    def _reclaim(self, stream: str, min_idle_s: float, count: int) -> list[Entry]:
        cursor, claimed, _deleted = self.redis.xautoclaim(
            stream, keys.GROUP, self.consumer, int(min_idle_s * 1000),
            start_id=self._claim_cursors[stream], count=count)
        self._claim_cursors[stream] = cursor
        entries = [_entry(i, f) for i, f in claimed if f]
        if entries:
            pending = self.redis.xpending_range(stream, keys.GROUP, min=entries[0].id,
                                                max=entries[-1].id, count=len(entries) * 2,
                                                consumername=self.consumer)
            counts = {p["message_id"].decode(): p["times_delivered"] for p in pending}
            for entry in entries:
                entry.deliveries = counts.get(entry.id, entry.deliveries)
        return entries

    def drop(self, entries: list[Entry]):
        """Ack and delete entries that need no result (their job is gone or was canceled, their
        batch is no longer running), and their bytes."""
        if entries:
            pipe = self.redis.pipeline(transaction=False)
            for stream, lane in ((self.stream, False), (self.bulk_stream, True)):
                ids = [e.id for e in entries if e.bulk == lane]
                if ids:
                    pipe.xack(stream, keys.GROUP, *ids)
                    pipe.xdel(stream, *ids)
            pipe.delete(*[_input_key(e) for e in entries])
            pipe.execute()

    def empty(self) -> bool:
        """Nothing queued or in flight on this version's lanes, by any worker."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(self.stream)
        pipe.xlen(self.bulk_stream)
        return not any(pipe.execute())

    def leave(self):
        """Remove this consumer from the group if it holds nothing (a clean shutdown)."""
        for stream in (self.stream, self.bulk_stream):
            pending = self.redis.xpending_range(stream, keys.GROUP, min="-", max="+", count=1,
                                                consumername=self.consumer)
            if not pending:
                self.redis.xgroup_delconsumer(stream, keys.GROUP, self.consumer)
