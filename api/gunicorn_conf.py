"""gunicorn settings for the API, from the same INFERQ_* variables as everything else.
Run: gunicorn -c api/gunicorn_conf.py "api.app:create_app()" """
import ctypes
import json
import logging

from gunicorn import util

from api.logs import setup_logging
from api.preflight import check_or_exit

# Checked here, in the master, before any worker is forked: a bad setting or key list is one
# line and exit status 2, not a traceback per worker.
_settings = check_or_exit()

_host = f"[{_settings.api_host}]" if ":" in _settings.api_host else _settings.api_host
bind = f"{_host}:{_settings.api_port}"
workers = _settings.api_workers
# Threads, because a long-poll holds its thread while it waits for the job to finish.
worker_class = "gthread"
threads = _settings.api_threads
timeout = int(_settings.max_long_poll_s) + 30
graceful_timeout = 10
keepalive = 5
# One line per request when asked for (INFERQ_API_ACCESS_LOG=1); the app itself logs one line
# per job event.
accesslog = "-" if _settings.api_access_log else None
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
# gunicorn's own start and stop lines (booting each worker, signals) only at DEBUG; its
# warnings and errors (a worker timing out or dying, a port in use) always.
loglevel = "debug" if _settings.log_level == "DEBUG" else "warning"
# No control socket: gunicorn (>= 25) otherwise listens on one per user ($XDG_RUNTIME_DIR or
# ~/.gunicorn/gunicorn.ctl) through which any process of that user can stop or resize the API.
control_socket_disable = True


def _json_error(sock, status_int: int, reason: str, mesg: str):
    """gunicorn's own answers (a request line or headers over its limits, a request it cannot
    parse) in the API's JSON error form, not as its HTML page. Their code is the reason
    phrase, as the app names werkzeug's errors: 414 `uri_too_long`."""
    body = json.dumps({"error": {"code": reason.lower().replace(" ", "_"),
                                 "message": mesg or reason}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin1") + body)


util.write_error = _json_error  # here, in the master: every worker it forks has it


def _tune_malloc(arenas: int = 2, mmap_threshold: int = 128 * 1024):
    """Keep each API process small under image uploads. glibc gives each thread that contends
    for malloc an arena of its own (up to 8 per core) and keeps their freed memory: 2 arenas.
    And it raises its mmap threshold as large blocks are freed, after which request bodies
    live on the heap and their memory stays with the process: a fixed threshold hands every
    large buffer back when it is freed. Set here, in the master, so every forked worker has it."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, arenas)  # M_ARENA_MAX
        libc.mallopt(-3, mmap_threshold)  # M_MMAP_THRESHOLD (also stops its dynamic rise)
    except (OSError, AttributeError):
        pass  # not glibc


_tune_malloc()


_log = logging.getLogger("inferq.api")


def when_ready(server):
    """One line once the API listens (gunicorn's own lines are at its debug level)."""
    setup_logging(_settings.log_level)
    _log.info("API listening on http://%s:%d (%d processes, %d threads each)", _host,
              _settings.api_port, workers, threads)
