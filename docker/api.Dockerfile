# inferq HTTP API: Flask under gunicorn. No TensorFlow, no Celery: only the base dependencies
# plus the [api] extra. Build from the repository root:
#   docker build -f docker/api.Dockerfile -t inferq-api .
FROM python:3.11-slim

# INFERQ_API_HOST: every interface of the container (the published port is what exposes it).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONPATH=/app \
    INFERQ_API_HOST=0.0.0.0

WORKDIR /app

# Installing the project brings its dependencies and no modules (the code runs from /app), so
# this layer needs only pyproject.toml and stays cached across code changes. The last two
# checks fail the build if TensorFlow (or the worker's Celery) got in.
# Versions are bounded by pyproject.toml (no lock file).
COPY pyproject.toml README.md ./
# hadolint ignore=DL3013
RUN pip install --no-cache-dir '.[api]' \
    && rm -rf build ./*.egg-info \
    && python -c "import flask, gunicorn, redis, PIL, numpy" \
    && ! python -c "import tensorflow" 2>/dev/null \
    && ! python -c "import celery" 2>/dev/null

# The code the API imports: api/ and the shared core. Then what the web console serves
# (api/console.py): its page and files, and the example images it offers.
COPY api ./api
COPY jobs ./jobs
COPY console ./console
COPY examples/*.png examples/*.jpg ./examples/

RUN groupadd --gid 10001 inferq \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin inferq \
    && mkdir -p /batches && chown 10001:10001 /batches
# Numeric, so that runAsNonRoot-style checks can verify it.
USER 10001:10001

EXPOSE 8000

# api/gunicorn_conf.py is read from the working directory (/app).
CMD ["gunicorn", "-c", "api/gunicorn_conf.py", "api.app:create_app()"]
