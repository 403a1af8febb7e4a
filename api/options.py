"""Submit options: a webhook (checked against SSRF here and again at delivery), `Prefer: wait`,
and `Idempotency-Key`."""
import hashlib

from flask import request

from api.errors import ApiError
from api.schemas import JobQuery, SubmitHeaders, validate
from jobs.ssrf import UnsafeURL, check_url


def webhook_fields(settings, options: dict) -> dict:
    """Job record fields for the webhook options (none without a webhook). Their types were
    checked with api.schemas.WebhookOptions; these are the checks a schema cannot make."""
    url, events = options.get("webhook"), options.get("webhook_events_filter")
    if not url:
        if events:
            raise ApiError(400, "invalid_webhook", "webhook_events_filter needs a webhook")
        return {}
    check_webhook(settings, url)
    return {"webhook": url, "webhook_events": ",".join(sorted(set(events or ["completed"])))}


def check_webhook(settings, url: str):
    """A webhook URL this server may call: webhooks are on, and the URL passes the SSRF guard
    (it is checked again at each delivery)."""
    if not settings.webhook_secrets:
        raise ApiError(400, "webhooks_disabled", "this server sends no webhooks: its "
                       "INFERQ_WEBHOOK_SECRET is not set")
    try:
        check_url(url, settings.webhook_networks)
    except UnsafeURL as exc:
        raise ApiError(400, "invalid_webhook", f"webhook refused: {exc}") from None


def prefer_wait(cap_s: float) -> float | None:
    """Seconds asked for by `Prefer: wait=N` (capped), or None without a `wait` preference.
    A `wait` that is not a number of seconds is a 400, as `?wait=` is; other preferences
    (`respond-async`, ...) are ignored."""
    raw = _preference(request.headers.get("Prefer", ""), "wait")
    if raw is None:
        return None
    query = validate(JobQuery, {"wait": raw}, {"wait": (
        "invalid_wait", f"Prefer: wait must be a number of seconds, got {raw!r}")}, strict=False)
    return min(query.wait, cap_s)


def _preference(header: str, name: str) -> str | None:
    """The value of preference `name` in a Prefer header (RFC 7240: `name[=value]` items
    separated by commas, with `;` parameters, which are searched too); "" when it has no
    value, None when it is absent."""
    for item in header.replace(";", ",").split(","):
        key, eq, value = item.partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"') if eq else ""
    return None


def idempotency(tenant: str, model: str, inputs: list[bytes], fields: dict
                ) -> tuple[str, str] | None:
    """(key digest, request digest) for an `Idempotency-Key` header, or None. Keys are the
    tenant's own: another tenant's same key is another key. The request
    digest covers what the job is made of, not the bytes of the body, so the same images sent
    again with another multipart boundary count as the same request."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    bad_key = ("invalid_idempotency_key", "Idempotency-Key must be 1 to 255 printable "
               "characters")
    validate(SubmitHeaders, {"Idempotency-Key": key}, {"Idempotency-Key": bad_key})
    if not key.isprintable():
        raise ApiError(400, *bad_key)
    digest = hashlib.sha256()
    for part in (model, fields.get("webhook", ""), fields.get("webhook_events", "")):
        digest.update(part.encode() + b"\0")
    for data in inputs:
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return hashlib.sha256(f"{tenant}\0{key}".encode()).hexdigest(), digest.hexdigest()
