# inferq batch feeder: Celery + Pillow, no TensorFlow. Build from the repository root:
#   docker build -f docker/feeder.Dockerfile -t inferq-feeder .
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
RUN pip install --no-cache-dir '.[feeder]' \
    && rm -rf build ./*.egg-info \
    && python -c "import celery, redis, PIL, numpy" \
    && ! python -c "import tensorflow" 2>/dev/null

# The code the feeder imports: feeder/ and the shared core.
COPY feeder ./feeder
COPY jobs ./jobs

RUN groupadd --gid 10001 inferq \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin inferq \
    && mkdir -p /batches && chown 10001:10001 /batches
USER 10001:10001

CMD ["celery", "-A", "feeder.app", "worker", "--loglevel", "INFO"]
