"""Batches: a file of inputs in, a results file and an errors file out (docs/batches.md):
`client.batches` on Client (Batches) and on AsyncClient (AsyncBatches)."""
from __future__ import annotations  # a method named `list` shadows the builtin in the class

import json
from pathlib import Path
from urllib.parse import quote

import httpx

from . import _calls
from ._progress import Meter
from ._upload import options, upload

def _path(batch_id: str, which: str = "") -> str:
    return f"/v1/batches/{quote(batch_id, safe='')}" + (f"/{which}" if which else "")


def _meter(progress: bool):
    return Meter("batch", None, unit="inputs") if progress else None


def _seen(meter):
    def seen(batch):
        if meter is not None:
            counts = batch["request_counts"]
            meter.update(counts["completed"] + counts["failed"], counts["failed"],
                         counts["total"] or None, batch["status"])
    return seen


class Batches:
    def __init__(self, client):
        self._client = client

    def create(self, model: str, path, **opts) -> dict:
        """Start a batch of `path`: a directory (sent as a tar), or a tar, zip or JSONL file.
        Options: version, webhook, webhook_events_filter, metadata (a dict), expires_after_s."""
        headers, body = upload(path)
        call = _calls.create_batch(model, {"content": body, "headers": headers}, options(**opts))
        return self._client._run(call)

    def get(self, batch_id: str, wait: float | None = None) -> dict:
        return self._client._run(_calls.get_batch(batch_id, wait))

    def wait(self, batch_id: str, progress: bool = False, timeout: float | None = None) -> dict:
        """The batch once it has ended; with `progress`, a bar (on a terminal) or a line every
        few seconds on stderr, from its counts."""
        meter = _meter(progress)
        poll_s = 2.0 if progress else _calls.LONG_POLL_S
        with meter or _Nothing():
            return self._client._run(_calls.wait_batch(batch_id, timeout, poll_s, _seen(meter)))

    def cancel(self, batch_id: str) -> dict:
        return self._client._run(_calls.cancel_batch(batch_id))

    def list(self, limit: int = 100):
        """Every batch of this key's tenant, newest first (page by page)."""
        after = None
        while True:
            page = self._client._run(_calls.list_batches(limit, after))
            yield from page["data"]
            if not page["has_more"]:
                return
            after = page["last_id"]

    def results(self, batch_id: str):
        """The results file's lines, parsed: `custom_id`, `index`, `outputs`."""
        return self._lines(batch_id, "results")

    def errors(self, batch_id: str):
        """The errors file's lines, parsed: `custom_id`, `index`, `error`."""
        return self._lines(batch_id, "errors")

    def download(self, batch_id: str, directory=".") -> list[Path]:
        """Write results.jsonl and errors.jsonl into `directory`; their paths."""
        written = []
        Path(directory).mkdir(parents=True, exist_ok=True)
        for which in ("results", "errors"):
            target = Path(directory) / f"{which}.jsonl"
            with self._stream(batch_id, which) as resp, open(target, "wb") as out:
                for chunk in resp.iter_bytes():
                    out.write(chunk)
            written.append(target)
        return written

    def _lines(self, batch_id: str, which: str):
        with self._stream(batch_id, which) as resp:
            for line in resp.iter_lines():
                if line.strip():
                    yield json.loads(line)

    def _stream(self, batch_id: str, which: str):
        return _Checked(self._client, self._client._http.stream(
            "GET", _path(batch_id, which), timeout=_calls.timeout()))


class _Checked:
    """A streamed answer, checked when it opens: an error answer raises its InferqError,
    a lost connection ServerUnavailable."""

    def __init__(self, client, stream):
        self._client, self._stream = client, stream

    def __enter__(self) -> httpx.Response:
        try:
            resp = self._stream.__enter__()
            if resp.status_code >= 400:
                resp.read()
        except httpx.TransportError as exc:
            raise self._client._unreachable(exc) from exc
        if resp.status_code >= 400:
            self._stream.__exit__(None, None, None)
            _calls.check(resp)
        return resp

    def __exit__(self, *exc):
        return self._stream.__exit__(*exc)

    async def __aenter__(self) -> httpx.Response:
        try:
            resp = await self._stream.__aenter__()
            if resp.status_code >= 400:
                await resp.aread()
        except httpx.TransportError as exc:
            raise self._client._unreachable(exc) from exc
        if resp.status_code >= 400:
            await self._stream.__aexit__(None, None, None)
            _calls.check(resp)
        return resp

    async def __aexit__(self, *exc):
        return await self._stream.__aexit__(*exc)


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


async def _async(chunks):
    for chunk in chunks:
        yield chunk


class AsyncBatches:
    """Batches for AsyncClient: the same methods, to be awaited (`list`, `results` and
    `errors` are async iterators)."""

    def __init__(self, client):
        self._client = client

    async def create(self, model: str, path, **opts) -> dict:
        headers, body = upload(path)
        call = _calls.create_batch(model, {"content": _async(body), "headers": headers},
                                   options(**opts))
        return await self._client._run(call)

    async def get(self, batch_id: str, wait: float | None = None) -> dict:
        return await self._client._run(_calls.get_batch(batch_id, wait))

    async def wait(self, batch_id: str, progress: bool = False,
                   timeout: float | None = None) -> dict:
        meter = _meter(progress)
        poll_s = 2.0 if progress else _calls.LONG_POLL_S
        with meter or _Nothing():
            return await self._client._run(
                _calls.wait_batch(batch_id, timeout, poll_s, _seen(meter)))

    async def cancel(self, batch_id: str) -> dict:
        return await self._client._run(_calls.cancel_batch(batch_id))

    async def list(self, limit: int = 100):
        after = None
        while True:
            page = await self._client._run(_calls.list_batches(limit, after))
            for batch in page["data"]:
                yield batch
            if not page["has_more"]:
                return
            after = page["last_id"]

    async def results(self, batch_id: str):
        async for line in self._lines(batch_id, "results"):
            yield line

    async def errors(self, batch_id: str):
        async for line in self._lines(batch_id, "errors"):
            yield line

    async def download(self, batch_id: str, directory=".") -> list[Path]:
        written = []
        Path(directory).mkdir(parents=True, exist_ok=True)
        for which in ("results", "errors"):
            target = Path(directory) / f"{which}.jsonl"
            async with self._stream(batch_id, which) as resp:
                with open(target, "wb") as out:
                    async for chunk in resp.aiter_bytes():
                        out.write(chunk)
            written.append(target)
        return written

    async def _lines(self, batch_id: str, which: str):
        async with self._stream(batch_id, which) as resp:
            async for line in resp.aiter_lines():
                if line.strip():
                    yield json.loads(line)

    def _stream(self, batch_id: str, which: str):
        return _Checked(self._client, self._client._http.stream(
            "GET", _path(batch_id, which), timeout=_calls.timeout()))
