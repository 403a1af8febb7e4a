#!/usr/bin/env bash
# Start the whole stack locally: a private Redis (unless INFERQ_REDIS_URL is set), the API under
# gunicorn, one worker serving the demo model, and the webhook worker. Ctrl-C stops everything this script started.
# Each child runs in its own session (setsid), so Ctrl-C reaches only this script, which stops
# them in order: worker and API first (the worker finishes its batch), Redis last.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
RUN_DIR=${INFERQ_RUN_DIR:-.run}
PORT=${INFERQ_API_PORT:-8000}
mkdir -p "$RUN_DIR/redis" && RUN_DIR=$(cd "$RUN_DIR" && pwd)

api_pid="" worker_pid="" hooks_pid="" redis_pid=""
stop() {
  trap - INT TERM EXIT
  echo; echo "run.sh: stopping"
  # The worker finishes its batch (it needs Redis for that), so Redis stops last.
  for pid in $worker_pid $hooks_pid $api_pid; do kill -TERM "$pid" 2>/dev/null; done
  for pid in $worker_pid $hooks_pid $api_pid; do wait "$pid" 2>/dev/null; done
  [ -n "$redis_pid" ] && kill -TERM "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  exit "${1:-0}"
}
trap 'stop 0' INT TERM
trap 'stop $?' EXIT

if [ -z "${INFERQ_REDIS_URL:-}" ]; then
  redis_port=${INFERQ_REDIS_PORT:-$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
  # AOF fsynced every second; noeviction so a full Redis refuses new jobs instead of dropping
  # queued ones; hz 100 so short blocking reads return on time.
  setsid redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$RUN_DIR/redis" \
    --appendonly yes --appendfsync everysec --save "" --hz 100 \
    --maxmemory "${INFERQ_REDIS_MAXMEMORY:-0}" --maxmemory-policy noeviction \
    --logfile "$RUN_DIR/redis.log" &
  redis_pid=$!
  export INFERQ_REDIS_URL="redis://127.0.0.1:$redis_port/0"
  for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$redis_port" ping >/dev/null || { echo "run.sh: redis did not start; see $RUN_DIR/redis.log" >&2; exit 1; }
  echo "run.sh: redis on $INFERQ_REDIS_URL (data in $RUN_DIR/redis)"
fi
export INFERQ_API_PORT=$PORT
# Webhooks are signed; without a secret of yours, a development one is made once and kept.
if [ -z "${INFERQ_WEBHOOK_SECRET:-}" ]; then
  [ -s "$RUN_DIR/webhook_secret" ] || "$VENV/bin/python" -c 'import base64, os; print("whsec_" + base64.b64encode(os.urandom(24)).decode())' > "$RUN_DIR/webhook_secret"
  INFERQ_WEBHOOK_SECRET=$(cat "$RUN_DIR/webhook_secret")
  export INFERQ_WEBHOOK_SECRET
fi
# API keys: unless you set your own, a development key is made once and kept. It is an admin
# key (tenant "dev"), so it can also upload and remove models.
if [ -z "${INFERQ_API_KEYS:-}${INFERQ_ADMIN_KEYS:-}" ]; then
  [ -s "$RUN_DIR/dev_key" ] || "$VENV/bin/python" -c 'import secrets; print("iq_dev_" + secrets.token_urlsafe(24))' > "$RUN_DIR/dev_key"
  INFERQ_ADMIN_KEYS="$(cat "$RUN_DIR/dev_key")=dev"
  export INFERQ_ADMIN_KEYS
  key_note="Development API key (tenant dev, admin; kept in $RUN_DIR/dev_key):
  $(cat "$RUN_DIR/dev_key")"
  auth="-H 'Authorization: Bearer $(cat "$RUN_DIR/dev_key")' "
else
  key_note="API keys: yours (INFERQ_API_KEYS / INFERQ_ADMIN_KEYS)."
  auth="-H \"Authorization: Bearer \$KEY\" "
fi
# Models may name custom objects in modules of this checkout (config "custom_objects").
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"

setsid "$VENV/bin/gunicorn" -c api/gunicorn_conf.py "api.app:create_app()" &
api_pid=$!
setsid "$VENV/bin/celery" -A worker.app worker --loglevel INFO --hostname "inferq-worker@%h" &
worker_pid=$!
setsid "$VENV/bin/celery" -A webhooks.app worker --loglevel INFO --hostname "inferq-webhooks@%h" &
hooks_pid=$!

echo "run.sh: waiting for the worker to load and warm the model ..."
ready=""
for _ in $(seq 180); do
  if "$VENV/bin/python" - "$PORT" <<'PY' 2>/dev/null; then ready=1; break; fi
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=1)
PY
  for pid in $api_pid $worker_pid $hooks_pid; do
    kill -0 "$pid" 2>/dev/null || { echo "run.sh: a process exited during start-up" >&2; exit 1; }
  done
  sleep 1
done
if [ -z "$ready" ]; then
  echo "run.sh: no worker became ready in 180 s; its log above says why. /readyz says:" >&2
  "$VENV/bin/python" -c "import urllib.request, urllib.error
try: urllib.request.urlopen('http://127.0.0.1:$PORT/readyz', timeout=2)
except urllib.error.HTTPError as e: print(e.read().decode())" >&2
  exit 1
fi
cat <<MSG

inferq is ready on http://localhost:$PORT (Ctrl-C stops it). Try:
  curl ${auth}-F image=@examples/circle.png localhost:$PORT/v1/models/shapes/jobs
  curl ${auth}'localhost:$PORT/v1/jobs/<id>?wait=10'

$key_note

Webhooks are signed with INFERQ_WEBHOOK_SECRET=$INFERQ_WEBHOOK_SECRET

MSG
# Stay up until Ctrl-C, or until one of the processes exits.
wait -n $api_pid $worker_pid $hooks_pid
echo "run.sh: a process exited" >&2
exit 1
