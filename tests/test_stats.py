"""GET /v1/stats and /v1/workers: live figures over the last minute, from a real worker that
finished real jobs (Redis, the API under gunicorn, a worker serving `shapes`)."""
import time

import pytest
import requests

from api.app import create_app
from jobs import keys, live
from tests.test_api import png_bytes

KEY = "stats-key-0123456789abcdef"
ADMIN = "stats-admin-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
AUTH_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture(scope="module")
def stack(module_stack_factory):
    return module_stack_factory(models=["shapes"], api_keys=f"{KEY}=alpha",
                                admin_keys=f"{ADMIN}=ops")


def run_job(stack, n_inputs: int = 1) -> dict:
    files = [("image", (f"{i}.png", png_bytes(), "image/png")) for i in range(n_inputs)]
    resp = requests.post(f"{stack.base}/v1/models/shapes/jobs", files=files,
                         headers={**AUTH, "Prefer": "wait=30"}, timeout=40)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "succeeded"
    return resp.json()


def latency_ms(stack, job: dict) -> float:
    """From the record as stored (the JSON's times are cut to milliseconds)."""
    created, completed = stack.client.hmget(keys.job(job["id"]), "created_at", "completed_at")
    return (float(completed) - float(created)) * 1000


def shapes_stats(stack) -> dict:
    resp = requests.get(f"{stack.base}/v1/stats", headers=AUTH, timeout=5)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["window_s"] == 60
    [row] = [m for m in body["models"] if m["model"] == "shapes" and m["version"] == 1]
    return row


def test_a_job_through_a_real_worker_shows_in_stats(stack):
    before = shapes_stats(stack)
    assert before["workers"] == 1 and before["backlog"] == 0
    assert before["jobs_per_s"] == 0 and before["p50_ms"] is None and before["p99_ms"] is None
    job = run_job(stack, n_inputs=3)
    row = shapes_stats(stack)
    assert set(row) == {"model", "version", "backlog", "workers", "jobs_per_s", "inputs_per_s",
                        "p50_ms", "p99_ms"}
    # One job of three inputs in a window of 50 to 60 seconds.
    assert 1 / 60 <= row["jobs_per_s"] <= 1 / 50 + 0.001
    assert 3 / 60 <= row["inputs_per_s"] <= 3 / 50 + 0.001
    # The only job finished: both quantiles are its latency, to within a bucket (9%).
    true_ms = max(latency_ms(stack, job), 1.0)
    assert row["p50_ms"] == row["p99_ms"]
    assert abs(row["p50_ms"] / true_ms - 1) < 0.1, (row, true_ms)
    assert row["backlog"] == 0 and row["workers"] == 1


def test_the_worker_shows_its_batches(stack):
    run_job(stack, n_inputs=2)
    resp = requests.get(f"{stack.base}/v1/workers", headers=AUTH_ADMIN, timeout=5)
    assert resp.status_code == 200, resp.text
    [worker] = resp.json()["workers"]
    assert worker["name"].split(":")[1] == str(stack.worker.pid)
    assert worker["host"] and worker["gpu"] is None
    assert {"model": "shapes", "version": 1, "state": "available"} in worker["models"]
    assert 0 <= worker["heartbeat_age_s"] < 10
    assert worker["batches_per_s"] > 0
    assert 1 <= worker["mean_batch_size"] <= 3


def test_a_tenant_key_gets_403_on_workers(stack):
    resp = requests.get(f"{stack.base}/v1/workers", headers=AUTH, timeout=5)
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "admin_required"
    assert requests.get(f"{stack.base}/v1/workers", timeout=5).status_code == 401
    assert requests.get(f"{stack.base}/v1/stats", timeout=5).status_code == 401


def test_an_open_api_lists_workers_to_anyone(redis_url):
    client = create_app({"redis_url": redis_url}).test_client()
    resp = client.get("/v1/workers")
    assert resp.status_code == 200 and resp.json == {"workers": []}


def test_only_the_last_minute_counts(redis_url, r):
    """A slot older than the window is not read, and every slot expires."""
    from jobs.consumer import Consumer, InputResult
    from jobs.producer import Producer
    from jobs.stream import StreamConsumer

    producer = Producer(r, 60, 1000, 60)
    job, _ = producer.enqueue("m", [b"x"], version="1")
    stream = StreamConsumer(r, "m", 1, "w/m:v1")
    stream.ensure_group()
    [entry] = stream.read(1)
    Consumer(r, 60, 60, worker="w").finish("m", 1, [InputResult(entry.id, job["id"], 0,
                                                                 output={"top_k": []})], 1)
    [slot_key] = r.keys(keys.live_slot("*"))
    assert 0 < r.ttl(slot_key) <= live.SLOT_TTL_S
    now = time.time()
    assert live.read(r, now).counts[("jobs", "m", "1")] == 1
    assert live.read(r, now).counts[("batches", "w")] == 1
    assert live.read(r, now + live.WINDOW_S + live.SLOT_S).counts == {}
