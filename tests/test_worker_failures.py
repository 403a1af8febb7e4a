"""Workers that crash, inputs that make the model raise, and a clean stop: no job is lost, none
finishes twice, and the worker keeps serving."""
import io
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests
from PIL import Image

from jobs import keys
from jobs.registry import live_workers
from stack.processes import ROOT, wait_for

CLAIM_IDLE_S = 3


def png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 12), color).save(buf, "PNG")
    return buf.getvalue()


GOOD, POISON = png((40, 80, 120)), png((255, 255, 255))


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    """A repository with the tests' poison model (built in a subprocess: no TF here)."""
    repo = tmp_path_factory.mktemp("repo")
    subprocess.run([sys.executable, "-m", "tests.poison_model", str(repo)], cwd=ROOT, check=True,
                   capture_output=True, timeout=120)
    return repo


@pytest.fixture
def stack(stack_factory, repository):
    """Redis and the API; each test starts the workers it needs."""
    return stack_factory(models=None, repository=repository, claim_idle_s=CLAIM_IDLE_S)


def submit_many(base, images, threads=8) -> list[dict]:
    def one(data):
        resp = requests.post(f"{base}/v1/models/poison/jobs",
                             files=[("image", ("x.png", data))], timeout=30)
        assert resp.status_code == 202, resp.text
        return resp.json()
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, images))


class FinishCounter:
    """Counts the finish signals per job, to show each job finishes exactly once."""

    def __init__(self, client):
        self.client = client
        self.counts: dict[str, int] = {}
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(**{keys.finished("*"): self.add})
        self.thread = self.pubsub.run_in_thread(sleep_time=0.01, daemon=True)

    def add(self, message):
        job_id = message["channel"].decode().rsplit(":", 1)[1]
        self.counts[job_id] = self.counts.get(job_id, 0) + 1

    def flush(self):
        """Wait until every finish signal published so far has been counted: Redis delivers a
        subscriber's messages in the order they were published, so once a marker published
        now arrives, so has everything before it."""
        marker = f"marker-{uuid.uuid4().hex}"
        self.client.publish(keys.finished(marker), b"marker")
        wait_for(lambda: marker in self.counts, 10, "the finish signals to arrive")
        del self.counts[marker]

    def stop(self):
        self.thread.stop()


def test_kill_9_while_holding_a_batch_loses_no_job(stack):
    client = stack.client
    counter = FinishCounter(client)
    try:
        jobs = submit_many(stack.base, [GOOD] * 1500)
        worker = stack.start_worker(["poison"], wait_ready=False)

        def holding_a_batch():
            if not worker.alive():
                raise RuntimeError("worker exited:\n" + worker.output()[-3000:])
            try:
                return client.xpending(keys.stream("poison", 1), keys.GROUP)["pending"] > 0
            except redis.ResponseError:  # NOGROUP: the worker has not made its group yet
                return False

        # Watched from the worker's start: it begins reading the moment its model is warm, and
        # a small model drains 1,500 jobs in about a second.
        wait_for(holding_a_batch, 120, "the worker to hold a batch", interval_s=0.001)
        worker.kill9()
        held = client.xpending(keys.stream("poison", 1), keys.GROUP)["pending"]
        assert held > 0  # the dead worker took entries with it that nobody acked
        assert not worker.alive()

        stack.start_worker(["poison"])  # the replacement
        deadline = time.monotonic() + CLAIM_IDLE_S + 15
        for job in jobs:
            left = max(0.1, deadline - time.monotonic())
            resp = requests.get(job["urls"]["get"], params={"wait": left},
                                timeout=left + 10).json()
            assert resp["status"] == "succeeded", resp
        # Nothing is left to finish anything again; then count every signal published.
        assert client.xlen(keys.stream("poison", 1)) == 0
        assert client.xpending(keys.stream("poison", 1), keys.GROUP)["pending"] == 0
        counter.flush()
    finally:
        counter.stop()
    assert set(counter.counts) == {j["id"] for j in jobs}
    assert set(counter.counts.values()) == {1}  # every job finished exactly once
    assert client.xlen(keys.stream("poison", 1)) == 0
    assert client.xpending(keys.stream("poison", 1), keys.GROUP)["pending"] == 0


def test_poison_input_fails_after_max_attempts_while_others_complete(stack):
    worker = stack.start_worker(["poison"], max_attempts=2)
    images = [GOOD] * 10 + [POISON] + [GOOD] * 10
    jobs = submit_many(stack.base, images, threads=4)
    results = {}
    for job in jobs:
        results[job["id"]] = requests.get(job["urls"]["get"], params={"wait": 30},
                                          timeout=40).json()
    poison = [results[j["id"]] for j, data in zip(jobs, images) if data is POISON][0]
    assert poison["status"] == "failed"
    assert "poison input: a white pixel" in poison["error"]
    assert "failed 2 attempts" in poison["error"]
    assert poison["outputs"][0]["status"] == "failed"
    others = [results[j["id"]]["status"] for j, data in zip(jobs, images) if data is GOOD]
    assert others == ["succeeded"] * 20
    # The worker is still serving.
    assert worker.alive()
    later = submit_many(stack.base, [GOOD] * 3)
    for job in later:
        assert requests.get(job["urls"]["get"], params={"wait": 30},
                            timeout=40).json()["status"] == "succeeded"


def test_sigterm_finishes_the_batch_in_hand_and_exits(stack):
    client = stack.client
    worker = stack.start_worker(["poison"], gpu=0)
    # --gpu pins the device before TensorFlow loads (no GPU here: it serves on the CPU).
    [info] = live_workers(client, 10)
    assert info["gpu"] == "0" and info["cuda_visible_devices"] == "0"
    assert info["models"][0]["device"] == "CPU"
    jobs = submit_many(stack.base, [GOOD] * 300)
    wait_for(lambda: client.xlen(keys.stream("poison", 1)) < 300, 30, "the worker to start work")
    worker.signal(signal.SIGTERM)
    worker.proc.wait(30)
    assert worker.proc.returncode == 0, worker.output()[-3000:]
    # Nothing is left held by the stopped worker, nor half-done.
    assert client.xpending(keys.stream("poison", 1), keys.GROUP)["pending"] == 0
    statuses = [client.hget(keys.job(j["id"]), "status").decode() for j in jobs]
    assert set(statuses) <= {"succeeded", "queued"} and "succeeded" in statuses
    assert live_workers(client, 10) == []
    # What it left queued, the next worker serves.
    stack.start_worker(["poison"])
    for job in jobs:
        assert requests.get(job["urls"]["get"], params={"wait": 30},
                            timeout=40).json()["status"] == "succeeded"


def test_inputs_bytes_are_deleted_once_served_and_a_missing_one_fails_its_job(stack):
    client = stack.client
    jobs = submit_many(stack.base, [GOOD] * 4)
    # One job's bytes are gone before a worker reads it (as when Redis evicted the key).
    client.delete(keys.job_input(jobs[0]["id"], 0))
    stack.start_worker(["poison"])
    results = [requests.get(job["urls"]["get"], params={"wait": 30}, timeout=40).json()
               for job in jobs]
    assert results[0]["status"] == "failed" and "bytes are gone" in results[0]["error"]
    assert [r["status"] for r in results[1:]] == ["succeeded"] * 3
    assert client.keys(keys.job_input("*", "*")) == []
