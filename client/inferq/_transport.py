"""RetryTransport: an httpx transport wrapper that both the sync and the async client mount, so
that the retry rules live in one place (modelled on replicate-python's RetryTransport).

What is retried: connection errors, timeouts, and answers 429, 502, 503 and 504, with capped,
jittered exponential backoff; a `Retry-After` (seconds or an HTTP date) is waited out in full.
Each request has a total deadline: no wait goes past it. Only requests that are safe to send
again are retried: GET, HEAD, OPTIONS, PUT, DELETE, and a POST that carries an
`Idempotency-Key` (the server answers its repeat with the first job, never a second one)."""
import asyncio
import random
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

RETRY_STATUSES = frozenset({429, 502, 503, 504})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_ERRORS = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)


def _small(response: httpx.Response) -> bool:
    """An answer read here, inside the retries: one of a known, small length (a job, an
    error); a stream (a batch's results file) is left to the caller."""
    length = response.headers.get("content-length", "")
    return length.isdigit() and int(length) <= 1024 * 1024


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date); None when
    absent or unreadable."""
    value = (value or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


class RetryTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Wraps `transport` (sync or async). `deadline_s`: the most time one request may take,
    retries and waits included; `max_backoff_s`: the cap on one backoff wait; `backoff_s`:
    the first wait, doubled on each retry; `jitter`: the fraction of each backoff wait drawn
    at random, so that many clients do not retry in step. `sleep`, `async_sleep` and `clock`
    are there for tests."""

    def __init__(self, transport, *, deadline_s: float = 120.0, max_backoff_s: float = 10.0,
                 backoff_s: float = 0.25, jitter: float = 0.5, sleep=time.sleep,
                 async_sleep=asyncio.sleep, clock=time.monotonic):
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be from 0 to 1, not {jitter}")
        self.transport = transport
        self.deadline_s, self.max_backoff_s = deadline_s, max_backoff_s
        self.backoff_s, self.jitter = backoff_s, jitter
        self._sleep, self._async_sleep, self._clock = sleep, async_sleep, clock

    @staticmethod
    def retryable(request: httpx.Request) -> bool:
        return request.method in SAFE_METHODS or (
            request.method == "POST" and "Idempotency-Key" in request.headers)

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        """The wait before retry number `attempt` (1 for the first)."""
        asked = retry_after_s(response.headers.get("Retry-After")) if response else None
        if asked is not None:
            # The server's wait in full, spread past it: never earlier than it asked.
            return asked + min(asked, self.max_backoff_s) * self.jitter * random.random()
        backoff = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return backoff * (1 - self.jitter * random.random())

    def _next(self, request, attempt: int, deadline: float, response=None, error=None):
        """The seconds to wait before trying again, or None to stop here."""
        if not self.retryable(request):
            return None
        if response is not None and response.status_code not in RETRY_STATUSES:
            return None
        delay = self._delay(attempt, response)
        if self._clock() + delay > deadline:
            return None
        return delay

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline, attempt = self._clock() + self.deadline_s, 0
        while True:
            attempt += 1
            try:
                response = self.transport.handle_request(request)
            except RETRY_ERRORS:
                delay = self._next(request, attempt, deadline)
                if delay is None:
                    raise
            else:
                delay = self._next(request, attempt, deadline, response)
                if delay is None:
                    if not _small(response):
                        return response
                    try:  # a body cut off (the server died mid-answer) is retried too
                        response.read()
                        return response
                    except RETRY_ERRORS:
                        response.close()
                        delay = self._next(request, attempt, deadline)
                        if delay is None:
                            raise
                else:
                    response.read()  # hands its connection back to the pool
                    response.close()
            self._sleep(delay)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        deadline, attempt = self._clock() + self.deadline_s, 0
        while True:
            attempt += 1
            try:
                response = await self.transport.handle_async_request(request)
            except RETRY_ERRORS:
                delay = self._next(request, attempt, deadline)
                if delay is None:
                    raise
            else:
                delay = self._next(request, attempt, deadline, response)
                if delay is None:
                    if not _small(response):
                        return response
                    try:
                        await response.aread()
                        return response
                    except RETRY_ERRORS:
                        await response.aclose()
                        delay = self._next(request, attempt, deadline)
                        if delay is None:
                            raise
                else:
                    await response.aread()
                    await response.aclose()
            await self._async_sleep(delay)

    def close(self):
        self.transport.close()

    async def aclose(self):
        await self.transport.aclose()
