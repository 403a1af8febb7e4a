"""The Celery app. `celery -A worker.app worker` starts a worker process; a bootstep runs the
inference service inside it beside Celery (see worker/service.py).

The GPU worker uses Celery's `solo` pool: TensorFlow hangs when a model loaded in a parent is used
in a forked child, so nothing is forked and TensorFlow is imported only once the worker runs.
"""
import logging
import os
import warnings

from celery import Celery, bootsteps
from celery.platforms import SecurityWarning
from click import Option

from jobs import connection
from jobs.settings import load_settings
from worker.predictor import pin_gpu

settings = load_settings()


def _quiet_start(level: str):
    """Below DEBUG, leave out the start-up lines a user does nothing with: TensorFlow's C++
    INFO and WARNING lines (CPU features, oneDNN; the model processes inherit the variable),
    Celery's warning about running as root (the images run as UID 10001, and only JSON is
    accepted) and its mingle lines (this worker asks no neighbour for anything)."""
    if level == "DEBUG":
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", category=SecurityWarning)
    logging.getLogger("celery.worker.consumer.mingle").setLevel(logging.WARNING)


_quiet_start(settings.log_level)

app = Celery("inferq")
app.conf.update(
    **connection.celery_config(settings),
    worker_pool="solo",
    worker_concurrency=1,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=True,
)
app.user_options["worker"].add(Option(
    ("--gpu",), default=None, help="Serve on this GPU only (sets CUDA_VISIBLE_DEVICES before "
    "TensorFlow loads). Default: INFERQ_GPU, else every visible device."))
app.user_options["worker"].add(Option(
    ("--models",), default=None, help="Comma-separated model names to serve. Default: "
    "INFERQ_MODELS, else every model in INFERQ_MODEL_REPOSITORY."))


class InferenceStep(bootsteps.StartStopStep):
    """Starts the inference service with the worker; stops it on a warm shutdown (SIGTERM or
    Ctrl-C): the batch in hand is finished, nothing new is read."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, parent, gpu=None, models=None, **options):
        super().__init__(parent, **options)
        self.gpu = gpu if gpu is not None else settings.gpu
        self.models = [m.strip() for m in (models or "").split(",") if m.strip()]
        pin_gpu(self.gpu)
        self.service = None

    def start(self, parent):
        from worker.service import InferenceService

        logging.getLogger("inferq").setLevel(settings.log_level)
        self.service = InferenceService(settings, models=self.models, gpu=self.gpu)
        self.service.start()

    def stop(self, parent):
        if self.service is not None:
            self.service.stop()
            self.service = None


app.steps["worker"].add(InferenceStep)
