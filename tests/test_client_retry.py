"""The client's RetryTransport (client/inferq/_transport.py), against fake servers
(httpx.MockTransport) and a fake clock: what it retries, how long it waits, when it stops."""
import asyncio
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest

from inferq._transport import RetryTransport


class Clock:
    """A fake monotonic clock that sleeping moves on; every sleep is kept."""

    def __init__(self):
        self.now, self.sleeps = 1000.0, []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds):
        self.sleep(seconds)


class Server:
    """Answers each request with the next of `answers` (a status, (status, headers), or an
    exception to raise), the last one again when they run out; keeps every request."""

    def __init__(self, *answers):
        self.answers, self.requests = list(answers), []

    def __call__(self, request):
        self.requests.append((request.method, dict(request.headers), request.read()))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return httpx.Response(status, headers=headers, json={"n": len(self.requests)})


def client(server, clock, **options) -> httpx.Client:
    transport = RetryTransport(httpx.MockTransport(server), sleep=clock.sleep, clock=clock,
                               **options)
    return httpx.Client(transport=transport, base_url="http://inferq.test")


@pytest.fixture
def clock():
    return Clock()


def test_503_with_retry_after_seconds_waits_that_long_then_gets_the_answer(clock):
    server = Server((503, {"Retry-After": "3"}), 200)
    resp = client(server, clock, jitter=0.5).get("/v1/jobs/x")
    assert resp.status_code == 200 and len(server.requests) == 2
    (slept,) = clock.sleeps
    assert 3 <= slept <= 4.5  # never earlier than asked; spread at most by the jitter


def test_retry_after_as_an_http_date_is_waited_out(clock):
    when = datetime.now(timezone.utc) + timedelta(seconds=7)
    server = Server((429, {"Retry-After": format_datetime(when, usegmt=True)}), 200)
    resp = client(server, clock, jitter=0).get("/v1/models")
    assert resp.status_code == 200
    (slept,) = clock.sleeps
    assert 5.5 < slept <= 7  # the date has whole seconds


def test_backoff_doubles_up_to_the_cap(clock):
    server = Server(502, 502, 504, 503, 503, 503, 200)
    resp = client(server, clock, backoff_s=1, max_backoff_s=4, jitter=0,
                  deadline_s=100).get("/v1/models")
    assert resp.status_code == 200
    assert clock.sleeps == [1, 2, 4, 4, 4, 4]


def test_jitter_spreads_the_backoff_below_it(clock):
    server = Server(*[503] * 30, 200)
    client(server, clock, backoff_s=1, max_backoff_s=1, jitter=0.5, deadline_s=100).get("/")
    assert all(0.5 <= s <= 1 for s in clock.sleeps)
    assert len(set(clock.sleeps)) > 1


def test_no_wait_goes_past_the_deadline_and_the_last_answer_is_returned(clock):
    server = Server(503)
    start = clock.now
    resp = client(server, clock, backoff_s=1, max_backoff_s=4, jitter=0,
                  deadline_s=10).get("/v1/models")
    assert resp.status_code == 503
    assert clock.sleeps == [1, 2, 4]  # another 4 would end past the deadline
    assert clock.now - start <= 10


def test_a_retry_after_longer_than_the_deadline_is_not_waited_for(clock):
    server = Server((503, {"Retry-After": "120"}), 200)
    resp = client(server, clock, deadline_s=60).get("/v1/models")
    assert resp.status_code == 503 and clock.sleeps == [] and len(server.requests) == 1


def test_connection_errors_are_retried_then_raised_at_the_deadline(clock):
    refused = httpx.ConnectError("connection refused")
    server = Server(refused, refused, 200)
    assert client(server, clock, jitter=0).get("/v1/models").status_code == 200
    assert len(server.requests) == 3
    with pytest.raises(httpx.ConnectError):
        client(Server(refused), clock, deadline_s=5).get("/v1/models")


def test_other_errors_are_not_retried(clock):
    for status in (400, 401, 404, 409, 500):
        server = Server(status, 200)
        assert client(server, clock).get("/x").status_code == status
        assert len(server.requests) == 1
    assert clock.sleeps == []


def test_a_post_without_an_idempotency_key_is_sent_once(clock):
    server = Server(503, 200)
    assert client(server, clock).post("/v1/models/m/jobs", content=b"img").status_code == 503
    lost = Server(httpx.ReadError("connection reset"), 200)
    with pytest.raises(httpx.ReadError):
        client(lost, clock).post("/v1/models/m/jobs", content=b"img")
    assert len(server.requests) == len(lost.requests) == 1
    assert clock.sleeps == []


def test_a_post_with_an_idempotency_key_is_sent_again_alike(clock):
    server = Server(httpx.RemoteProtocolError("server went away"), (503, {"Retry-After": "1"}),
                    202)
    resp = client(server, clock).post("/v1/models/m/jobs", content=b"img",
                                      headers={"Idempotency-Key": "k-1"})
    assert resp.status_code == 202 and len(server.requests) == 3
    assert {(m, h["idempotency-key"], body) for m, h, body in server.requests} == {
        ("POST", "k-1", b"img")}


def test_the_async_client_retries_alike(clock):
    server = Server(httpx.ConnectError("refused"), (503, {"Retry-After": "2"}), 200)
    transport = RetryTransport(httpx.MockTransport(server), async_sleep=clock.async_sleep,
                               clock=clock, jitter=0)

    async def go():
        async with httpx.AsyncClient(transport=transport, base_url="http://inferq.test") as c:
            return await c.post("/v1/models/m/jobs", content=b"img",
                                headers={"Idempotency-Key": "k-2"})

    assert asyncio.run(go()).status_code == 200
    assert len(server.requests) == 3 and clock.sleeps[1] == 2
