"""Submit options against a real redis-server: webhook checks, Prefer: wait, Idempotency-Key."""
import io
import socket

import pytest

from api.app import create_app
from jobs import keys
from tests.test_api import make_repo, png_bytes

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def make_client(redis_url, repo, allow=""):
    make_repo(repo)
    app = create_app({"redis_url": redis_url, "model_repository": str(repo),
                      "webhook_secret": SECRET, "webhook_allow_networks": allow})
    return app.test_client()


@pytest.fixture
def client(redis_url, tmp_path):
    """Loopback allowed, as for the tests' own receiver."""
    return make_client(redis_url, tmp_path, allow="127.0.0.1/32")


def submit(client, webhook=None, events=None, headers=None, image=None):
    data = {"image": (io.BytesIO(image or png_bytes()), "a.png")}
    if webhook is not None:
        data["webhook"] = webhook
    if events is not None:
        data["webhook_events_filter"] = events
    return client.post("/v1/models/shapes/jobs", data=data, headers=headers or {},
                       content_type="multipart/form-data")


@pytest.fixture
def private_dns(monkeypatch):
    """A name that resolves to a private address (the stubbed resolver)."""
    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):
        if host == "internal.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 80))]
        return real(host, *args, **kwargs)
    monkeypatch.setattr(socket, "getaddrinfo", fake)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://localhost/", "http://[::1]/", "http://0.0.0.0/",
    "http://10.0.0.1/", "http://172.16.0.1/", "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/", "http://metadata.google.internal/",
    "http://[::ffff:127.0.0.1]/", "http://2130706433/", "http://0177.0.0.1/",
    "http://internal.example.com/hook", "ftp://example.com/", "file:///etc/passwd",
    "javascript:alert(1)",
])
def test_unsafe_webhook_urls_are_refused_at_submit(redis_url, tmp_path, r, private_dns, url):
    client = make_client(redis_url, tmp_path)  # the default: no private network allowed
    resp = submit(client, webhook=url)
    assert resp.status_code == 400, url
    assert resp.get_json()["error"]["code"] == "invalid_webhook"
    assert r.keys(keys.job("*")) == []


def test_allowed_networks_open_only_what_they_name(client):
    assert submit(client, webhook="http://127.0.0.1:9/hook").status_code == 202
    for url in ("http://127.0.0.2/", "http://10.0.0.1/", "http://[::1]/"):
        assert submit(client, webhook=url).status_code == 400, url


def test_webhook_options_are_validated(client):
    assert submit(client, webhook="http://127.0.0.1:9/hook").status_code == 202
    bad = submit(client, webhook="http://127.0.0.1:9/hook", events="finished")
    assert bad.status_code == 400 and "webhook_events_filter" in bad.get_json()["error"]["message"]
    assert submit(client, events="completed").status_code == 400  # a filter with no webhook


def test_no_webhooks_without_a_secret(redis_url, tmp_path):
    make_repo(tmp_path)
    app = create_app({"redis_url": redis_url, "model_repository": str(tmp_path)})
    resp = submit(app.test_client(), webhook="https://example.com/hook")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "webhooks_disabled"


def test_prefer_wait_on_a_job_that_does_not_finish_answers_202(client):
    resp = submit(client, headers={"Prefer": "respond-async, wait=0.3"})
    assert resp.status_code == 202
    assert resp.headers["Preference-Applied"] == "wait=0.3"
    assert resp.get_json()["status"] == "queued"


def test_prefer_wait_that_is_not_seconds_is_400_and_makes_no_job(client, r):
    for prefer in ("wait=abc", "respond-async, wait=abc", "wait=", "wait", "wait=-1",
                   "wait=nan", "handling=lenient; wait=1e999"):
        resp = submit(client, headers={"Prefer": prefer})
        assert resp.status_code == 400, prefer
        error = resp.get_json()["error"]
        assert error["code"] == "invalid_wait" and "Prefer: wait" in error["message"], prefer
        assert "Preference-Applied" not in resp.headers
    assert r.keys(keys.job("*")) == []


def test_prefer_without_wait_is_ignored(client):
    for prefer in ("respond-async", "return=minimal", "waiting=abc", ""):
        resp = submit(client, headers={"Prefer": prefer})
        assert resp.status_code == 202, prefer
        assert "Preference-Applied" not in resp.headers
    resp = submit(client, headers={"Prefer": "respond-async, WAIT = 0.2"})
    assert resp.status_code == 202 and resp.headers["Preference-Applied"] == "wait=0.2"


def test_same_idempotency_key_and_request_returns_the_original_job(client, r):
    first = submit(client, headers={"Idempotency-Key": "order-17"})
    again = submit(client, headers={"Idempotency-Key": "order-17"})
    assert first.status_code == 202 and again.status_code == 202
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert r.xlen(keys.stream("shapes", 1)) == 1  # no second job
    assert len(r.keys(keys.job("*"))) == 1
    [key] = r.keys(keys.idempotency("*"))
    assert 0 < r.ttl(key) <= 24 * 3600


def test_same_key_with_another_multipart_boundary_is_the_same_request(client):
    image = png_bytes()
    bodies = []
    for boundary in ("AaB03x", "zzQQ9911"):
        bodies.append((f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
                       f"filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n").encode()
                      + image + f"\r\n--{boundary}--\r\n".encode())
    ids = []
    for boundary, body in zip(("AaB03x", "zzQQ9911"), bodies):
        resp = client.post("/v1/models/shapes/jobs", data=body, headers={
            "Idempotency-Key": "k-boundary",
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert resp.status_code == 202, resp.get_data(as_text=True)
        ids.append(resp.get_json()["id"])
    assert ids[0] == ids[1]


def test_same_key_with_a_different_request_is_422(client, r):
    first = submit(client, headers={"Idempotency-Key": "k1"})
    other = submit(client, headers={"Idempotency-Key": "k1"}, image=png_bytes(color=(1, 2, 3)))
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
    assert first.get_json()["id"] in other.get_json()["error"]["message"]
    assert r.xlen(keys.stream("shapes", 1)) == 1
    # Another webhook makes it a different request too.
    assert submit(client, webhook="http://127.0.0.1:9/x",
                  headers={"Idempotency-Key": "k1"}).status_code == 422


def test_deliveries_of_an_unknown_job_are_404(client):
    assert client.get("/v1/jobs/" + "x" * 22 + "/deliveries").status_code == 404
    job = submit(client).get_json()
    resp = client.get(job["urls"]["get"] + "/deliveries")
    assert resp.status_code == 200 and resp.get_json() == {"deliveries": []}


def test_json_submit_takes_webhook_options(client, r):
    import base64
    resp = client.post("/v1/models/shapes/jobs", json={
        "images": [{"b64": base64.b64encode(png_bytes()).decode()}],
        "webhook": "http://127.0.0.1:9/hook", "webhook_events_filter": ["started", "completed"]})
    assert resp.status_code == 202
    record = r.hgetall(keys.job(resp.get_json()["id"]))
    assert record[b"webhook"] == b"http://127.0.0.1:9/hook"
    assert record[b"webhook_events"] == b"completed,started"
    bad = client.post("/v1/models/shapes/jobs", json={
        "images": [{"b64": base64.b64encode(png_bytes()).decode()}],
        "webhook": "http://127.0.0.1:9/hook", "webhook_events_filter": "completed"})
    assert bad.status_code == 400
