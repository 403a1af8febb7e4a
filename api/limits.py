"""Rate limits per tenant (Flask-Limiter, counters in the same Redis). Two budgets: creating
jobs (submits, batches and synchronous inference), and everything else. Health probes are
never limited. Without API keys, callers are told apart by address."""
from flask import request
from flask_limiter import ApplicationLimit, Limiter
from limits import parse_many

from api import auth
from jobs import connection, keys
from jobs.settings import SettingsError

SUBMITS = {"jobs.submit", "jobs.submit_to_version", "batches.create", "tfserving.predict",
           "kserve.infer"}


def _who() -> str:
    tenant = auth.tenant()
    return f"tenant:{tenant}" if tenant else f"addr:{request.remote_addr}"


def _unlimited() -> bool:
    return request.endpoint in auth.HEALTH


def install(app, settings) -> Limiter | None:
    """Add the configured limits to `app`; None when no limit is set."""
    for name in ("rate_limit_submit", "rate_limit_read"):
        value = getattr(settings, name)
        try:
            parse_many(value) if value else None
        except ValueError:
            raise SettingsError(f"INFERQ_{name.upper()} must be limits such as "
                                f"'50/second;1000/minute', got {value!r}") from None
    limits = []
    if settings.rate_limit_submit:
        limits.append(ApplicationLimit(
            settings.rate_limit_submit, scope="submit",
            exempt_when=lambda: request.endpoint not in SUBMITS))
    if settings.rate_limit_read:
        limits.append(ApplicationLimit(
            settings.rate_limit_read, scope="read",
            exempt_when=lambda: request.endpoint in SUBMITS or _unlimited()))
    if not limits:
        return None
    uri, options = connection.limiter_storage(settings, socket_connect_timeout=1,
                                              socket_timeout=2)
    return Limiter(
        _who, app=app, application_limits=limits, storage_uri=uri,
        storage_options={"key_prefix": keys.RATE_LIMITS, **options},
        strategy="moving-window", headers_enabled=True,
        # A Redis outage must not turn into a 500 here: the request goes on and the job
        # store answers 503 for it.
        swallow_errors=True)
