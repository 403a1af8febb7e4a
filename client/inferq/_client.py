"""Client and AsyncClient: the same methods, blocking or async. Both send through
RetryTransport and run the calls of `_calls`, so they ask and read alike."""
import functools
import ssl

import httpx

from . import _calls, _config
from ._job import AsyncJob, Job
from ._transport import RetryTransport
from .batches import AsyncBatches, Batches
from .errors import ServerUnavailable


@functools.lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    """One TLS context for every client: loading the CA certificates takes a while."""
    return httpx.create_ssl_context()


class _Base:
    """`url`: INFERQ_URL, else http://localhost:8000; `api_key`: INFERQ_API_KEY.
    `retry_deadline_s`: how long one request may keep retrying (the server down, a full
    backlog, rate limits). `max_connections`: connections kept open to the server (as many
    as the requests you run at once)."""

    def __init__(self, url=None, api_key=None, *, retry_deadline_s: float = 60.0,
                 max_connections: int = 100, transport=None):
        self.url = _config.url(url)
        self.api_key = _config.api_key(api_key)
        headers = {"User-Agent": "inferq-client"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        limits = httpx.Limits(max_connections=max_connections,
                              max_keepalive_connections=max_connections)
        inner = transport or self._transport(limits)
        self._options = {"base_url": self.url, "headers": headers, "timeout": _calls.timeout(),
                         "transport": RetryTransport(inner, deadline_s=retry_deadline_s)}

    def _unreachable(self, exc: Exception) -> ServerUnavailable:
        why = str(exc) or type(exc).__name__
        return ServerUnavailable(f"cannot reach inferq at {self.url}: {why}", None,
                                 "unreachable")


class Client(_Base):
    """A blocking client; safe to share between threads."""

    def __init__(self, url=None, api_key=None, **options):
        super().__init__(url, api_key, **options)
        self._http = httpx.Client(**self._options)
        self.batches = Batches(self)

    @staticmethod
    def _transport(limits):
        return httpx.HTTPTransport(limits=limits, verify=_tls())

    def _run(self, calls):
        try:
            call = next(calls)
            while True:
                call = calls.send(self._send(call))
        except StopIteration as done:
            return done.value

    def _send(self, call: _calls.Call) -> httpx.Response:
        try:
            return self._http.request(call.method, call.path, **call.kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def models(self) -> list[dict]:
        """Every model: its state, versions, kind, labels, backlog."""
        return self._run(_calls.models())

    def model(self, name: str) -> dict:
        """One model (NotFound if there is none of that name)."""
        return self._run(_calls.model(name))

    def predict(self, model: str, image, version: int | None = None, timeout: float = 300.0):
        """Run one input and return its outputs: the top-k list (`label`, `index`, `score`)
        for a model with labels, else the raw output row. `image`: a path, bytes, a binary
        file, a PIL image; for tensor models a list of numbers or a numpy array."""
        return self._run(_calls.predict(model, image, version, timeout))

    def submit(self, model: str, images, version: int | None = None, webhook: str | None = None,
               webhook_events_filter=None, wait: float | None = None) -> Job:
        """Queue a job of one input or a list of them; `wait`: seconds to wait on submit for
        it to end (Prefer: wait)."""
        return Job(self, self._run(_calls.submit(model, images, version, webhook,
                                                 webhook_events_filter, wait)))

    def get_job(self, job_id: str, wait: float | None = None) -> Job:
        """A job by id; `wait`: long-poll up to that many seconds for it to end."""
        return Job(self, self._run(_calls.get_job(job_id, wait)))

    def close(self):
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class AsyncClient(_Base):
    """The async twin of Client: the same methods, to be awaited, on one event loop."""

    def __init__(self, url=None, api_key=None, **options):
        super().__init__(url, api_key, **options)
        self._http = httpx.AsyncClient(**self._options)
        self.batches = AsyncBatches(self)

    @staticmethod
    def _transport(limits):
        return httpx.AsyncHTTPTransport(limits=limits, verify=_tls())

    async def _run(self, calls):
        try:
            call = next(calls)
            while True:
                call = calls.send(await self._send(call))
        except StopIteration as done:
            return done.value

    async def _send(self, call: _calls.Call) -> httpx.Response:
        try:
            return await self._http.request(call.method, call.path, **call.kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    async def models(self) -> list[dict]:
        return await self._run(_calls.models())

    async def model(self, name: str) -> dict:
        return await self._run(_calls.model(name))

    async def predict(self, model: str, image, version: int | None = None,
                      timeout: float = 300.0):
        return await self._run(_calls.predict(model, image, version, timeout))

    async def submit(self, model: str, images, version: int | None = None,
                     webhook: str | None = None, webhook_events_filter=None,
                     wait: float | None = None) -> AsyncJob:
        return AsyncJob(self, await self._run(_calls.submit(
            model, images, version, webhook, webhook_events_filter, wait)))

    async def get_job(self, job_id: str, wait: float | None = None) -> AsyncJob:
        return AsyncJob(self, await self._run(_calls.get_job(job_id, wait)))

    async def aclose(self):
        await self._http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()
