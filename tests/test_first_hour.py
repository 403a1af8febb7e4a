"""What a newcomer meets in the first hour: webhook event bodies, errors that say what to do,
`/`, `/v1` and `/favicon.ico`, the docs offline, an unwritable model repository. Against a real
redis-server; no worker."""
import io
import re
import json

import pytest

from api.app import create_app
from jobs.consumer import Consumer, InputResult
from jobs.deliveries import Deliveries
from jobs.producer import Producer
from jobs.settings import load_settings
from jobs.stream import StreamConsumer
from stack.processes import wait_for
from tests.receiver import Receiver
from tests.test_api import make_repo, png_bytes
from webhooks.attempt import attempt

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OUTPUT = {"top_k": [{"label": "circle", "index": 0, "score": 0.9}],
          "metrics": {"queue_ms": 1.0, "predict_ms": 2.0, "batch_size": 1}}


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def deliver_due(deliveries, settings) -> int:
    """One attempt of each due delivery, as the webhook worker makes them."""
    claimed = deliveries.claim_due(lease_s=60)
    for webhook_id, token in claimed:
        attempt(deliveries, settings, webhook_id, token)
    return len(claimed)


def test_each_event_body_is_its_type_and_the_job_as_it_was_then(r, receiver):
    settings = load_settings({}, webhook_secret=SECRET, webhook_allow_networks="127.0.0.1/32",
                             public_url="http://api.test", webhook_retry_schedule_s="0.05")
    producer = Producer(r, result_ttl_s=60, max_backlog=10, webhook_max_age_s=60)
    consumer = Consumer(r, result_ttl_s=60, webhook_max_age_s=60)
    deliveries = Deliveries(r, producer.delivery_ttl_s)
    receiver.script("/hook", 500, 200)  # the first request fails, and is retried
    job, _ = producer.enqueue("m", [b"img"], fallback_version="1", fields={
        "webhook": receiver.url("/hook"), "webhook_events": "completed,started"})
    stream = StreamConsumer(r, "m", 1, "w1")
    stream.ensure_group()
    [entry] = stream.read(10)
    consumer.start([job["id"]], "1", [entry])
    consumer.finish("m", 1, [InputResult(entry.id, job["id"], 0, output=OUTPUT)])
    # Both events are attempted only now, after the job has finished.
    assert producer.get(job["id"])["status"] == "succeeded"
    assert deliver_due(deliveries, settings) == 2
    wait_for(lambda: deliver_due(deliveries, settings), 10, "the retries to fall due", 0.02)

    got = receiver.to("/hook")
    by_id = {}
    for req in got:
        by_id.setdefault(req["headers"]["webhook-id"], []).append(req["body"])
    # The first request failed and was retried: three in all, the retry with the same body.
    assert len(got) == 3 and sorted(len(v) for v in by_id.values()) == [1, 2]
    assert all(len(set(bodies)) == 1 for bodies in by_id.values())
    bodies = {b["type"]: b for b in (json.loads(v[0]) for v in by_id.values())}
    assert set(bodies) == {"job.started", "job.completed"}
    assert all(set(b) == {"type", "timestamp", "data"} for b in bodies.values())

    started = bodies["job.started"]["data"]
    assert started["id"] == job["id"]
    assert started["status"] == "running" and not started["finished"]
    assert started["completed_at"] is None
    assert [o["status"] for o in started["outputs"]] == ["pending"]
    assert bodies["job.started"]["timestamp"] == started["started_at"]
    assert started["urls"]["get"] == f"http://api.test/v1/jobs/{job['id']}"

    completed = bodies["job.completed"]["data"]
    assert completed["status"] == "succeeded" and completed["finished"]
    assert completed["outputs"][0]["top_k"] == OUTPUT["top_k"]
    assert bodies["job.completed"]["timestamp"] == completed["completed_at"]


def test_a_canceled_job_sends_completed_with_its_outputs_canceled(r, receiver):
    settings = load_settings({}, webhook_secret=SECRET, webhook_allow_networks="127.0.0.1/32")
    producer = Producer(r, result_ttl_s=60, max_backlog=10, webhook_max_age_s=60)
    deliveries = Deliveries(r, producer.delivery_ttl_s)
    job, _ = producer.enqueue("m", [b"a", b"b"], fallback_version="1",
                              fields={"webhook": receiver.url("/cancel")})
    assert producer.cancel(job["id"]) == 1
    assert deliver_due(deliveries, settings) == 1
    [req] = receiver.to("/cancel")
    body = json.loads(req["body"])
    assert body["type"] == "job.completed" and body["data"]["status"] == "canceled"
    assert [o["status"] for o in body["data"]["outputs"]] == ["canceled", "canceled"]


# --- errors that say what to do ---------------------------------------------------------------

def test_a_refused_local_webhook_names_the_setting_that_allows_it(redis_url, tmp_path):
    make_repo(tmp_path)
    client = create_app({"redis_url": redis_url, "model_repository": str(tmp_path),
                         "webhook_secret": SECRET}).test_client()
    for url in ("http://127.0.0.1:9/hook", "http://10.0.0.1/hook", "http://[::1]/hook"):
        resp = client.post("/v1/models/shapes/jobs", content_type="multipart/form-data",
                           data={"image": (io.BytesIO(png_bytes()), "a.png"), "webhook": url})
        assert resp.status_code == 400 and resp.json["error"]["code"] == "invalid_webhook"
        assert resp.json["error"]["message"].endswith(
            "a server operator can allow such networks with INFERQ_WEBHOOK_ALLOW_NETWORKS"), url


# --- /, /v1 and /favicon.ico ------------------------------------------------------------------

KEY = "key-a-0123456789abcdef"


@pytest.mark.parametrize("keys", ["", f"{KEY}=alpha"])
def test_the_root_opens_the_console_and_v1_indexes_the_api_without_a_key(redis_url, tmp_path,
                                                                         keys):
    make_repo(tmp_path)
    client = create_app({"redis_url": redis_url, "model_repository": str(tmp_path),
                         "api_keys": keys}).test_client()
    root = client.get("/")
    assert root.status_code == 302 and root.headers["Location"] == "console"
    page = client.get("/console")
    assert page.status_code == 200 and page.mimetype == "text/html"
    resp = client.get("/v1")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    index = resp.json
    assert index["name"] == "inferq"
    assert index["links"] == {"console": "/console", "openapi": "/openapi.json",
                              "docs": "/docs", "models": "/v1/models", "health": "/healthz"}
    # Each link answers (the models with a key, when the server has keys).
    auth = {"Authorization": f"Bearer {KEY}"} if keys else {}
    for link in index["links"].values():
        assert client.get(link, headers=auth).status_code == 200, link
    assert ("Authorization: Bearer <key>" in index.get("authentication", "")) == bool(keys)
    icon = client.get("/favicon.ico")
    assert icon.status_code == 204 and icon.data == b""


def test_v1_checks_a_key_sent_to_it_without_refusing_the_request(redis_url):
    """The console signs in through it: a wrong key is a 200 that says so, not a 401."""
    admin = "admin-b-0123456789abcdef"
    client = create_app({"redis_url": redis_url, "api_keys": f"{KEY}=alpha",
                         "admin_keys": f"{admin}=ops"}).test_client()

    def check(key):
        resp = client.get("/v1", headers={"Authorization": f"Bearer {key}"} if key else {})
        assert resp.status_code == 200
        return resp.json.get("key")

    assert check(KEY) == {"valid": True, "tenant": "alpha", "admin": False}
    assert check(admin) == {"valid": True, "tenant": "ops", "admin": True}
    assert check("not-a-key-0123456789abcdef") == {"valid": False}
    assert check("") is None


# --- /docs offline ------------------------------------------------------------------------------

def test_the_docs_page_loads_nothing_from_elsewhere(redis_url):
    client = create_app({"redis_url": redis_url}).test_client()
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert not re.search(r"(https?:)?//", html), "the page names an external URL"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert {"docs/assets/swagger-ui.css", "docs/assets/swagger-ui-bundle.js"} <= set(assets)
    types = {".css": "text/css", ".js": "text/javascript", ".png": "image/png",
             ".json": "application/json"}
    for asset in assets:
        resp = client.get("/" + asset)  # relative to /docs
        assert resp.status_code == 200, asset
        assert resp.mimetype == types[asset[asset.rindex("."):]], asset
        assert len(resp.data) > 100, asset
    assert b"SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").data
    missing = client.get("/docs/assets/index.html")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"
