"""Everything one worker process runs beside Celery: load and warm its models, one inference
loop per model, and a heartbeat that tells the API what this worker serves."""
import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import redis as redis_lib

from jobs import repository, streams
from worker.loop import ModelLoop

log = logging.getLogger("inferq.worker")


class InferenceService:
    def __init__(self, settings, models: list[str] | None = None, gpu: str | None = None):
        self.settings = settings
        self.wanted = models or settings.model_names
        self.gpu = gpu if gpu not in (None, "") else settings.gpu
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.redis = redis_lib.Redis.from_url(settings.redis_url, socket_timeout=10,
                                              health_check_interval=30)
        self.loops: list[ModelLoop] = []
        self.failed: dict[str, str] = {}
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="inferq-decode")
        self._thread = threading.Thread(target=self._run, name="inferq-service", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        """SIGTERM path: stop reading, finish the batches in hand, leave the worker list."""
        self._stop.set()
        for loop in self.loops:
            loop.stop()
        self._thread.join(10)
        self._pool.shutdown(wait=False)
        try:
            streams.remove_worker(self.redis, self.name)
        except redis_lib.RedisError:
            pass
        log.info("worker %s stopped", self.name)

    def _run(self):
        from worker.predictor import Predictor  # imports TensorFlow, in this process only

        names = self.wanted or repository.model_names(self.settings.model_repository)
        if not names:
            log.error("no models to serve in %s", self.settings.model_repository)
        for name in names:
            if self._stop.is_set():
                return
            try:
                spec = repository.load_spec(self.settings.model_repository, name,
                                            self.settings.max_batch_size)
                predictor = Predictor(spec)
                predictor.warm_up()
            except Exception as exc:  # one broken model must not stop the others
                log.exception("model %s cannot be served", name)
                self.failed[name] = f"{type(exc).__name__}: {exc}"
                continue
            loop = ModelLoop(predictor, self.redis, self.name, self.settings, self._pool)
            loop.start()
            self.loops.append(loop)
            log.info("worker %s serves model %s v%d", self.name, spec.name, spec.version)
        self.ready.set()
        while not self._stop.is_set():
            try:
                streams.heartbeat(self.redis, self.name, self.info(), self.settings.heartbeat_ttl_s)
            except redis_lib.RedisError as exc:
                log.warning("heartbeat failed: %s", exc)
            self._stop.wait(self.settings.heartbeat_s)

    def info(self) -> dict:
        return {"name": self.name, "host": socket.gethostname(), "pid": os.getpid(),
                "gpu": self.gpu or None, "at": time.time(),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "models": [{"name": l.spec.name, "version": l.spec.version,
                            "device": l.predictor.device, "max_batch_size": l.spec.max_batch_size,
                            "labels": l.spec.labels, "input_size": list(l.spec.size)}
                           for l in self.loops],
                "unavailable": self.failed}
