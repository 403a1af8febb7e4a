"""Typed errors from inferq's answers: the status, and the code and message of the JSON error
body `{"error": {"code", "message"}}`, by what a caller does about them."""


class InferqError(Exception):
    """Any error inferq answered with (or could not answer, for lack of a connection)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message, self.status, self.code = message, status, code

    def __str__(self):
        where = " ".join(str(x) for x in (self.status, self.code) if x)
        return f"{self.message} ({where})" if where else self.message


class InvalidInput(InferqError):
    """The request itself is wrong (400, 413, 415, 422): sending it again will not help."""


class NotFound(InferqError):
    """No such model, version, job or batch (or another tenant's) (404)."""


class Unauthorized(InferqError):
    """No API key, or one the server refuses (401, 403)."""


class Conflict(InferqError):
    """The thing is not in a state that allows this (409): a job that already ended."""


class RateLimited(InferqError):
    """Over a rate limit (429), still after the client's retries."""


class ServerUnavailable(InferqError):
    """The server cannot be reached, or answers 502, 503 or 504, still after the retries."""


class BacklogFull(ServerUnavailable):
    """The model has INFERQ_MAX_BACKLOG inputs waiting (503 backlog_full), still after the
    retries."""


class JobFailed(InferqError):
    """The job ran and its input failed: `code` and `message` are the input's error."""


class WaitTimeout(InferqError, TimeoutError):
    """The job (or batch) had not ended when the caller's timeout passed."""


def is_fatal(error: InferqError) -> bool:
    """An error every other request would meet too: the key refused, the server gone."""
    return isinstance(error, Unauthorized) or (
        isinstance(error, ServerUnavailable) and error.code == "unreachable")


def from_status(status: int, code: str | None, message: str) -> InferqError:
    if code == "backlog_full":
        return BacklogFull(message, status, code)
    kind = {401: Unauthorized, 403: Unauthorized, 404: NotFound, 409: Conflict,
            429: RateLimited}.get(status)
    if kind is None:
        kind = ServerUnavailable if status in (502, 503, 504) else (
            InvalidInput if 400 <= status < 500 else InferqError)
    return kind(message, status, code)
