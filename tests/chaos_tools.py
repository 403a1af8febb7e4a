"""What the chaos and soak tests share: a stack of real processes that always stops, a counter
of finish signals, submit helpers, and process-tree memory."""
import io
import os
import random
import signal
import threading
import time
from pathlib import Path

import redis
import requests
from PIL import Image

from jobs import keys
from jobs.record import published_record
from stack.processes import (RedisServer, children, start_api, start_webhook_worker, start_worker,
                         wait_for, wait_until_serving)

MODEL = "shapes"  # the demo model in models/: small and fast on a CPU
STREAM = keys.stream(MODEL, 1)


def png(seed: int, size: int = 16) -> bytes:
    """A small noise PNG, different for each seed (so every request is distinguishable)."""
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (size, size), rng.randbytes(size * size * 3))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def submit(base: str, images: list[bytes], timeout_s: float = 30, **kwargs) -> requests.Response:
    return requests.post(f"{base}/v1/models/{MODEL}/jobs",
                         files=[("image", (f"{i}.png", data)) for i, data in enumerate(images)],
                         timeout=timeout_s, **kwargs)


def wait_job(job_url: str, timeout_s: float = 60) -> requests.Response:
    """Long-poll a job until it ends or `timeout_s` passes; the last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = max(0.1, min(30.0, deadline - time.monotonic()))
        resp = requests.get(job_url, params={"wait": left}, timeout=left + 10)
        if resp.status_code != 200 or resp.json()["finished"] or time.monotonic() >= deadline:
            return resp


def stream_state(client) -> tuple[int, int]:
    """(entries in the model's stream, entries read but not acked)."""
    try:
        pending = client.xpending(STREAM, keys.GROUP)["pending"]
    except redis.ResponseError:  # no group yet
        pending = 0
    return client.xlen(STREAM), pending


def job_records(client) -> list[str]:
    """Ids of every job record in Redis."""
    prefix = keys.job("")
    ids = []
    for key in client.scan_iter(match=keys.job("*"), count=1000):
        rest = key.decode()[len(prefix):]
        if ":" not in rest:  # not a job's sub-key (its deliveries list)
            ids.append(rest)
    return ids


class FinishCounter:
    """Counts the finish signals per job (the PUBLISH in the finish script), to show each job
    finishes exactly once."""

    def __init__(self, client):
        self.counts: dict[str, int] = {}
        self.statuses: dict[str, str] = {}  # each job's final status, as published
        self._lock = threading.Lock()
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(**{keys.finished("*"): self._add})
        self.thread = self.pubsub.run_in_thread(sleep_time=0.01, daemon=True)

    def _add(self, message):
        job_id = message["channel"].decode()[len(keys.finished("")):]
        with self._lock:
            self.counts[job_id] = self.counts.get(job_id, 0) + 1
            record = published_record(message["data"])  # or, for a large one, the status
            self.statuses[job_id] = record["status"] if record else message["data"].decode()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def after_success(self, jobs: list[dict], timeout_s: float = 60) -> dict[str, int]:
        """Wait until every job (as submit answered it) has succeeded, then the finish counts,
        once the last finish messages have had time to arrive."""
        for job in jobs:
            resp = wait_job(job["urls"]["get"], timeout_s=timeout_s)
            assert resp.json()["status"] == "succeeded", resp.text
        time.sleep(0.5)
        return self.snapshot()

    def finished(self) -> int:
        with self._lock:
            return len(self.counts)

    def stop(self):
        self.thread.stop()  # the thread closes the pubsub once it stops
        self.thread.join(5)


def rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants (a worker: Celery with the
    supervisor, its model processes, multiprocessing's resource tracker), in MiB."""
    total_kib, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue  # it just exited
        todo += children(p)
    return total_kib / 1024


class Stack:
    """A real Redis, the API under gunicorn, and the workers a test asks for. close() stops
    every process it started, whatever state the test left them in."""

    def __init__(self, redis_options: dict | None = None, api_workers: int = 2, **settings):
        self.settings = settings
        self.procs = []
        self._on_close = []  # e.g. client threads to stop before the processes go
        self.redis = RedisServer(**(redis_options or {}))
        try:
            self.client = redis.Redis.from_url(self.redis.url)
            self.api, self.base = start_api(self.redis.url, api_workers=api_workers, **settings)
            self.procs.append(self.api)
        except BaseException:
            self.close()
            raise

    def worker(self, wait_ready: bool = True):
        proc = start_worker(self.redis.url, models=[MODEL], wait_ready=False, **self.settings)
        self.procs.append(proc)
        if wait_ready:
            wait_until_serving(proc, self.redis.url, [MODEL])
        return proc

    def webhook_worker(self):
        proc = start_webhook_worker(self.redis.url, **self.settings)
        self.procs.append(proc)
        return proc

    def api_workers(self) -> list[int]:
        """The gunicorn worker processes (children of the master)."""
        return children(self.api.pid)

    def on_close(self, fn):
        self._on_close.append(fn)

    def close(self):
        for fn in self._on_close:
            fn()
        for proc in reversed(self.procs):
            try:
                if proc.alive():
                    os.killpg(proc.pid, signal.SIGCONT)  # a test may have left it stopped
                proc.stop()
            except Exception:  # keep stopping the rest
                pass
        self.redis.stop()


def wait_serving_count(stack: Stack, n: int, timeout_s: float = 30):
    """Wait until gunicorn runs `n` workers again (after one was killed)."""
    wait_for(lambda: len(stack.api_workers()) == n, timeout_s, f"{n} API workers")


class Flow:
    """Client threads submitting one-image jobs through the API: paced at `rate` per second
    (None: as fast as they go) until `total` are sent or stop() is called. Keeps every answer:
    `accepted` holds (time.time() of the 202, job), `refused` (time, status, body) for other
    answers, `failed` (time, exception) for requests that got no answer."""

    def __init__(self, base: str, total: int | None, rate: float | None, threads: int = 4,
                 seed: int = 0):
        self.base, self.total, self.rate, self.seed = base, total, rate, seed
        self.accepted, self.refused, self.failed = [], [], []
        self._lock = threading.Lock()
        self._sent = 0
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _next(self) -> int | None:
        with self._lock:
            if self._stop.is_set() or (self.total is not None and self._sent >= self.total):
                return None
            self._sent += 1
            return self._sent - 1

    def _run(self):
        while (i := self._next()) is not None:
            if self.rate:
                time.sleep(max(0.0, self._t0 + i / self.rate - time.monotonic()))
            try:
                resp = submit(self.base, [png(self.seed * 1_000_000 + i)], timeout_s=10)
            except requests.RequestException as exc:
                with self._lock:
                    self.failed.append((time.time(), exc))
                continue
            with self._lock:
                if resp.status_code == 202:
                    self.accepted.append((time.time(), resp.json()))
                else:
                    self.refused.append((time.time(), resp.status_code, resp.text))

    def hurry(self):
        """Send the rest as fast as the threads go."""
        self.rate = None

    def count(self) -> int:
        with self._lock:
            return len(self.accepted)

    def stop(self):
        self._stop.set()
        self.join()

    def join(self, timeout_s: float = 300):
        for t in self._threads:
            t.join(timeout_s)
        return self.accepted
