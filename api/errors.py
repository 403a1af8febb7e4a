"""JSON errors for every failure: {"error": {"code", "message"}}. Never an HTML page, never a 500
for something the client or a Redis outage caused."""
import logging

import redis as redis_lib
from flask import jsonify
from werkzeug.exceptions import HTTPException

from jobs.inputs import InputError
from jobs.producer import NotReplicated

log = logging.getLogger("inferq.api")


class ApiError(InputError):
    """An answer other than success, with the headers it needs (Retry-After, ...)."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(status, code, message)
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers: dict | None = None):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def register(app):
    @app.errorhandler(InputError)  # ApiError too
    def _api_error(exc):
        return error_response(exc.status, exc.code, exc.message, getattr(exc, "headers", None))

    @app.errorhandler(HTTPException)
    def _http_error(exc):
        code = (exc.name or "error").lower().replace(" ", "_")
        if exc.code == 413:
            message = (f"request body is larger than the limit of "
                       f"{app.config['MAX_CONTENT_LENGTH']} bytes (INFERQ_MAX_BODY_BYTES)")
        elif exc.code == 429:  # Flask-Limiter; its after_request adds Retry-After
            code = "rate_limited"
            message = (f"rate limit of {exc.description} exceeded; retry after the "
                       "Retry-After seconds")
        else:
            message = exc.description or exc.name
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return error_response(exc.code or 500, code, message, headers)

    @app.errorhandler(NotReplicated)
    def _not_replicated(exc):
        log.warning("job %s reached %d replica(s), fewer than asked", exc.job_id, exc.acked)
        return error_response(503, "not_replicated", (
            f"job {exc.job_id} was stored but no replica confirmed it in time, so it may exist "
            "or be lost; retry with the same Idempotency-Key to get this job, not a second "
            "one"), {"Retry-After": "1"})

    @app.errorhandler(redis_lib.ConnectionError)
    @app.errorhandler(redis_lib.TimeoutError)
    @app.errorhandler(redis_lib.BusyLoadingError)
    @app.errorhandler(redis_lib.ReadOnlyError)
    def _redis_down(exc):
        log.warning("redis unavailable: %s", exc)
        return error_response(503, "redis_unavailable",
                              "the job store is unavailable; try again shortly",
                              {"Retry-After": "1"})

    @app.errorhandler(redis_lib.ResponseError)
    def _redis_error(exc):
        # redis-py 5.x+ raises OutOfMemoryError with the "OOM" prefix cut from its message.
        if isinstance(exc, redis_lib.exceptions.OutOfMemoryError) or str(exc).startswith("OOM"):
            log.warning("redis is full: %s", exc)
            return error_response(503, "store_full", "the job store is out of memory; "
                                  "try again shortly", {"Retry-After": "5"})
        log.exception("redis error")
        return error_response(500, "internal_error", "unexpected job store error")

    @app.errorhandler(Exception)
    def _unexpected(exc):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "unexpected server error")
