"""Webhook deliveries with INFERQ_WEBHOOK_MAX_AGE_S over a day: a delivery is retried until its
max age, so its record must live that long. Real Redis and a real receiver; the days are passed
by setting a delivery's created_at back, not by waiting."""
import time

import pytest

from jobs import keys
from jobs.consumer import Consumer, InputResult
from jobs.deliveries import Deliveries
from jobs.producer import Producer
from jobs.settings import load_settings
from jobs.stream import StreamConsumer
from tests.receiver import Receiver
from webhooks.attempt import attempt

DAY_S = 86400
MAX_AGE_S = 3 * DAY_S
OK = {"top_k": [], "metrics": {"queue_ms": 1.0, "predict_ms": 2.0, "batch_size": 1}}


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def settings(redis_url):
    return load_settings({}, redis_url=redis_url, webhook_max_age_s=MAX_AGE_S,
                         webhook_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                         webhook_allow_networks="127.0.0.1/32")


@pytest.fixture
def producer(r, settings):
    return Producer(r, settings.result_ttl_s, settings.max_backlog, settings.webhook_max_age_s)


@pytest.fixture
def deliveries(r, producer):
    """The deliveries as the webhook worker keeps them (webhooks/app.py)."""
    return Deliveries(r, producer.delivery_ttl_s)


def completed_job_with_webhook(r, settings, producer, url: str) -> str:
    """A job with a webhook, run to completion as the API and a worker do: its delivery is
    created, due now."""
    job, _ = producer.enqueue("m", [b"a"], fallback_version="1",
                              fields={"webhook": url, "webhook_events": "completed"})
    stream = StreamConsumer(r, "m", 1, "w")
    stream.ensure_group()
    [entry] = stream.read(1)
    consumer = Consumer(r, settings.result_ttl_s, settings.webhook_max_age_s)
    consumer.start([job["id"]], "1", [entry])
    consumer.finish("m", 1, [InputResult(entry.id, job["id"], 0, output=OK)])
    return job["id"]


def attempt_as_if_created(r, settings, producer, deliveries, job_id: str, age_s: float
                          ) -> dict:
    """Claim the job's due delivery, set its creation `age_s` back, and make one attempt, as
    the webhook worker does. The delivery afterwards."""
    [(webhook_id, token)] = deliveries.claim_due(lease_s=60)
    r.hset(keys.delivery(webhook_id), "created_at", repr(time.time() - age_s))
    attempt(deliveries, settings, webhook_id, token)
    [d] = deliveries.for_job(job_id)
    return d


def test_a_delivery_failing_for_two_days_of_three_is_still_retried_and_still_kept(
        r, settings, producer, deliveries, receiver):
    receiver.script("/down", 503)
    job_id = completed_job_with_webhook(r, settings, producer, receiver.url("/down"))
    [d] = deliveries.for_job(job_id)
    kept_s = r.ttl(keys.delivery(d["id"]))
    assert kept_s > MAX_AGE_S  # it outlives every retry, not only the first day's
    assert r.ttl(keys.deliveries(job_id)) > MAX_AGE_S  # and so does the job's list of them

    d = attempt_as_if_created(r, settings, producer, deliveries, job_id, age_s=2 * DAY_S)
    assert [a["status_code"] for a in d["attempts"]] == [503]
    assert d["status"] == "pending" and d["next_attempt_at"]  # retried, not given up
    due = r.zscore(keys.webhooks_due(), d["id"])
    assert due > time.time()
    # Two days after its creation, its record would still be there for that retry.
    assert kept_s - 2 * DAY_S > due - time.time()
    assert r.ttl(keys.delivery_attempts(d["id"])) > due - time.time()
    assert len(receiver.to("/down")) == 1


def test_a_delivery_past_its_max_age_is_given_up(r, settings, producer, deliveries, receiver):
    receiver.script("/down", 503)
    job_id = completed_job_with_webhook(r, settings, producer, receiver.url("/down"))
    d = attempt_as_if_created(r, settings, producer, deliveries, job_id, age_s=MAX_AGE_S)
    assert d["status"] == "failed" and d["next_attempt_at"] is None
    assert d["attempts"][-1]["status_code"] == 503
    assert "gave up after 1 attempts" in d["attempts"][-1]["error"]
    assert r.zscore(keys.webhooks_due(), d["id"]) is None
