# Flower, the monitor of inferq's Celery workers: Flower and the Redis client, nothing of
# inferq's own code. Build from the repository root:
#   docker build -f docker/flower.Dockerfile -t inferq-flower .
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# Only the `monitoring` extra's packages, versions bounded by pyproject.toml: installing the
# project would add its base packages (NumPy, Pillow), which Flower does not use.
COPY pyproject.toml ./
# hadolint ignore=DL3013
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['monitoring']))" > monitoring.txt \
    && pip install --no-cache-dir -r monitoring.txt \
    && rm monitoring.txt \
    && python -c "import flower, celery, redis" \
    && ! python -c "import numpy" 2>/dev/null

COPY docker/flower.sh ./flower.sh

RUN groupadd --gid 10001 inferq \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin inferq
USER 10001:10001

EXPOSE 5555
# Refuses to start without FLOWER_BASIC_AUTH=user:password (docker/flower.sh).
CMD ["sh", "/app/flower.sh"]
