# inferq HTTP API: Flask under gunicorn. No TensorFlow, no Celery: only the base dependencies
# plus the [api] extra. Build from the repository root:
#   docker build -f docker/api.Dockerfile -t inferq-api .
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# pyproject.toml lists these packages for setuptools, so all of them must be present for
# `pip install .`; the API imports only api/ and jobs/ at run time.
COPY pyproject.toml README.md ./
COPY api ./api
COPY worker ./worker
COPY jobs ./jobs
COPY batching ./batching
COPY demo ./demo
COPY webhooks ./webhooks

# The last two checks fail the build if TensorFlow (or the worker's Celery) got in.
# Versions are bounded by pyproject.toml (no lock file).
# hadolint ignore=DL3013
RUN pip install --no-cache-dir '.[api]' \
    && rm -rf build ./*.egg-info \
    && python -c "import flask, gunicorn, redis, PIL, numpy" \
    && ! python -c "import tensorflow" 2>/dev/null \
    && ! python -c "import celery" 2>/dev/null

RUN groupadd --gid 10001 inferq \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin inferq
# Numeric, so that runAsNonRoot-style checks can verify it.
USER 10001:10001

EXPOSE 8000

# api/gunicorn_conf.py is read from the working directory (/app), hence the source stays here.
CMD ["gunicorn", "-c", "api/gunicorn_conf.py", "api.app:create_app()"]
