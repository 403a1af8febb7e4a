#!/usr/bin/env bash
# Install what inferq needs when it is missing: Debian's redis-server (the tests and `make run`
# start their own), Debian's chromium and chromium-driver (the console's browser tests), a
# virtualenv in .venv, and the Python packages. Safe to run again: it does
# nothing when all is in place.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "install.sh: need root or sudo to install $*" >&2; exit 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# The same binary runs Redis Sentinel (`redis-server <conf> --sentinel`, the Sentinel tests):
# no redis-sentinel package is needed.
if ! command -v redis-server >/dev/null; then
  echo "install.sh: installing redis-server"
  apt_install redis-server
fi

# The console's browser tests drive this headless Chromium; Selenium never downloads one.
if ! command -v chromium >/dev/null || [ ! -x /usr/bin/chromedriver ]; then
  echo "install.sh: installing chromium and chromium-driver"
  apt_install chromium chromium-driver
fi

if [ ! -x "$VENV/bin/python" ]; then
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    echo "install.sh: installing python3-venv"
    apt_install python3-venv
  fi
  python3 -m venv "$VENV"
fi

# pip's output (build banners, notices) goes to a log, shown when pip fails; all of it on the
# terminal with INFERQ_LOG_LEVEL=debug.
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
log_dir=${INFERQ_RUN_DIR:-.run}
pip() {
  level=${INFERQ_LOG_LEVEL:-info}
  if [ "${level,,}" = debug ]; then
    "$VENV/bin/python" -m pip "$@"
  elif ! "$VENV/bin/python" -m pip "$@" >>"$log_dir/install.log" 2>&1; then
    echo "install.sh: 'pip $*' failed; the last lines of $log_dir/install.log:" >&2
    tail -n 30 "$log_dir/install.log" | sed 's/^/  /' >&2
    exit 1
  fi
}

# The CUDA build of TensorFlow where an NVIDIA driver is present, the CPU build elsewhere.
extras="api,worker,webhooks,feeder,monitoring,dev,cpu"
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 && extras="api,worker,webhooks,feeder,monitoring,dev,gpu"
stamp="$VENV/.inferq-installed"
want="$(sha256sum pyproject.toml | cut -c1-16) $extras"
# The client and its `inferq` command (client/, a distribution of its own) are installed again
# whenever one of its files changes.
client_stamp="$VENV/.inferq-client-installed"
client_want="$(find client -path client/build -prune -o -type f \( -name '*.py' -o -name pyproject.toml \) \
  -print | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)"
installed=""
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  mkdir -p "$log_dir" && : > "$log_dir/install.log"
  echo "install.sh: installing Python packages ($extras) into $VENV (minutes the first time; log: $log_dir/install.log)"
  pip install -q --upgrade pip
  pip install -q ".[$extras]"
  echo "$want" > "$stamp"
  installed=1
fi
if [ "$(cat "$client_stamp" 2>/dev/null)" != "$client_want" ]; then
  mkdir -p "$log_dir"
  echo "install.sh: installing the client (the inferq command) into $VENV"
  pip install -q ./client
  echo "$client_want" > "$client_stamp"
  installed=1
fi
if [ -n "$installed" ]; then
  echo "install.sh: done"
fi
