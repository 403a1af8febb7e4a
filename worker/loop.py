"""The inference loop for one model: a reader thread pulls micro-batches from the model's stream
and hands them to decode threads; one thread owns the model, runs each batch and writes results.
Decoding of batch k+1 overlaps with the model running batch k; no more than that is read ahead.
A batch is filled with jobs first; bulk batch inputs (the bulk lane) fill the room they leave."""
import logging
import queue
import threading
import time
from concurrent.futures import Future

import redis as redis_lib

from batching import BatchPolicy
from jobs.batch import IN_PROGRESS
from jobs.consumer import BulkResult, Consumer, InputResult
from jobs.record import RUNNING
from jobs.stream import StreamConsumer
from worker import bulk
from worker.errors import describe
from worker.preprocess import DecodeError, decode_image, decode_tensor

log = logging.getLogger("inferq.worker")
READ_BLOCK_MS = 1000  # how long an idle read waits; bounds how fast a stop is noticed
REDIS_DOWN = (redis_lib.ConnectionError, redis_lib.TimeoutError, redis_lib.BusyLoadingError)
# Redis at maxmemory (noeviction) refuses writes until memory frees. Wait, as for an outage:
# a batch given up would be redelivered until its inputs failed as poison.
REDIS_FULL = redis_lib.OutOfMemoryError



class Decoded:
    """A batch's inputs, decoded by the pool in `chunks` tasks (one per decode thread) rather
    than one task per input: each task costs a lock, a queue and a thread wake-up."""

    def __init__(self, pool, decode, datas: list, chunks: int):
        """`pool` None: decoded here and now."""
        size = max(1, -(-len(datas) // max(1, chunks)))
        if pool is None:
            self._futures = [Future()]
            self._futures[0].set_result(_decode_all(decode, datas))
        else:
            self._futures = [pool.submit(_decode_all, decode, datas[i:i + size])
                             for i in range(0, len(datas), size)]

    def results(self) -> list:
        """Each input's array, or the DecodeError it raised, in order. Waits for the pool."""
        return [x for future in self._futures for x in future.result()]


def _decode_all(decode, datas: list) -> list:
    out = []
    for data in datas:
        try:
            out.append(decode(data))
        except DecodeError as exc:
            out.append(exc)
    return out


class ModelLoop:
    def __init__(self, predictor, redis, consumer_name: str, settings, decode_pool):
        self.predictor, self.spec, self.settings = predictor, predictor.spec, settings
        self.consumer = StreamConsumer(redis, self.spec.name, self.spec.version, consumer_name)
        # The consumer name is "<worker name>/<model version>" (worker/service.py): batches are
        # counted per worker, whichever of its versions ran them.
        self.store = Consumer(redis, settings.result_ttl_s, settings.webhook_max_age_s,
                              worker=consumer_name.partition("/")[0])
        self.decode_pool = decode_pool
        self.stopping = threading.Event()
        self.draining = threading.Event()  # read until the stream is empty, then stop
        self.drained = threading.Event()
        self._batches = queue.SimpleQueue()
        # One prepared batch waits while the model runs. A Lock and a SimpleQueue: the
        # hand-over to the model thread is on every job's path, and these wake it in C.
        self._slot = threading.Lock()
        self._last_reclaim = 0.0
        # Whether the last look at the bulk lane found it short: then an idle read waits on both
        # lanes, and a batch of jobs alone costs no read of the bulk lane.
        self._bulk_idle = False
        self._carry = []  # bulk entries an idle read took beyond the room; they lead the next batch
        self._threads = [threading.Thread(target=self._read_loop, daemon=True,
                                          name=f"inferq-read-{self.spec.name}"),
                         threading.Thread(target=self._model_loop, daemon=True,
                                          name=f"inferq-model-{self.spec.name}")]

    def _decode(self, data: bytes | None):
        if data is None:
            raise DecodeError("the input's bytes are gone: its job expired, or another "
                              "delivery of it finished first")
        spec = self.spec
        if spec.kind == "tensor":
            return decode_tensor(data, spec.dtype, spec.shape)
        return decode_image(data, spec.size, spec.color_mode)

    def drain(self):
        """No new jobs come to this version: serve what its stream holds, then stop."""
        self.draining.set()

    def start(self):
        self._retry(self.consumer.ensure_group)
        for t in self._threads:
            t.start()

    def stop(self, timeout_s: float = 60.0):
        """Stop reading; the batches already read are finished first."""
        self.stopping.set()
        for t in self._threads:
            t.join(timeout_s)
        try:
            self.consumer.leave()
        except redis_lib.RedisError:
            pass

    def _retry(self, fn, *args, until_stopped: bool = True):
        """Call `fn` until Redis answers; a worker outlives a Redis restart. Gives up (None)
        once the worker is stopping, unless `until_stopped` is False (results in hand)."""
        while True:
            try:
                return fn(*args)
            except (*REDIS_DOWN, REDIS_FULL) as exc:
                if until_stopped and self.stopping.is_set():
                    return None
                state = "full" if isinstance(exc, REDIS_FULL) else "unavailable"
                log.warning("redis %s (%s); retrying in 1 s", state, exc)
                time.sleep(1.0)

    # -- reader -------------------------------------------------------------------------
    def _read_loop(self):
        while not self.stopping.is_set():
            self._slot.acquire()
            try:
                batch = self._retry(self._collect) or []
                batch, decoded = self._admit(batch)
            except Exception:  # e.g. the group vanished with a FLUSHALL: recreate, go on
                log.exception("model %s: reading the stream failed; retrying in 1 s",
                              self.spec.name)
                batch = []
                time.sleep(1.0)
                self._retry(self.consumer.ensure_group)
            if not batch:
                self._slot.release()
                if self.draining.is_set() and self._retry(self._empty):
                    self.drained.set()
                    break
                continue
            self._batches.put((batch, decoded))
        self._batches.put(None)

    def _empty(self) -> bool:
        """Nothing queued or in flight on this version (either lane), by any worker."""
        return self.consumer.empty()

    def _collect(self) -> list:
        s = self.settings
        policy = BatchPolicy(self.spec.max_batch_size, s.max_wait_s)
        policy.add(self._carry)
        self._carry = []
        if policy.room and time.monotonic() - self._last_reclaim >= min(1.0, s.claim_idle_s / 2):
            self._last_reclaim = time.monotonic()
            policy.add(self.consumer.reclaim(s.claim_idle_s, policy.room))
        while not self.stopping.is_set() and not policy.due():
            if not self._bulk_idle:
                # The bulk lane has inputs: take the jobs waiting, then fill the room from it.
                policy.add(self.consumer.read(policy.room))
                if policy.room:
                    policy.add(self.consumer.read_bulk(policy.room))
                    self._bulk_idle = policy.room > 0
            elif not policy.items:
                # Idle: wait on both lanes at once, so that either wakes this worker.
                idle_ms = 100 if self.draining.is_set() else READ_BLOCK_MS
                self._read_idle(policy, idle_ms)
                if not policy.items:
                    break  # idle: go round, so reclaims and stops are noticed
            else:
                # BLOCK 0 would wait forever: a batch already open reads without blocking when due.
                wait_ms = int(policy.time_left() * 1000)
                got = self.consumer.read(policy.room, wait_ms or None)
                policy.add(got)
                if not got and s.max_wait_s == 0:
                    break
        return policy.take()

    def _read_idle(self, policy: BatchPolicy, block_ms: int):
        """One read over both lanes (up to the room from each): the jobs, then bulk inputs to
        fill the room; any more bulk inputs lead the next batch, as they are already ours."""
        got = self.consumer.read_both(policy.room, block_ms)
        jobs = [e for e in got if not e.bulk]
        more = [e for e in got if e.bulk]
        fit = policy.room - len(jobs)
        policy.add(jobs + more[:fit])
        self._carry = more[fit:]
        if more:
            self._bulk_idle = False

    def _admit(self, batch: list) -> tuple[list, "Decoded | None"]:
        """Fail inputs delivered too often; mark the rest's jobs running and check the bulk
        inputs' batches still run, fetching their bytes in the same round trip (one per lane);
        drop the inputs whose job is gone or canceled, or whose batch no longer runs. Returns
        what is left to run, and its inputs (being decoded)."""
        max_attempts = self.settings.max_attempts
        poison = [e for e in batch if e.deliveries > max_attempts]
        if poison:
            for e in poison:
                log.error("%s: poison, delivered %d times", bulk.where(e), e.deliveries)
            message = ("input was delivered {} times without finishing (max_attempts="
                       f"{max_attempts}); the worker crashed or the model failed on it each time")
            self._write([bulk.failed(e, bulk.POISON, message.format(e.deliveries)) if e.bulk
                         else InputResult(e.id, e.job_id, e.idx,
                                          error=message.format(e.deliveries))
                         for e in poison], 0, until_stopped=True)
            batch = [e for e in batch if e.deliveries <= max_attempts]
        jobs, inputs = [e for e in batch if not e.bulk], [e for e in batch if e.bulk]
        if jobs:
            started = self._retry(self.store.start, [e.job_id for e in jobs],
                                  str(self.spec.version), jobs)
            if started is None:  # stopping: the inputs stay pending, for another worker
                return [], None
            for e in jobs:
                e.raw = started[e.job_id][1] == "raw"
            jobs = self._keep(jobs, lambda e: started[e.job_id][0] == RUNNING)
        if inputs:
            running = self._retry(self.store.start_bulk, inputs)
            if running is None:
                return [], None
            inputs = self._keep(inputs, lambda e: running[e.batch] == IN_PROGRESS)
        batch = jobs + inputs
        if not batch:
            return [], None
        datas = [e.data for e in batch]
        # A lone input (an idle worker) is decoded in this thread, at once: handing it over
        # would add a thread wake-up to its latency.
        pool = self.decode_pool if len(batch) > 1 else None
        return batch, Decoded(pool, self._decode, datas, self.settings.decode_threads)

    def _keep(self, entries: list, runs) -> list:
        """The entries for which `runs(entry)`; the others are dropped, with their bytes."""
        gone = [e for e in entries if not runs(e)]
        if gone:
            self._retry(self.consumer.drop, gone)
        return [e for e in entries if runs(e)]

    # -- model owner --------------------------------------------------------------------
    def _model_loop(self):
        while True:
            item = self._batches.get()
            if item is None:
                return
            # Jobs that came while a batch of bulk inputs waited go first, as a batch of their
            # own: read while the reader still waits for the slot, so it cannot take them into
            # the batch after this one.
            ahead = self._jobs_ahead(item[0])
            self._slot.release()
            for batch in (ahead, item):
                if batch and batch[0]:
                    self._run_safely(batch)

    def _jobs_ahead(self, batch: list):
        """Jobs queued now, read and admitted, when `batch` holds only bulk inputs."""
        if not batch or not all(e.bulk for e in batch) or self.stopping.is_set():
            return None
        try:
            got = self.consumer.read(self.spec.max_batch_size)
            return self._admit(got) if got else None
        except redis_lib.RedisError:  # the reader meets it too, and waits for Redis
            return None

    def _run_safely(self, item):
        try:
            self._run_batch(*item)
        except Exception:  # unacked inputs are reclaimed and retried; keep serving
            log.exception("model %s: a batch failed outside the model; its inputs will be "
                          "retried after claim_idle_s", self.spec.name)

    def _run_batch(self, entries, decoded):
        results, ready, images = [], [], []
        for entry, image in zip(entries, decoded.results()):
            if isinstance(image, DecodeError):
                log.info("%s: %s", bulk.where(entry), image)
                results.append(self._undecodable(entry, image))
            else:
                images.append(image)
                ready.append(entry)
        if ready:
            results += self._predict(ready, images)
        self._write(results, len(ready))

    def _undecodable(self, entry, exc: DecodeError):
        if not entry.bulk:
            return InputResult(entry.id, entry.job_id, entry.idx, error=str(exc))
        if entry.data is None:
            return bulk.failed(entry, bulk.INPUT_GONE, "the input's bytes are gone from the "
                               "queue (expired or lost); submit it again in a new batch")
        return bulk.failed(entry, bulk.decode_error_code(self.spec.kind), str(exc))

    def _write(self, results: list, ran: int, until_stopped: bool = False):
        """Record results of both lanes; `ran`: how many inputs the model ran, as one batch,
        counted once for the run whichever lanes it served."""
        jobs = [r for r in results if isinstance(r, InputResult)]
        lines = [r for r in results if isinstance(r, BulkResult)]
        name, version = self.spec.name, self.spec.version
        if jobs:
            self._retry(self.store.finish, name, version, jobs, ran, until_stopped=until_stopped)
        if lines:
            self._retry(self.store.finish_bulk, name, version, lines, 0 if jobs else ran,
                        until_stopped=until_stopped)

    def _predict(self, entries, images) -> list:
        started = time.time()
        t0 = time.perf_counter()
        try:
            rows = self.predictor.predict(images)
        except Exception as exc:  # a model error must not stop the worker
            if len(entries) > 1:
                # Run each input alone so one bad input cannot fail its batch-mates.
                log.warning("model %s failed on a batch of %d (%s); retrying inputs one by one",
                            self.spec.name, len(entries), exc)
                return [r for e, im in zip(entries, images) for r in self._predict([e], [im])]
            return self._failed(entries[0], exc)
        predict_ms = (time.perf_counter() - t0) * 1000
        results = []
        for entry, row in zip(entries, rows):
            if entry.bulk:
                results.append(bulk.succeeded(entry, self.predictor, row))
                continue
            metrics = {"queue_ms": round(max(0.0, started - entry.enqueued_at) * 1000, 2),
                       "predict_ms": round(predict_ms, 2), "batch_size": len(entries)}
            output = ({"output": self.predictor.raw(row)} if entry.raw
                      else self.predictor.result(row))
            results.append(InputResult(entry.id, entry.job_id, entry.idx,
                                       output={**output, "metrics": metrics}))
        return results

    def _failed(self, entry, exc) -> list:
        error = f"model {self.spec.name} raised {type(exc).__name__}: {describe(exc)}"
        if entry.deliveries >= self.settings.max_attempts:
            log.error("%s: %s (attempt %d of %d, failing it)", bulk.where(entry), error,
                      entry.deliveries, self.settings.max_attempts)
            error = f"{error} (failed {entry.deliveries} attempts)"
            return [bulk.failed(entry, bulk.MODEL_ERROR, error) if entry.bulk
                    else InputResult(entry.id, entry.job_id, entry.idx, error=error)]
        # Not acked: it is reclaimed after claim_idle_s and tried again (a transient error,
        # such as running out of GPU memory, may pass).
        log.warning("%s: %s (attempt %d of %d, will retry)", bulk.where(entry), error,
                    entry.deliveries, self.settings.max_attempts)
        return []
