"""The feeder's loop: serve each active batch in turn, one step at a time.

validating:  unpack a .tar.gz, read the whole file once (count, duplicates, limits)
             -> in_progress, or failed with the file's problems
in_progress: collect the result lines the workers wrote into the files, then hand on inputs
             up to the batch's share of the window -> finalizing -> completed once all are in
cancelling:  collect what finished -> cancelled
expired:     a batch past its expires_at is collected and ended as expired

Each input's line reaches the files exactly once: the done bitmap says which are in, and the
files are cut back to the sizes of the last commit before anything is appended (a feeder that
died between writing and committing, or a Redis that lost the last commit in a restart). The cursor is saved with each window, so a feeder that
dies resumes where the last one stopped; an input handed on twice is written once."""
import json
import logging
import os
import shutil
import socket
import time
import uuid

from jobs import batch as b
from jobs import keys
from jobs.batchfile import FileProblem, Limits, START, items, prepare, scan
from jobs.deliveries import delivery_ttl_s
from jobs.feed import Feed
from feeder.inputs import error_line, model_input
from jobs.inputs import InputError

log = logging.getLogger("inferq.feeder")
LEASE_S = 10.0
COLLECT_MAX = 2000  # result lines taken per step
# An archive may unpack to this many times the largest upload; past it, it is a zip or gzip bomb.
UNPACKED_PER_UPLOADED = 4
SWEEP_EVERY_S = 60.0
ORPHAN_AGE_S = 600.0  # a directory without a batch this long is an upload that never finished


class Feeder:
    def __init__(self, redis, settings):
        self.redis, self.settings = redis, settings
        self.batches = b.Batches(redis, settings.batch_ttl_s,
                                 delivery_ttl_s(settings.result_ttl_s, settings.webhook_max_age_s))
        self.feed = Feed(redis, settings.result_ttl_s)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.limits = Limits(max_inputs=settings.batch_max_inputs,
                             max_input_bytes=settings.max_body_bytes,
                             max_total_bytes=settings.batch_max_bytes * UNPACKED_PER_UPLOADED)
        self._last_sweep = 0.0

    def step(self) -> bool:
        """Serve every active batch once. True when something moved."""
        if time.monotonic() - self._last_sweep > SWEEP_EVERY_S:
            self._last_sweep = time.monotonic()
            self.sweep()
        moved = False
        active = [r for r in (self.batches.get(i) for i in self.batches.active()) if r]
        running = [r for r in active if r["status"] == b.IN_PROGRESS]
        for record in active:
            if not self.feed.lease(record["id"], self.owner, LEASE_S):
                continue  # another feeder serves it
            try:
                moved |= self._serve(record, running)
            except OSError as exc:  # the batch store: full, unmounted; try again next step
                log.error("batch %s: %s", record["id"], exc)
        return moved

    def _serve(self, record: dict, running: list[dict]) -> bool:
        status, batch_id = record["status"], record["id"]
        expires = record.get("expires_at")
        if expires and float(expires) < time.time() and status in (b.VALIDATING, b.IN_PROGRESS):
            self._collect(record)
            return self._end(batch_id, b.EXPIRED, (b.VALIDATING, b.IN_PROGRESS))
        if status == b.VALIDATING:
            return self._validate(record)
        if status == b.CANCELLING:
            self._collect(record)
            return self._end(batch_id, b.CANCELLED, (b.CANCELLING,))
        if status == b.FINALIZING:
            return self._end(batch_id, b.COMPLETED, (b.FINALIZING,))
        if status != b.IN_PROGRESS:
            return False
        moved = self._collect(record)
        record = self.batches.get(batch_id) or record
        counts = b.counts(record)
        done = counts["completed"] + counts["failed"]
        if done >= counts["total"]:
            self._sync_files(record)
            self.batches.set_status(batch_id, b.FINALIZING, (b.IN_PROGRESS,))
            return self._end(batch_id, b.COMPLETED, (b.FINALIZING,))
        same_lane = [r for r in running if (r["model"], r["version"]) ==
                     (record["model"], record["version"])]
        share = max(1, self.settings.batch_window // max(1, len(same_lane)))
        in_flight = int(record.get("fed") or 0) - done
        if in_flight < share:
            moved |= self._hand_on(record, share - in_flight)
        return moved

    # -- validating ---------------------------------------------------------------------
    def _validate(self, record: dict) -> bool:
        batch_id = record["id"]
        files = b.Files(self.settings.batch_dir, batch_id)
        for path in (files.results, files.errors):
            open(path, "ab").close()  # both files exist, whatever happens to the inputs
        try:
            path, fmt = prepare(files.input, record["format"], files.plain, self.limits)
            total = scan(path, fmt, self.limits)
        except FileProblem as exc:
            log.info("batch %s failed: %s", batch_id, exc)
            return self._end(batch_id, b.FAILED, (b.VALIDATING,),
                             errors=json.dumps(exc.problems[:100]))
        self.redis.hset(keys.batch(batch_id), mapping={
            "total": total, "plain_format": fmt, "cursor": json.dumps(START), "fed": 0,
            "results_bytes": 0, "errors_bytes": 0})
        status = self.batches.set_status(batch_id, b.IN_PROGRESS, (b.VALIDATING,))
        log.info("batch %s: %d inputs, %s", batch_id, total, status)
        return True


    # -- feeding ------------------------------------------------------------------------
    def _hand_on(self, record: dict, room: int) -> bool:
        batch_id = record["id"]
        files = b.Files(self.settings.batch_dir, batch_id)
        fmt = record.get("plain_format") or record["format"]
        path = files.plain if fmt != record["format"] else files.input
        cursor = tuple(json.loads(record.get("cursor") or "[0, 0, 0]"))
        fed = int(record.get("fed") or 0)
        if fed >= int(record["total"]):
            return False
        spec = json.loads(record["input"])
        batch_items = []
        try:
            for item, after in items(path, fmt, self.limits, cursor):
                batch_items.append(item)
                cursor = after
                if len(batch_items) >= room:
                    break
        except FileProblem as exc:  # changed on disk since it was validated
            return self._end(batch_id, b.FAILED, (b.IN_PROGRESS,),
                             errors=json.dumps(exc.problems[:100]))
        done = self.feed.done(batch_id, [i.index for i in batch_items])
        queued, failed = [], []
        for item, already in zip(batch_items, done):
            if already:
                continue  # handed on and written before a restart
            try:
                queued.append((item.index, item.custom_id,
                               model_input(item, spec, self.settings.max_image_pixels)))
            except InputError as exc:
                failed.append(error_line(item, exc.code, exc.message))
        fed = max(fed, cursor[1])
        self.feed.hand_on(record, queued, failed, cursor, fed)
        return bool(batch_items)

    # -- collecting ---------------------------------------------------------------------
    def _collect(self, record: dict) -> bool:
        """Append the workers' result lines to the files, each input once, and commit."""
        batch_id = record["id"]
        files = b.Files(self.settings.batch_dir, batch_id)
        # Every time, not once per batch: Redis restarted from its append-only file may have
        # lost this process's own last commit, and the lines it wrote would come again.
        self._cut_back(files, self.feed.committed_sizes(batch_id))
        raw = self.feed.results(batch_id, COLLECT_MAX)
        if not raw:
            return False
        lines = [json.loads(r) for r in raw]
        done = self.feed.done(batch_id, [line["index"] for line in lines])
        seen, ok, bad = set(), [], []
        for line, already in zip(lines, done):
            if already or line["index"] in seen:
                continue
            seen.add(line["index"])
            (bad if "error" in line else ok).append(line)
        sizes = {}
        for path, lines_, field in ((files.results, ok, "results_bytes"),
                                    (files.errors, bad, "errors_bytes")):
            with open(path, "ab") as f:
                if lines_:
                    f.write(b"".join(json.dumps(x).encode() + b"\n" for x in lines_))
                    f.flush()
                    os.fsync(f.fileno())
                sizes[field] = f.tell()
        self.feed.commit(batch_id, len(raw), [x["index"] for x in ok],
                         [x["index"] for x in bad], sizes)
        return True

    def _cut_back(self, files: b.Files, sizes: dict[str, int]):
        """Drop what was written past the last commit Redis holds."""
        for path, field in ((files.results, "results_bytes"), (files.errors, "errors_bytes")):
            committed = sizes[field]
            try:
                if os.path.getsize(path) > committed:
                    os.truncate(path, committed)
            except FileNotFoundError:
                pass

    def _sync_files(self, record: dict):
        files = b.Files(self.settings.batch_dir, record["id"])
        for path in (files.results, files.errors):
            with open(path, "ab") as f:
                os.fsync(f.fileno())

    # -- ending -------------------------------------------------------------------------
    def _end(self, batch_id: str, status: str, from_: tuple, **fields) -> bool:
        after = self.batches.set_status(batch_id, status, from_, **fields)
        if after == status:
            self.feed.forget(batch_id)
            log.info("batch %s %s", batch_id, status)
        return True


    def sweep(self):
        """Remove the files of batches that are gone (expired or deleted records)."""
        try:
            entries = list(os.scandir(self.settings.batch_dir))
        except FileNotFoundError:
            return
        for entry in entries:
            if not (b.is_batch_id(entry.name) and entry.is_dir()):
                continue
            if time.time() - entry.stat().st_mtime < ORPHAN_AGE_S:
                continue
            if not self.redis.exists(keys.batch(entry.name)):
                shutil.rmtree(entry.path, ignore_errors=True)
                log.info("batch %s: record gone, files removed", entry.name)
