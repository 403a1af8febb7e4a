"""GET /metrics: the Prometheus text a scraper reads, against a real redis-server (no worker:
the test finishes inputs as a worker does, through the job store)."""
import io
import re

import pytest

from api.app import create_app
from jobs.consumer import Consumer, InputResult
from jobs.registry import heartbeat
from jobs.stream import StreamConsumer
from tests.test_api import make_repo, png_bytes

SAMPLE = re.compile(r'^([a-z_]+)(?:\{((?:[a-z_]+="[^"\\]*",?)*)\})? (\d+)$')


def parse(text: str) -> dict:
    """{(name, ((label, value), ...)): value}; every line is a HELP, a TYPE or a sample."""
    samples, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("# HELP "):
            continue
        name, labels, value = SAMPLE.match(line).groups()
        assert name in typed  # each sample follows its family's TYPE
        pairs = tuple(re.findall(r'([a-z_]+)="([^"]*)"', labels or ""))
        samples[(name, pairs)] = int(value)
    return samples


def scrape(client) -> dict:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(resp.get_data(as_text=True))


@pytest.fixture
def app(redis_url, tmp_path):
    repo = make_repo(tmp_path)
    return create_app({"redis_url": redis_url, "model_repository": str(repo), "max_backlog": 4})


def submit(client, n=1):
    return client.post("/v1/models/shapes/jobs", content_type="multipart/form-data",
                       data={"image": [(io.BytesIO(png_bytes()), "x.png") for _ in range(n)]})


def test_metrics_count_jobs_inputs_and_batches_and_show_the_backlog(app, r):
    client = app.test_client()
    heartbeat(r, "w1", {"name": "w1", "models": [{"name": "shapes", "version": 1,
                                                  "state": "available"}]}, ttl_s=30)
    jobs = [submit(client, n).get_json() for n in (2, 1, 1)]
    assert submit(client, 1).status_code == 503  # 4 inputs queued: the backlog is full
    before = scrape(client)
    assert before[("inferq_jobs_submitted_total", (("model", "shapes"), ("version", "1")))] == 3
    assert before[("inferq_jobs_refused_total",
                   (("model", "shapes"), ("reason", "backlog_full")))] == 1
    assert before[("inferq_backlog_inputs", (("model", "shapes"), ("version", "1")))] == 4
    assert before[("inferq_version_available", (("model", "shapes"), ("version", "1")))] == 1
    assert before[("inferq_workers", ())] == 1

    # A worker runs the first three inputs as one batch: one fails; the third job is canceled.
    consumer = StreamConsumer(r, "shapes", 1, "w1")
    consumer.ensure_group()
    a0, a1, b0, _ = consumer.read(10)
    ok = {"top_k": [], "metrics": {}}
    Consumer(r, 60, 60).finish("shapes", 1, [
        InputResult(a0.id, a0.job_id, 0, output=ok), InputResult(a1.id, a1.job_id, 1, output=ok),
        InputResult(b0.id, b0.job_id, 0, error="cannot decode image")], batch=3)
    assert client.post(f"/v1/jobs/{jobs[2]['id']}/cancel").status_code == 200

    after = scrape(client)
    shapes_v1 = (("model", "shapes"), ("version", "1"))
    assert after[("inferq_batches_total", shapes_v1)] == 1
    assert after[("inferq_batched_inputs_total", shapes_v1)] == 3
    assert after[("inferq_inputs_total", shapes_v1 + (("outcome", "succeeded"),))] == 2
    assert after[("inferq_inputs_total", shapes_v1 + (("outcome", "failed"),))] == 1
    for status in ("succeeded", "failed", "canceled"):
        assert after[("inferq_jobs_finished_total",
                      (("model", "shapes"), ("status", status)))] == 1
    assert after[("inferq_backlog_inputs", shapes_v1)] == 1  # the canceled job's entry


def test_metrics_answer_before_anything_happened(app):
    samples = scrape(app.test_client())
    assert samples[("inferq_workers", ())] == 0
    assert samples[("inferq_version_available", (("model", "shapes"), ("version", "1")))] == 0
    assert not any(name.endswith("_total") for name, _ in samples)


def test_metrics_need_a_key_when_the_api_has_keys(redis_url, tmp_path):
    app = create_app({"redis_url": redis_url, "model_repository": str(make_repo(tmp_path)),
                      "api_keys": "secret-key-0123456789=alpha"})
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    resp = client.get("/metrics", headers={"Authorization": "Bearer secret-key-0123456789"})
    assert resp.status_code == 200 and b"inferq_workers" in resp.data

