"""The worker's supervisor, running beside Celery in the worker process. It never imports
TensorFlow. It watches the model repository and serves each version its policy asks for in a
child process of its own (worker/child.py):
- a new version, or a changed config, is loaded and warmed in a new child;
- only once that child is ready does the model's default version switch;
- the old version's child then serves what its stream still holds, and exits.
A child that fails to load leaves the previous one serving. A heartbeat tells the API what
this worker serves, and in which state."""
import logging
import multiprocessing
import os
import socket
import threading
import time
import uuid

import redis as redis_lib

from jobs import connection, registry, repository, routing
from worker import child

log = logging.getLogger("inferq.worker")
LOADING, AVAILABLE, UNAVAILABLE, UNLOADING = "loading", "available", "unavailable", "unloading"


class Child:
    """The supervisor's handle on one model version's process."""

    def __init__(self, ctx, spec, settings, worker_name: str):
        self.spec, self.state, self.reason, self.device = spec, LOADING, None, None
        self.output_shape = None
        self.conn, child_conn = ctx.Pipe()
        consumer = f"{worker_name}/{spec.name}:v{spec.version}:{spec.fingerprint[:6]}"
        self.process = ctx.Process(target=child.main, daemon=True,
                                   name=f"inferq-{spec.name}-v{spec.version}",
                                   args=(spec, settings, consumer, child_conn, os.getpid()))
        self.process.start()
        child_conn.close()

    @property
    def key(self):
        return self.spec.name, self.spec.version

    def poll(self):
        try:
            while self.conn.poll():
                message, data = self.conn.recv()
                if message == "ready":
                    self.state, self.device = AVAILABLE, data["device"]
                    self.output_shape = data["output_shape"]
                elif message == "error":
                    self.state, self.reason = UNAVAILABLE, data
        except (EOFError, OSError):
            pass
        if not self.process.is_alive() and self.state in (LOADING, AVAILABLE):
            self.state = UNAVAILABLE
            self.reason = self.reason or f"model process exited (code {self.process.exitcode})"

    def send(self, command: str):
        self.state = UNLOADING
        try:
            self.conn.send(command)
        except (OSError, ValueError):
            pass

    def finish(self, timeout_s: float):
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


class InferenceService:
    def __init__(self, settings, models: list[str] | None = None, gpu: str | None = None):
        self.settings = settings
        self.wanted = models or settings.model_names
        self.gpu = gpu if gpu not in (None, "") else settings.gpu
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.redis = connection.client(settings, socket_timeout=10, health_check_interval=30)
        self.ctx = multiprocessing.get_context("spawn")  # TensorFlow must not be forked
        self.active: dict[tuple, Child] = {}  # (model, version) -> the child serving it
        self.pending: dict[tuple, Child] = {}  # a replacement loading for a changed config
        self.retiring: list[Child] = []
        self.errors: dict[tuple, str] = {}  # versions the repository cannot serve, and why
        self._failed_fingerprints: dict[tuple, str] = {}
        self.names: list[str] = []
        self.desired: dict[tuple, repository.VersionState] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inferq-supervisor", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        """SIGTERM path: every child finishes the batches it holds and exits."""
        self._stop.set()
        self._thread.join()
        try:
            registry.remove_worker(self.redis, self.name)
        except redis_lib.RedisError:
            pass
        log.info("worker %s stopped", self.name)

    def _stop_children(self):
        children = list(self.active.values()) + list(self.pending.values()) + self.retiring
        for c in children:
            c.send("stop")
        for c in children:
            c.finish(timeout_s=60)

    def _run(self):
        try:
            self._supervise()
        finally:
            # In this thread, which started the children: they die with it (PR_SET_PDEATHSIG
            # follows the thread, not the process), so it waits until they have finished.
            self._stop_children()

    def _supervise(self):
        last_scan = float("-inf")
        last_beat = float("-inf")
        while not self._stop.is_set():
            try:
                if time.monotonic() - last_scan >= self.settings.repository_poll_s:
                    last_scan = time.monotonic()
                    self.scan()
                self.tend()
                if time.monotonic() - last_beat >= self.settings.heartbeat_s:
                    last_beat = time.monotonic()
                    registry.heartbeat(self.redis, self.name, self.info(),
                                      self.settings.heartbeat_ttl_s)
            except Exception:  # Redis down, a repository mid-write: log, carry on
                log.exception("worker supervisor")
            self._stop.wait(0.2)

    def scan(self):
        """Start a child for every version the repository serves that has none yet."""
        repo, mbs = self.settings.model_repository, self.settings.max_batch_size
        self.names = self.wanted or repository.model_names(repo)
        self.desired = {}
        self.errors = {}
        for name in self.names:
            for vs in repository.served_versions(repo, name, mbs):
                self.desired[(vs.name, vs.version)] = vs
                if vs.error:
                    self.errors[(vs.name, vs.version)] = vs.error
        for key, vs in self.desired.items():
            if vs.spec is None or self._failed_fingerprints.get(key) == vs.spec.fingerprint:
                continue
            current = self.active.get(key)
            if current is None:
                log.info("loading model %s v%d", *key)
                self.active[key] = Child(self.ctx, vs.spec, self.settings, self.name)
            elif current.state == UNAVAILABLE and current.device is not None:
                # It was serving, then died (killed, out of memory): start it again.
                log.warning("model %s v%d: %s; loading it again", *key, current.reason)
                current.finish(1)
                self.active[key] = Child(self.ctx, vs.spec, self.settings, self.name)
            elif current.spec.fingerprint != vs.spec.fingerprint and key not in self.pending:
                log.info("model %s v%d changed; loading it again beside the running one", *key)
                self.pending[key] = Child(self.ctx, vs.spec, self.settings, self.name)

    def tend(self):
        """Follow the children: swap in ready replacements, route to the best ready version,
        retire what is no longer served."""
        for c in list(self.active.values()) + list(self.pending.values()) + self.retiring:
            c.poll()
        for key, new in list(self.pending.items()):
            if new.state == AVAILABLE:
                self._retire(self.active.pop(key), "stop")  # same stream: nothing to drain
                self.active[key] = self.pending.pop(key)
            elif new.state == UNAVAILABLE:
                self._failed_fingerprints[key] = new.spec.fingerprint
                self.errors[key] = f"reload failed, previous load still serving: {new.reason}"
                self.pending.pop(key).finish(1)
        for key, c in list(self.active.items()):
            if c.state == UNAVAILABLE and key in self.desired and c.device is None:
                self._failed_fingerprints[key] = c.spec.fingerprint  # its load failed
        for name in {k[0] for k in self.active} | set(self.names):
            self._route(name)
        for c in list(self.retiring):
            if not c.process.is_alive():
                c.finish(1)
                self.retiring.remove(c)

    def _route(self, name: str):
        served = [v for (n, v), vs in self.desired.items() if n == name and vs.spec]
        ready = [v for v in served
                 if (name, v) in self.active and self.active[(name, v)].state == AVAILABLE]
        if ready and routing.default_version(self.redis, name) != max(ready):
            routing.set_default(self.redis, name, max(ready))
            log.info("model %s: jobs now go to v%d", name, max(ready))
        gone = name not in self.names
        for (n, v), c in list(self.active.items()):
            if n != name or (n, v) in self.desired:
                continue
            if c.state == UNAVAILABLE:  # failed, and no longer asked for
                self.active.pop((n, v)).finish(1)
                self._failed_fingerprints.pop((n, v), None)
            elif ready or gone:
                # Only once another version is ready to take the jobs (or the model is gone):
                # a version that fails to load leaves the previous one serving.
                self._retire(self.active.pop((n, v)), "drain")
        if gone and not any(n == name for n in self.active):
            routing.forget_model(self.redis, name)

    def _retire(self, c: Child, command: str):
        if c.state == UNAVAILABLE:
            c.finish(1)
            return
        log.info("unloading model %s v%d (%s)", c.spec.name, c.spec.version, command)
        c.send(command)
        self.retiring.append(c)

    def info(self) -> dict:
        records = {}
        for c in list(self.active.values()) + self.retiring:
            key = (c.spec.name, c.spec.version)
            if key in records and c.state == UNLOADING:
                continue  # the active one speaks for this version
            records[key] = {"name": c.spec.name, "version": c.spec.version, "state": c.state,
                            "reason": c.reason, "device": c.device, "kind": c.spec.kind,
                            "max_batch_size": c.spec.max_batch_size,
                            "labels": list(c.spec.labels),
                            "input_shape": list(c.spec.input_shape), "dtype": c.spec.dtype,
                            "names": list(c.spec.names), "input_name": c.spec.input_name,
                            "platform": c.spec.platform, "output_shape": c.output_shape}
        for key, reason in self.errors.items():
            if key in records:
                records[key]["reason"] = reason  # e.g. a reload failed; the old load serves
            else:
                records[key] = {"name": key[0], "version": key[1], "state": UNAVAILABLE,
                                "reason": reason}
        return {"name": self.name, "host": socket.gethostname(), "pid": os.getpid(),
                "gpu": self.gpu or None, "at": time.time(),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "models": list(records.values())}
