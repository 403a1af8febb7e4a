# inferq inference worker: Celery (solo pool) + TensorFlow. Build from the repository root:
#   docker build -f docker/worker.Dockerfile -t inferq-worker .                                # GPU
#   docker build -f docker/worker.Dockerfile --build-arg INFERQ_TF_EXTRA=cpu -t inferq-worker-cpu .
# GPU: tensorflow[and-cuda] brings CUDA/cuDNN as pip wheels; the host needs only the NVIDIA
# driver and the NVIDIA Container Toolkit (GPUs are handed in by docker-compose.yml).
FROM python:3.11-slim

# Which TensorFlow extra of pyproject.toml to install: gpu (tensorflow[and-cuda]) or cpu.
ARG INFERQ_TF_EXTRA=gpu

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PYTHONPATH=/app

WORKDIR /app

# Dependencies from pyproject.toml alone (installing the project adds no modules), so a code
# change does not reinstall TensorFlow and the CUDA wheels (several GB).
COPY pyproject.toml README.md ./
# Versions are bounded by pyproject.toml (no lock file).
# hadolint ignore=DL3013
RUN set -eux; \
    case "$INFERQ_TF_EXTRA" in cpu|gpu) ;; \
      *) echo "INFERQ_TF_EXTRA must be cpu or gpu, not '$INFERQ_TF_EXTRA'" >&2; exit 1 ;; esac; \
    pip install --no-cache-dir ".[worker,${INFERQ_TF_EXTRA}]"; \
    rm -rf build ./*.egg-info; \
    python -c "import celery, redis, PIL, numpy, cv2, simplejpeg, tensorflow as tf; print('tensorflow', tf.__version__)"

# The code the worker imports: worker/, the batching core and the shared core.
COPY worker ./worker
COPY batching ./batching
COPY jobs ./jobs

RUN groupadd --gid 10001 inferq \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin inferq
# Numeric, so that runAsNonRoot-style checks can verify it.
USER 10001:10001

# solo pool: the model is loaded after any fork, in the process that uses it.
CMD ["celery", "-A", "worker.app", "worker", "--pool", "solo", "--loglevel", "INFO"]
