"""A batch's options (webhook, webhook_events_filter, version, metadata, expires_after_s), from
the form fields beside the file and the query string, checked; and the batch record fields
they make."""
import json
import time

from flask import request
from werkzeug.datastructures import MultiDict

from api.errors import ApiError
from api.jsonbody import parse_json
from api.options import check_webhook
from api.schemas import MAX_EXPIRES_AFTER_S, MAX_METADATA_BYTES, BatchOptions, validate
from jobs import routing
from jobs.batch import FINAL

EVENTS = FINAL  # completed, failed, cancelled, expired: sent as `batch.<event>`
SINGLE = ("webhook", "version", "metadata", "expires_after_s")
ERRORS = {
    "webhook": ("invalid_webhook", "webhook must be an http(s) URL of at most 2048 "
                "characters"),
    "webhook_events_filter": ("invalid_webhook", "webhook_events_filter must name some of "
                              + ", ".join(EVENTS)),
    "version": ("invalid_version", "version must be a version number (a whole number, 0 or "
                "more)"),
    "metadata": ("invalid_metadata", f"metadata must be a JSON object of at most "
                 f"{MAX_METADATA_BYTES} bytes"),
    "expires_after_s": ("invalid_expires_after", f"expires_after_s must be a number of seconds "
                        f"greater than 0 and at most {MAX_EXPIRES_AFTER_S}"),
}


def read(form: MultiDict) -> BatchOptions:
    """The options from the query string and the form's fields (either place, not both)."""
    given = MultiDict(request.args)
    for name, value in form.items(multi=True):
        given.add(name, value)
    data = {}
    for name in SINGLE:
        values = given.getlist(name)
        if len(values) > 1:
            raise ApiError(400, ERRORS[name][0], f"{name} is given {len(values)} times; give "
                           "it once")
        if values:
            data[name] = values[0]
    events = given.getlist("webhook_events_filter")
    if events:
        data["webhook_events_filter"] = events
    return validate(BatchOptions, data, ERRORS, strict=False)


def record_fields(ctx, model: str, options: BatchOptions) -> dict:
    """The batch record's fields the options decide: version, input, webhook, metadata,
    expires_at."""
    version = _version(ctx, model, options.version)
    model_input = ctx.catalog.input_of(model, version)
    described = {"kind": model_input["kind"]}
    if model_input["kind"] == "tensor":
        described.update({k: model_input[k] for k in ("shape", "dtype", "names")})
    fields = {"version": str(version), "input": json.dumps(described)}
    fields.update(_webhook(ctx.settings, options))
    if options.metadata is not None:
        fields["metadata"] = json.dumps(_metadata(ctx.settings, options.metadata),
                                        separators=(",", ":"), ensure_ascii=False)
    if options.expires_after_s is not None:
        fields["expires_at"] = repr(time.time() + options.expires_after_s)
    return fields


def _version(ctx, model: str, pinned: int | None) -> int:
    """The pinned version (it must exist), else the model's default, else its highest."""
    if pinned is not None:
        if not ctx.catalog.version_exists(model, pinned):
            raise ApiError(400, "unknown_version", f"model {model!r} has no version {pinned} "
                           f"that is served; GET /v1/models/{model} lists them")
        return pinned
    default = routing.default_version(ctx.redis, model)
    if default is not None:
        return default
    fallback = ctx.catalog.fallback_version(model)
    if not fallback:
        raise ApiError(503, "no_version", f"no version of model {model!r} is served yet; "
                       "try again shortly", {"Retry-After": "5"})
    return int(fallback)


def _webhook(settings, options: BatchOptions) -> dict:
    events = [e.strip().lower().removeprefix("batch.")
              for value in options.webhook_events_filter or [] for e in value.split(",")]
    events = [e for e in events if e]
    if options.webhook_events_filter is not None:
        unknown = [e for e in events if e not in EVENTS]
        if unknown or not events:
            raise ApiError(400, "invalid_webhook", f"webhook_events_filter: {unknown[0]!r} is "
                           f"not an event; name some of {', '.join(EVENTS)}" if unknown else
                           f"webhook_events_filter is empty; name some of {', '.join(EVENTS)}")
    if not options.webhook:
        if options.webhook_events_filter is not None:
            raise ApiError(400, "invalid_webhook", "webhook_events_filter needs a webhook")
        return {}
    check_webhook(settings, options.webhook)
    chosen = [e for e in EVENTS if e in events] if events else EVENTS
    return {"webhook": options.webhook,
            "webhook_events": ",".join(f"batch.{e}" for e in chosen)}


def _metadata(settings, raw: str) -> dict:
    code, message = ERRORS["metadata"]
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_METADATA_BYTES:
        raise ApiError(400, code, message)
    try:
        value = parse_json(raw, settings)
    except ApiError as exc:
        raise ApiError(400, code, f"metadata: {exc.message}") from None
    if not isinstance(value, dict):
        raise ApiError(400, code, message)
    return value
