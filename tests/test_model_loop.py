"""The model loop (worker/loop.py) on a real Redis stream, with a stand-in for the model: how
batches are assembled, an input that fails alone, a model that raises, a stop. No TensorFlow."""
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

from jobs import keys
from jobs.producer import Producer
from jobs.record import job_json
from jobs.repository import ModelSpec
from jobs.settings import load_settings
from jobs.stream import StreamConsumer
from stack.processes import wait_for
from worker.loop import ModelLoop

STREAM = keys.stream("m", 1)


class FakeModel:
    """What ModelLoop uses of a worker.predictor.Predictor. Its output for an image is the
    image's mean pixel value; it raises on any batch holding a pure white pixel. With `gate`,
    each batch waits for it to be set."""

    def __init__(self, max_batch_size: int, gate: threading.Event | None = None):
        self.spec = ModelSpec(name="m", version=1, path="unused", size=(8, 8),
                              max_batch_size=max_batch_size)
        self.batches: list[int] = []  # the size of each batch it was given
        self.running = threading.Event()
        self.gate = gate

    def predict(self, images):
        self.batches.append(len(images))
        self.running.set()
        if self.gate is not None:
            self.gate.wait(30)
        assert all(im.shape == (8, 8, 3) and im.dtype == np.uint8 for im in images)
        if any(im.max() == 255 for im in images):
            raise ValueError("poison input: a white pixel")
        return [np.array([im.mean()]) for im in images]

    def result(self, row):
        return {"top_k": [{"label": "mean", "index": 0, "score": float(row[0])}]}

    @staticmethod
    def raw(row):
        return row.tolist()


def png(grey: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 12), (grey, grey, grey)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def producer(r):
    return Producer(r, result_ttl_s=60, max_backlog=1000, webhook_max_age_s=60)


@contextmanager
def running(r, model, **settings):
    """A ModelLoop serving `model` from the stream, stopped on the way out."""
    pool = ThreadPoolExecutor(2)
    loop = ModelLoop(model, r, "test-loop", load_settings({}, decode_threads=2, **settings), pool)
    loop.start()
    try:
        yield loop
    finally:
        loop.stop(timeout_s=30)
        pool.shutdown()


def enqueue(producer, *inputs: bytes, **options) -> str:
    return producer.enqueue("m", list(inputs), fallback_version="1", **options)[0]["id"]


def finished(producer, job_id: str) -> dict:
    record = producer.wait(job_id, timeout_s=20)
    assert record["status"] in ("succeeded", "failed", "canceled"), record
    return job_json(record, "http://test")


def scores(job: dict) -> list[float]:
    return [o["top_k"][0]["score"] for o in job["outputs"]]


def test_a_queued_backlog_runs_in_full_batches_each_output_to_its_own_input(r, producer):
    jobs = [enqueue(producer, png(10 * i)) for i in range(7)]
    several = enqueue(producer, png(200), png(210))  # one job, two inputs, in order
    raw = enqueue(producer, png(220), fields={"output": "raw"})  # the protocols' form
    model = FakeModel(max_batch_size=4)
    with running(r, model):
        results = [finished(producer, j) for j in jobs]
        several, raw = finished(producer, several), finished(producer, raw)
    assert model.batches == [4, 4, 2]
    assert [j["status"] for j in results] == ["succeeded"] * 7
    assert [scores(j) for j in results] == [[10.0 * i] for i in range(7)]
    assert [j["metrics"]["batch_size"] for j in results] == [4] * 7
    assert several["status"] == "succeeded" and scores(several) == [200.0, 210.0]
    assert [o["index"] for o in several["outputs"]] == [0, 1]
    assert raw["outputs"][0]["output"] == [220.0]
    assert r.xlen(STREAM) == 0 and r.keys(keys.job_input("*", "*")) == []


def test_a_partial_batch_waits_max_wait_s_for_more_inputs(r, producer):
    model = FakeModel(max_batch_size=3)
    first = enqueue(producer, png(1))
    with running(r, model, max_wait_s=5.0):
        # Once the loop holds the first input, two more arrive within max_wait_s...
        wait_for(lambda: r.xpending(STREAM, keys.GROUP)["pending"] == 1, 10,
                 "the loop to read the first input")
        later = [enqueue(producer, png(2)), enqueue(producer, png(3))]
        jobs = [finished(producer, j) for j in [first, *later]]
    # ...and run with it, in one batch (full, so it does not wait out the 5 s).
    assert model.batches == [3]
    assert [scores(j) for j in jobs] == [[1.0], [2.0], [3.0]]


def test_an_undecodable_input_or_one_whose_bytes_are_gone_fails_alone(r, producer):
    jobs = [enqueue(producer, png(10)), enqueue(producer, b"\x89PNG\r\n\x1a\n not really a png"),
            enqueue(producer, png(20)), enqueue(producer, png(30)), enqueue(producer, png(40))]
    r.delete(keys.job_input(jobs[3], 0))  # gone, as when its job expired
    model = FakeModel(max_batch_size=5)
    with running(r, model):
        results = [finished(producer, j) for j in jobs]
    assert [j["status"] for j in results] == ["succeeded", "failed", "succeeded", "failed",
                                              "succeeded"]
    assert "cannot decode image" in results[1]["error"]
    assert "bytes are gone" in results[3]["error"]
    # Their batch-mates ran together, as one batch.
    assert model.batches == [3]
    assert [scores(results[i]) for i in (0, 2, 4)] == [[10.0], [20.0], [40.0]]


def test_inputs_of_a_canceled_job_are_dropped_not_run(r, producer):
    canceled, kept = enqueue(producer, png(5), png(6)), enqueue(producer, png(7))
    assert producer.cancel(canceled) == 1
    model = FakeModel(max_batch_size=4)
    with running(r, model):
        assert scores(finished(producer, kept)) == [7.0]
    assert model.batches == [1]
    assert producer.get(canceled)["status"] == "canceled"
    assert r.xlen(STREAM) == 0 and r.keys(keys.job_input("*", "*")) == []


def test_a_model_that_raises_runs_the_batch_one_by_one_and_fails_only_its_input(r, producer):
    good, poison, other = enqueue(producer, png(10)), enqueue(producer, png(255)), \
        enqueue(producer, png(20))
    model = FakeModel(max_batch_size=3)
    with running(r, model, max_attempts=2, claim_idle_s=0.3):
        results = [finished(producer, j) for j in (good, poison, other)]
        # The loop keeps serving.
        assert scores(finished(producer, enqueue(producer, png(30)))) == [30.0]
    assert [j["status"] for j in results] == ["succeeded", "failed", "succeeded"]
    assert scores(results[0]) == [10.0] and scores(results[2]) == [20.0]
    assert [j["metrics"]["batch_size"] for j in (results[0], results[2])] == [1, 1]
    # The batch raised; each input ran alone; the poison one was tried again after
    # claim_idle_s, and failed for good at its second attempt.
    assert model.batches == [3, 1, 1, 1, 1, 1]
    assert results[1]["error"] == ("model m raised ValueError: poison input: a white pixel "
                                   "(failed 2 attempts)")


def test_an_input_delivered_more_than_max_attempts_fails_without_reaching_the_model(
        r, producer):
    job = enqueue(producer, png(10))
    crashed = StreamConsumer(r, "m", 1, "crashed-worker")
    crashed.ensure_group()
    assert len(crashed.read(1)) == 1  # read, never acked: its worker died holding it
    model = FakeModel(max_batch_size=4)
    with running(r, model, max_attempts=1, claim_idle_s=0.2):
        result = finished(producer, job)
    assert result["status"] == "failed"
    assert "delivered 2 times without finishing (max_attempts=1)" in result["error"]
    assert model.batches == []
    assert r.xlen(STREAM) == 0


def test_stop_finishes_the_batches_in_hand_and_leaves_the_rest_queued(r, producer):
    jobs = [enqueue(producer, png(i)) for i in range(20)]
    gate = threading.Event()
    model = FakeModel(max_batch_size=4, gate=gate)
    with running(r, model) as loop:
        # The model runs one batch; the loop has read the next one meanwhile.
        wait_for(lambda: model.running.is_set()
                 and r.xpending(STREAM, keys.GROUP)["pending"] == 8, 10,
                 "the model to run a batch and the loop to read the next")
        at_stop = {}

        def stop():
            loop.stop(timeout_s=30)
            at_stop.update({j: producer.get(j)["status"] for j in jobs})

        stopper = threading.Thread(target=stop)
        stopper.start()
        wait_for(loop.stopping.is_set, 10, "the stop to begin")
        gate.set()  # the batch in hand may finish now
        stopper.join(30)
    statuses = [at_stop[j] for j in jobs]
    # When stop returned, what it had read had finished: the batch the model ran, and the one
    # read ahead while it ran. Nothing is held, nothing half done; the rest wait for a worker.
    assert statuses == ["succeeded"] * 8 + ["queued"] * 12
    assert model.batches == [4, 4]
    assert r.xpending(STREAM, keys.GROUP)["pending"] == 0
    assert r.xlen(STREAM) == 12
