"""The webhook worker: `celery -A webhooks.app worker`. A light process (no TensorFlow) that
consumes the `webhooks` queue. A bootstep thread claims due deliveries from Redis and sends one
task per claim; each task makes one attempt."""
import logging
import threading
import warnings

from celery import Celery, bootsteps
from celery.platforms import SecurityWarning

from jobs import connection
from jobs.deliveries import Deliveries, delivery_ttl_s
from jobs.settings import load_settings
from webhooks.attempt import TOTAL_TIMEOUT_S, attempt

log = logging.getLogger("inferq.webhooks")
settings = load_settings()
QUEUE = "webhooks"
DRAIN_EVERY_S = 0.2
# A claimed delivery is claimed again if its attempt has not ended by then (lost task, dead
# worker). Well above one attempt's longest time.
LEASE_S = TOTAL_TIMEOUT_S * 6

if settings.log_level != "DEBUG":
    # Below DEBUG, no lines a user does nothing with: Celery's warning about running as root
    # (the image runs as UID 10001, and only JSON is accepted), its mingle lines, and its
    # "received" and "succeeded" lines around each attempt, which logs one line of its own.
    warnings.filterwarnings("ignore", category=SecurityWarning)
    for name in ("celery.worker.consumer.mingle", "celery.worker.strategy", "celery.app.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)

app = Celery("inferq-webhooks")
app.conf.update(
    **connection.celery_config(settings),
    task_default_queue=QUEUE,
    task_ignore_result=True,
    worker_pool="threads",
    worker_concurrency=8,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)

_redis = connection.client(settings, socket_timeout=10)
_deliveries = Deliveries(_redis, delivery_ttl_s(settings.result_ttl_s, settings.webhook_max_age_s))


@app.task(name="inferq.deliver_webhook", queue=QUEUE)
def deliver(webhook_id: str, token: str):
    attempt(_deliveries, settings, webhook_id, token)


class DrainStep(bootsteps.StartStopStep):
    """Sends a task for each delivery that is due. Every webhook worker runs one; the claim is
    atomic, so each due delivery is sent once."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, parent, **options):
        super().__init__(parent, **options)
        self._stop = threading.Event()
        self._thread = None

    def start(self, parent):
        logging.getLogger("inferq").setLevel(settings.log_level)
        self._thread = threading.Thread(target=self._run, name="inferq-webhook-drain",
                                        daemon=True)
        self._thread.start()

    def stop(self, parent):
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def _run(self):
        while not self._stop.is_set():
            try:
                for webhook_id, token in _deliveries.claim_due(LEASE_S):
                    deliver.apply_async((webhook_id, token), queue=QUEUE)
            except Exception as exc:  # Redis down or restarting: try again shortly
                log.warning("claiming due webhooks failed: %s", exc)
                self._stop.wait(1.0)
            self._stop.wait(DRAIN_EVERY_S)


app.steps["worker"].add(DrainStep)
