"""The worker's supervisor (worker/service.py) with real model processes and a real Redis: a model
process that dies is started again, and a stop lets each one finish the batches it holds. The
processes run worker/child.py with a stand-in for the model (tests/fake_model_process.py), so no
TensorFlow is loaded."""
import io
import json
import os
import signal

import pytest
from PIL import Image

from jobs import keys
from jobs.producer import Producer
from jobs.registry import live_workers
from jobs.settings import load_settings
from stack.processes import model_processes, wait_for
from tests import fake_model_process
from worker import child
from worker.service import InferenceService

STREAM = keys.stream("fake", 1)


def png(grey: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 12), (grey, grey, grey)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def start_service(redis_url, tmp_path, monkeypatch):
    """start_service(batch_s, **settings): a running supervisor serving model `fake` v1, whose
    batches take `batch_s`; stopped after the test."""
    monkeypatch.setattr(child, "main", fake_model_process.main)
    started = []

    def start(batch_s: float, **settings) -> InferenceService:
        (tmp_path / "fake" / "1").mkdir(parents=True)
        (tmp_path / "fake" / "config.json").write_text(json.dumps({
            "input": {"kind": "image", "size": [8, 8]}, "max_batch_size": 4}))
        (tmp_path / "fake" / "1" / "model.keras").write_text(json.dumps({"batch_s": batch_s}))
        settings = load_settings({}, redis_url=redis_url, model_repository=str(tmp_path),
                                 heartbeat_s=0.2, **settings)
        service = InferenceService(settings, models=["fake"])
        started.append(service)
        service.start()
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def producer(r):
    return Producer(r, result_ttl_s=60, max_backlog=1000, webhook_max_age_s=60)


def served(r) -> dict:
    """What the live workers' heartbeats say they serve: {(model, version): state}."""
    return {(m["name"], m["version"]): m["state"]
            for w in live_workers(r, 1.0) for m in w["models"]}


def available(r) -> bool:
    return served(r) == {("fake", 1): "available"}


def processes() -> list[int]:
    """The model processes of the supervisor in this process."""
    return model_processes(os.getpid())


def enqueue_many(producer, n: int) -> list[str]:
    return [producer.enqueue("fake", [png(i)], fallback_version="1")[0]["id"] for i in range(n)]


def statuses(producer, jobs) -> list[str]:
    return [producer.get(j)["status"] for j in jobs]


def held(r) -> int:
    """Inputs read from the stream and not yet finished."""
    return r.xpending(STREAM, keys.GROUP)["pending"]


def test_a_model_process_that_dies_is_started_again_and_serves_what_it_held(
        start_service, r, producer):
    start_service(batch_s=0.5, repository_poll_s=0.2, claim_idle_s=0.5)
    wait_for(lambda: available(r), 60, "the model to be served")
    [first] = processes()
    jobs = enqueue_many(producer, 8)
    wait_for(lambda: held(r) > 0, 30, "the model process to hold a batch")
    os.kill(first, signal.SIGKILL)  # as the kernel's OOM killer would
    wait_for(lambda: available(r) and processes() and processes() != [first], 60,
             "a new model process to serve")
    assert len(processes()) == 1
    # The new process takes over what the dead one held, and serves the rest.
    for job in jobs:
        assert producer.wait(job, timeout_s=30)["status"] == "succeeded"
    assert held(r) == 0


def test_stop_lets_each_model_process_finish_the_batches_it_holds(start_service, r, producer):
    service = start_service(batch_s=0.5)
    wait_for(lambda: available(r), 60, "the model to be served")
    jobs = enqueue_many(producer, 40)
    wait_for(lambda: held(r) > 0, 30, "the model process to hold a batch")
    service.stop()
    # What was read was finished; nothing is held or half done; the rest wait, queued.
    after = statuses(producer, jobs)
    assert set(after) == {"succeeded", "queued"}, after
    assert held(r) == 0
    assert processes() == []
    assert live_workers(r, 10) == []  # it no longer says it serves


def test_sigterm_to_a_model_process_finishes_its_batches_in_hand_then_it_exits(
        start_service, r, producer):
    # The repository is looked at once, at start: the process stopped here is not replaced
    # during the test.
    start_service(batch_s=0.5, repository_poll_s=600)
    wait_for(lambda: available(r), 60, "the model to be served")
    [pid] = processes()
    jobs = enqueue_many(producer, 40)
    wait_for(lambda: held(r) > 0, 30, "the model process to hold a batch")
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not processes(), 30, "the model process to exit")
    after = statuses(producer, jobs)
    assert set(after) == {"succeeded", "queued"}, after
    assert held(r) == 0
