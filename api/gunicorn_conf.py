"""gunicorn settings for the API, from the same INFERQ_* variables as everything else.
Run: gunicorn -c api/gunicorn_conf.py "api.app:create_app()" """
from jobs.settings import load_settings

_settings = load_settings()

bind = f"0.0.0.0:{_settings.api_port}"
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
