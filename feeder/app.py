"""The feeder worker: `celery -A feeder.app worker`. A light process (no TensorFlow): a bootstep
thread moves bulk batches from their files into the models' bulk lanes and their results back
into files (feeder/feeder.py). It runs no tasks; Celery gives it the same life cycle, logs and
monitoring (Flower) as the other workers. Several may run: a lease gives each batch to one."""
import logging
import threading
import warnings

import redis as redis_lib
from celery import Celery, bootsteps
from celery.platforms import SecurityWarning

from feeder.feeder import Feeder
from jobs import connection
from jobs.settings import load_settings

log = logging.getLogger("inferq.feeder")
settings = load_settings()
IDLE_WAIT_S = 0.02  # between steps that moved nothing

if settings.log_level != "DEBUG":
    # As the webhook worker: no warning about running as root (the images run as UID 10001,
    # and only JSON is accepted), no mingle lines.
    warnings.filterwarnings("ignore", category=SecurityWarning)
    logging.getLogger("celery.worker.consumer.mingle").setLevel(logging.WARNING)

app = Celery("inferq-feeder")
app.conf.update(
    **connection.celery_config(settings),
    task_default_queue="feeder",
    task_ignore_result=True,
    worker_pool="solo",
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)


class FeederStep(bootsteps.StartStopStep):
    requires = {"celery.worker.components:Pool"}

    def __init__(self, parent, **options):
        super().__init__(parent, **options)
        self._stop = threading.Event()
        self._thread = None

    def start(self, parent):
        logging.getLogger("inferq").setLevel(settings.log_level)
        redis = connection.client(settings, socket_timeout=10)
        feeder = Feeder(redis, settings)
        self._thread = threading.Thread(target=self._run, args=(feeder,),
                                        name="inferq-feeder", daemon=True)
        self._thread.start()

    def stop(self, parent):
        self._stop.set()
        if self._thread:
            self._thread.join(15)

    def _run(self, feeder: Feeder):
        failing = False
        while not self._stop.is_set():
            try:
                moved = feeder.step()
                failing = False
            except redis_lib.RedisError as exc:  # down or restarting: try again shortly
                if not failing:
                    log.warning("feeder: redis unavailable (%s); retrying", exc)
                failing, moved = True, False
                self._stop.wait(1.0)
            except Exception:
                log.exception("feeder step failed; retrying in 1 s")
                moved = False
                self._stop.wait(1.0)
            if not moved:
                self._stop.wait(IDLE_WAIT_S)


app.steps["worker"].add(FeederStep)
