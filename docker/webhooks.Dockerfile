# inferq webhook worker: Celery + signing, no TensorFlow. Build from the repository root:
#   docker build -f docker/webhooks.Dockerfile -t inferq-webhooks .
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONPATH=/app

WORKDIR /app

# Dependencies only (installing the project adds no modules); versions bounded by pyproject.toml.
COPY pyproject.toml README.md ./
# hadolint ignore=DL3013
RUN pip install --no-cache-dir '.[webhooks]' \
    && rm -rf build ./*.egg-info \
    && python -c "import celery, redis, standardwebhooks" \
    && ! python -c "import tensorflow" 2>/dev/null

# The code the webhook worker imports: webhooks/ and the shared core.
COPY webhooks ./webhooks
COPY jobs ./jobs

RUN groupadd --gid 10001 inferq \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin inferq
USER 10001:10001

# Threads: deliveries wait on the network, not the CPU.
CMD ["celery", "-A", "webhooks.app", "worker", "--loglevel", "INFO"]
