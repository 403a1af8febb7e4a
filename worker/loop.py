"""The inference loop for one model: a reader thread pulls micro-batches from the model's stream
and hands them to decode threads; one thread owns the model, runs each batch and writes results.
Decoding of batch k+1 overlaps with the model running batch k; no more than that is read ahead."""
import logging
import queue
import threading
import time
from concurrent.futures import Future

import redis as redis_lib

from batching import BatchPolicy
from jobs.consumer import Consumer, InputResult
from jobs.record import RUNNING
from jobs.stream import StreamConsumer
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
        self.store = Consumer(redis, settings.result_ttl_s, settings.webhook_max_age_s)
        self.decode_pool = decode_pool
        self.stopping = threading.Event()
        self.draining = threading.Event()  # read until the stream is empty, then stop
        self.drained = threading.Event()
        self._batches = queue.SimpleQueue()
        # One prepared batch waits while the model runs. A Lock and a SimpleQueue: the
        # hand-over to the model thread is on every job's path, and these wake it in C.
        self._slot = threading.Lock()
        self._last_reclaim = 0.0
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
        """Nothing queued or in flight on this version, by any worker."""
        return self.consumer.redis.xlen(self.consumer.stream) == 0

    def _collect(self) -> list:
        s = self.settings
        policy = BatchPolicy(self.spec.max_batch_size, s.max_wait_s)
        if time.monotonic() - self._last_reclaim >= min(1.0, s.claim_idle_s / 2):
            self._last_reclaim = time.monotonic()
            policy.add(self.consumer.reclaim(s.claim_idle_s, self.spec.max_batch_size))
        while not self.stopping.is_set() and not policy.due():
            # BLOCK 0 would wait forever: a batch already open reads without blocking when due.
            idle_ms = 100 if self.draining.is_set() else READ_BLOCK_MS
            wait_ms = idle_ms if not policy.items else int(policy.time_left() * 1000)
            got = self.consumer.read(policy.room, wait_ms or None)
            policy.add(got)
            if not policy.items:
                break  # idle: go round, so reclaims and stops are noticed
            if not got and s.max_wait_s == 0:
                break
        return policy.take()

    def _admit(self, batch: list) -> tuple[list, "Decoded | None"]:
        """Fail inputs delivered too often; mark the rest's jobs running, fetching their bytes
        in the same round trip; drop the inputs whose job is gone or canceled. Returns what is
        left to run, and its inputs (being decoded)."""
        max_attempts = self.settings.max_attempts
        poison = [e for e in batch if e.deliveries > max_attempts]
        if poison:
            for e in poison:
                log.error("job %s input %d: poison, delivered %d times", e.job_id, e.idx,
                          e.deliveries)
            self._retry(self.store.finish, self.spec.name, self.spec.version, [InputResult(
                e.id, e.job_id, e.idx, error=f"input was delivered {e.deliveries} times without "
                f"finishing (max_attempts={max_attempts}); the worker crashed or "
                f"the model failed on it each time") for e in poison])
            batch = [e for e in batch if e.deliveries <= max_attempts]
        if not batch:
            return [], None
        started = self._retry(self.store.start, [e.job_id for e in batch],
                              str(self.spec.version), batch)
        if started is None:  # stopping: the inputs stay pending, for another worker
            return [], None
        gone = [e for e in batch if started[e.job_id][0] != RUNNING]
        if gone:
            self._retry(self.consumer.drop, gone)
            batch = [e for e in batch if started[e.job_id][0] == RUNNING]
        for e in batch:
            e.raw = started[e.job_id][1] == "raw"
        if not batch:
            return [], None
        datas = [e.data for e in batch]
        # A lone input (an idle worker) is decoded in this thread, at once: handing it over
        # would add a thread wake-up to its latency.
        pool = self.decode_pool if len(batch) > 1 else None
        return batch, Decoded(pool, self._decode, datas, self.settings.decode_threads)

    # -- model owner --------------------------------------------------------------------
    def _model_loop(self):
        while True:
            item = self._batches.get()
            if item is None:
                return
            self._slot.release()
            try:
                self._run_batch(*item)
            except Exception:  # unacked inputs are reclaimed and retried; keep serving
                log.exception("model %s: a batch failed outside the model; its inputs will be "
                              "retried after claim_idle_s", self.spec.name)

    def _run_batch(self, entries, decoded):
        results, ready, images = [], [], []
        for entry, image in zip(entries, decoded.results()):
            if isinstance(image, DecodeError):
                log.info("job %s input %d: %s", entry.job_id, entry.idx, image)
                results.append(InputResult(entry.id, entry.job_id, entry.idx, error=str(image)))
            else:
                images.append(image)
                ready.append(entry)
        if ready:
            results += self._predict(ready, images)
        if results:
            self._retry(self.store.finish, self.spec.name, self.spec.version, results, len(ready),
                        until_stopped=False)

    def _predict(self, entries, images) -> list[InputResult]:
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
            metrics = {"queue_ms": round(max(0.0, started - entry.enqueued_at) * 1000, 2),
                       "predict_ms": round(predict_ms, 2), "batch_size": len(entries)}
            output = ({"output": self.predictor.raw(row)} if entry.raw
                      else self.predictor.result(row))
            results.append(InputResult(entry.id, entry.job_id, entry.idx,
                                       output={**output, "metrics": metrics}))
        return results

    def _failed(self, entry, exc) -> list[InputResult]:
        error = f"model {self.spec.name} raised {type(exc).__name__}: {describe(exc)}"
        if entry.deliveries >= self.settings.max_attempts:
            log.error("job %s input %d: %s (attempt %d of %d, failing it)", entry.job_id,
                      entry.idx, error, entry.deliveries, self.settings.max_attempts)
            return [InputResult(entry.id, entry.job_id, entry.idx,
                                error=f"{error} (failed {entry.deliveries} attempts)")]
        # Not acked: it is reclaimed after claim_idle_s and tried again (a transient error,
        # such as running out of GPU memory, may pass).
        log.warning("job %s input %d: %s (attempt %d of %d, will retry)", entry.job_id,
                    entry.idx, error, entry.deliveries, self.settings.max_attempts)
        return []
