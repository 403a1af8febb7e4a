"""One delivery attempt: build (once) and sign the body, check the URL again, POST it to the
checked address, and decide what comes next."""
import email.utils
import json
import logging
import random
import time

from jobs import batch
from jobs.deliveries import DELIVERED, FAILED, PENDING, STOPPED, Deliveries
from jobs.record import flat_record, iso, webhook_body
from jobs.ssrf import UnsafeURL, check_url, post
from webhooks.sign import signed_headers

log = logging.getLogger("inferq.webhooks")
CONNECT_TIMEOUT_S, TOTAL_TIMEOUT_S = 3.0, 10.0


def attempt(deliveries: Deliveries, settings, webhook_id: str, token: str):
    d = deliveries.take(webhook_id, token)
    if d is None:
        return  # a duplicate task, or a claim that has since run out
    started = time.time()
    body = d.get("body")
    if not body:
        # From the job's record as the event left it (the delivery keeps it), not as the
        # job stands now: a started event never says succeeded.
        make = batch.webhook_body if d["event"] in batch.WEBHOOK_EVENTS else webhook_body
        body = json.dumps(make(d["event"], d["created_at"], flat_record(d["record"]),
                               settings.base_url))
        deliveries.save_body(webhook_id, body)
    try:
        target = check_url(d["url"], settings.webhook_networks)  # again: DNS may have changed
    except UnsafeURL as exc:
        return _end(deliveries, d, started, FAILED, error=f"refused at delivery: {exc}")
    headers = signed_headers(webhook_id, body, settings.webhook_secrets)
    try:
        response = post(target, body.encode(), headers, CONNECT_TIMEOUT_S, TOTAL_TIMEOUT_S)
    except OSError as exc:  # refused, reset, TLS, timeouts: all worth another try
        return _retry_or_fail(deliveries, settings, d, started,
                              error=f"{type(exc).__name__}: {exc}" if str(exc)
                              else type(exc).__name__)
    code = response.status
    if 200 <= code < 300:
        return _end(deliveries, d, started, DELIVERED, code=code)
    if code == 410:
        return _end(deliveries, d, started, STOPPED, code=code,
                    error="receiver answered 410 Gone: no further attempts")
    if code in (408, 429) or code >= 500:
        return _retry_or_fail(deliveries, settings, d, started, code=code,
                              retry_after_s=_retry_after(response.headers.get("retry-after")))
    why = "redirects are not followed" if 300 <= code < 400 else "not retried"
    return _end(deliveries, d, started, FAILED, code=code, error=f"HTTP {code}: {why}")


def next_delay(settings, attempts_made: int) -> float:
    """The schedule's delay after attempt `attempts_made` (its last entry repeats), +-20%."""
    schedule = settings.webhook_retry_schedule
    delay = schedule[min(attempts_made, len(schedule)) - 1]
    return delay * random.uniform(0.8, 1.2)


def _retry_or_fail(deliveries, settings, d, started, code=None, error=None, retry_after_s=None):
    attempts_made = int(d["attempts"]) + 1
    delay = max(next_delay(settings, attempts_made), retry_after_s or 0)
    next_at = time.time() + delay
    if next_at - float(d["created_at"]) > settings.webhook_max_age_s:
        error = f"{error or f'HTTP {code}'}; gave up after {attempts_made} attempts"
        return _end(deliveries, d, started, FAILED, code=code, error=error)
    _end(deliveries, d, started, PENDING, code=code, error=error, next_at=next_at)


def _end(deliveries, d, started, status, code=None, error=None, next_at=None):
    entry = {"at": iso(started), "duration_ms": round((time.time() - started) * 1000, 1),
             "status_code": code, "error": error}
    deliveries.record(d["id"], entry, status, next_at)
    log.info("webhook %s (job %s, %s) attempt %d: %s%s", d["id"], d["job"], d["event"],
             int(d["attempts"]) + 1, code or error, f"; next in {next_at - time.time():.1f} s"
             if next_at else f"; {status}")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None  # unreadable: the schedule alone decides
