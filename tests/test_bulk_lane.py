"""The worker's bulk lane: ModelLoop serving bulk batch inputs beside jobs, against a real
redis-server, with a stand-in for the model (no TensorFlow). Bulk inputs are written as the
feeder writes them; what the tests read is what the feeder and the API read: result lines,
job records, the streams and the input keys."""
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from jobs import keys
from jobs.batch import CANCELLED, CANCELLING, IN_PROGRESS, Batches, new_batch_id
from jobs.consumer import BulkResult, Consumer
from jobs.producer import Producer
from jobs.record import job_json
from jobs.repository import ModelSpec
from jobs.settings import Settings
from jobs.stream import StreamConsumer
from stack.processes import wait_for
from worker.loop import ModelLoop

SPEC = ModelSpec(name="m", version=1, path="unused", kind="image", size=(8, 8),
                 labels=("red", "rest"), top_k=2, max_batch_size=8)
BULK = keys.bulk_stream("m", 1)


def png(value: int) -> bytes:
    """An 8x8 picture whose red level is `value`: the stand-in model reads it back."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (value, 0, 0)).save(buf, "PNG")
    return buf.getvalue()


class Model:
    """A stand-in for worker.predictor.Predictor: what ModelLoop calls, with the red level of
    each input it ran, batch by batch. `gate` (an Event) holds the first run until set;
    `raises_on`: red levels it raises on."""

    def __init__(self, gate=None, raises_on=()):
        self.spec, self.gate, self.raises_on = SPEC, gate, set(raises_on)
        self.batches = []

    def predict(self, images):
        reds = [int(im[0, 0, 0]) for im in images]
        self.batches.append(reds)
        if self.gate is not None and len(self.batches) == 1:
            self.gate.wait(30)
        if self.raises_on & set(reds):
            raise RuntimeError("cannot run this input")
        return [row(red) for red in reds]

    def result(self, r):
        order = np.argsort(-r, kind="stable")
        return {"top_k": [{"label": SPEC.labels[i], "index": int(i), "score": float(r[i])}
                          for i in order]}

    @staticmethod
    def raw(r):
        return r.tolist()


def row(red: int) -> np.ndarray:
    return np.array([red / 255.0, 0.5], dtype=np.float32)


def top_k(red: int) -> list:
    return Model().result(row(red))["top_k"]


def settings(**overrides) -> Settings:
    return Settings(**{"max_wait_s": 0.0, "decode_threads": 2, "claim_idle_s": 30.0,
                       "max_attempts": 3, "result_ttl_s": 60, **overrides})


@pytest.fixture
def serve(r):
    """serve(model, **settings): a running ModelLoop, stopped after the test."""
    pool = ThreadPoolExecutor(2)
    loops = []

    def start(model, **overrides):
        loop = ModelLoop(model, r, "w1", settings(**overrides), pool)
        loop.start()
        loops.append(loop)
        return loop
    yield start
    for loop in loops:
        loop.stop()
    pool.shutdown()


def new_batch(r, status=IN_PROGRESS) -> str:
    batches = Batches(r, ttl_s=3600, delivery_ttl_s=3600)
    batch_id = new_batch_id()
    batches.create(batch_id, "t1", 100, {"model": "m", "version": "1"})
    batches.set_status(batch_id, status)
    return batch_id


def feed(r, batch_id: str, inputs: dict):
    """What the feeder does: each input's bytes, then its entry on the bulk lane. `inputs`:
    index -> (custom_id, bytes, or None for bytes that are gone)."""
    for idx, (cid, data) in inputs.items():
        if data is not None:
            r.set(keys.batch_input(batch_id, idx), data)
        r.xadd(BULK, {"batch": batch_id, "idx": idx, "cid": cid, "t": repr(time.time())})


def lines(r, batch_id: str) -> list[dict]:
    return [json.loads(x) for x in r.lrange(keys.batch_results(batch_id), 0, -1)]


def wait_lines(r, batch_id: str, n: int) -> list[dict]:
    wait_for(lambda: r.llen(keys.batch_results(batch_id)) >= n, 10, f"{n} result lines")
    return lines(r, batch_id)


def pending(r, stream: str) -> int:
    return r.xpending(stream, keys.GROUP)["pending"]


def producer(r) -> Producer:
    return Producer(r, result_ttl_s=60, max_backlog=1000, webhook_max_age_s=60)


def finished_job(r, job_id: str) -> dict:
    p = producer(r)
    wait_for(lambda: p.get(job_id)["status"] in ("succeeded", "failed"), 10, "the job")
    return job_json(p.get(job_id), "http://x")


def test_each_bulk_input_gets_exactly_one_result_line(r, serve):
    batch_id = new_batch(r)
    inputs = {i: (f"photos/{i}.png", png(10 * i)) for i in range(20)}
    feed(r, batch_id, inputs)
    serve(Model())
    got = wait_lines(r, batch_id, 20)
    assert sorted(got, key=lambda x: x["index"]) == [
        {"custom_id": f"photos/{i}.png", "index": i, "outputs": top_k(10 * i),
         "model_version": 1} for i in range(20)]
    wait_for(lambda: pending(r, BULK) == 0, 5, "the entries acked")
    assert r.xlen(BULK) == 0
    assert r.keys(keys.batch_input(batch_id, "*")) == []
    assert r.llen(keys.batch_results(batch_id)) == 20  # acked: no input can get another line


def test_a_job_goes_ahead_of_the_bulk_inputs_read_before_it(r, serve):
    batch_id = new_batch(r)
    feed(r, batch_id, {i: (str(i), png(i)) for i in range(40)})
    gate = threading.Event()
    model = Model(gate=gate)
    serve(model)
    # The first batch runs (held), the second is read and waits its turn: then a job comes.
    wait_for(lambda: pending(r, BULK) == 16, 10, "two batches of bulk inputs read")
    job, _ = producer(r).enqueue("m", [png(200)], version="1")
    gate.set()
    record = finished_job(r, job["id"])
    assert record["status"] == "succeeded"
    assert record["outputs"][0]["top_k"] == top_k(200)
    # It ran as soon as the batch in hand was done, ahead of the bulk batch already read and
    # waiting: a job waits for at most the model run in progress.
    assert model.batches[1] == [200]
    assert record["metrics"]["batch_size"] == 1
    assert all(red < 40 for red in model.batches[2])
    wait_lines(r, batch_id, 40)
    assert r.llen(keys.batch_results(batch_id)) == 40


def test_one_batch_runs_jobs_and_bulk_inputs_together(r, serve):
    batch_id = new_batch(r)
    feed(r, batch_id, {i: (str(i), png(i)) for i in range(20)})
    job, _ = producer(r).enqueue("m", [png(200), png(201), png(202)], version="1")
    model = Model()
    serve(model)
    record = finished_job(r, job["id"])
    assert record["status"] == "succeeded" and record["metrics"]["batch_size"] == 8
    assert [o["top_k"] for o in record["outputs"]] == [top_k(200), top_k(201), top_k(202)]
    assert sorted(model.batches[0]) == [0, 1, 2, 3, 4, 200, 201, 202]
    assert {x["index"] for x in wait_lines(r, batch_id, 20)} == set(range(20))
    # GET /metrics counts each model run once, whichever lanes it served.
    wait_for(lambda: r.xlen(BULK) == 0, 5, "the bulk lane emptied")
    stats = {k.decode(): int(v) for k, v in r.hgetall(keys.stats()).items()}
    assert stats["batches|m|1"] == len(model.batches) == 3
    assert stats["batched_inputs|m|1"] == stats["inputs|m|1|succeeded"] == 23


def test_bulk_inputs_read_beyond_the_room_run_in_the_next_batch(r, serve):
    p = producer(r)
    first, _ = p.enqueue("m", [png(200)], version="1")
    gate = threading.Event()
    model = Model(gate=gate)
    serve(model)
    wait_for(lambda: model.batches == [[200]], 10, "the first job running")
    second, _ = p.enqueue("m", [png(201)], version="1")
    wait_for(lambda: p.get(second["id"])["status"] == "running", 10, "the second job read")
    # The reader waits for the model; when it reads again, both lanes hold inputs at once.
    third, _ = p.enqueue("m", [png(210 + i) for i in range(8)], version="1")
    batch_id = new_batch(r)
    feed(r, batch_id, {i: (str(i), png(i)) for i in range(8)})
    gate.set()
    assert finished_job(r, third["id"])["metrics"]["batch_size"] == 8
    assert {x["index"] for x in wait_lines(r, batch_id, 8)} == set(range(8))
    assert model.batches == [[200], [201], list(range(210, 218)), list(range(8))]
    wait_for(lambda: pending(r, BULK) == 0, 5, "the entries acked")


def test_lines_are_kept_only_for_batches_running_or_being_cancelled(r):
    batches = Batches(r, ttl_s=3600, delivery_ttl_s=3600)
    running, cancelling, ended = new_batch(r), new_batch(r), new_batch(r)
    batches.cancel(cancelling)
    batches.set_status(ended, CANCELLED)
    for batch_id in (running, cancelling, ended):
        feed(r, batch_id, {0: ("x", b"bytes")})
    lanes = StreamConsumer(r, "m", 1, "w1")
    lanes.ensure_group()
    entries = lanes.read_bulk(10)
    store = Consumer(r, result_ttl_s=60, webhook_max_age_s=60)
    assert store.start_bulk(entries) == {running: IN_PROGRESS, cancelling: CANCELLING,
                                         ended: CANCELLED}
    assert [e.data for e in entries] == [b"bytes"] * 3
    kept = store.finish_bulk("m", 1, [BulkResult(e.id, e.batch, e.idx, e.custom_id,
                                                 outputs=[1.0], model_version=1)
                                      for e in entries], batch=3)
    assert kept == 2
    assert lines(r, running) == lines(r, cancelling) == [
        {"custom_id": "x", "index": 0, "outputs": [1.0], "model_version": 1}]
    assert lines(r, ended) == []
    assert r.xlen(BULK) == 0 and pending(r, BULK) == 0
    assert r.keys(keys.batch_input("*", "*")) == []


def test_an_idle_read_wakes_for_either_lane(r):
    lanes = StreamConsumer(r, "m", 1, "w1")
    lanes.ensure_group()
    got = []
    reader = threading.Thread(target=lambda: got.extend(lanes.read_both(8, block_ms=20000)))
    reader.start()
    wait_for(lambda: any(c["cmd"] == "xreadgroup" and "b" in c["flags"]
                         for c in r.client_list()), 5, "the read waiting")
    feed(r, "batch_x", {0: ("only", b"bytes")})
    reader.join(10)
    assert not reader.is_alive()
    assert [(e.batch, e.idx, e.custom_id, e.job_id) for e in got] == [
        ("batch_x", 0, "only", "")]


def test_the_inputs_of_a_cancelled_batch_are_dropped_unrun(r, serve):
    cancelled, running = new_batch(r), new_batch(r)
    feed(r, cancelled, {i: (str(i), png(100 + i)) for i in range(10)})
    Batches(r, ttl_s=3600, delivery_ttl_s=3600).cancel(cancelled)
    feed(r, running, {i: (str(i), png(i)) for i in range(5)})
    model = Model()
    serve(model)
    wait_lines(r, running, 5)
    wait_for(lambda: r.xlen(BULK) == 0, 5, "the bulk lane emptied")
    assert lines(r, cancelled) == []
    assert r.keys(keys.batch_input(cancelled, "*")) == []
    assert sorted(red for batch in model.batches for red in batch) == list(range(5))
    assert pending(r, BULK) == 0


def test_lines_of_inputs_running_when_their_batch_is_cancelled_are_kept(r, serve):
    batch_id = new_batch(r)
    feed(r, batch_id, {i: (str(i), png(i)) for i in range(8)})
    gate = threading.Event()
    serve(Model(gate=gate))
    wait_for(lambda: pending(r, BULK) == 8, 10, "the inputs read")
    Batches(r, ttl_s=3600, delivery_ttl_s=3600).cancel(batch_id)  # now `cancelling`
    gate.set()
    assert {x["index"] for x in wait_lines(r, batch_id, 8)} == set(range(8))


def test_an_undecodable_input_fails_alone(r, serve):
    batch_id = new_batch(r)
    feed(r, batch_id, {0: ("a", png(1)), 1: ("b", b"\x89PNG\r\n\x1a\n truncated"),
                       2: ("c", png(3))})
    serve(Model())
    got = {x["custom_id"]: x for x in wait_lines(r, batch_id, 3)}
    assert got["a"]["outputs"] == top_k(1) and got["c"]["outputs"] == top_k(3)
    assert got["b"]["index"] == 1 and got["b"]["error"]["code"] == "invalid_image"
    assert "outputs" not in got["b"] and got["b"]["error"]["message"]


def test_an_input_the_model_fails_on_gets_model_error_after_max_attempts(r, serve):
    batch_id = new_batch(r)
    feed(r, batch_id, {i: (str(i), png(i)) for i in range(4)})
    model = Model(raises_on={2})
    serve(model, claim_idle_s=0.3, max_attempts=2)
    got = {x["index"]: x for x in wait_lines(r, batch_id, 4)}
    assert [got[i]["outputs"] for i in (0, 1, 3)] == [top_k(0), top_k(1), top_k(3)]
    assert got[2]["error"]["code"] == "model_error"
    assert "failed 2 attempts" in got[2]["error"]["message"]
    assert [b for b in model.batches if 2 in b] == [[0, 1, 2, 3], [2], [2]]
    wait_for(lambda: r.xlen(BULK) == 0, 5, "the bulk lane emptied")


def test_inputs_delivered_too_often_or_without_bytes_fail_with_their_codes(r, serve):
    batch_id = new_batch(r)
    feed(r, batch_id, {0: ("poisoned", png(1)), 1: ("gone", None), 2: ("fine", png(3))})
    # A consumer that died holding the first input, after it had been delivered 3 times.
    r.xgroup_create(BULK, keys.GROUP, id="0", mkstream=True)
    [[_, [(entry_id, _)]]] = r.xreadgroup(keys.GROUP, "dead", {BULK: ">"}, count=1)
    for _ in range(2):
        r.xclaim(BULK, keys.GROUP, "dead", 0, [entry_id])
    model = Model()
    serve(model, claim_idle_s=0.3, max_attempts=3)
    got = {x["custom_id"]: x for x in wait_lines(r, batch_id, 3)}
    assert got["poisoned"]["error"]["code"] == "poison"
    assert got["gone"]["error"]["code"] == "input_gone"
    assert got["fine"]["outputs"] == top_k(3)
    assert [red for batch in model.batches for red in batch] == [3]
    wait_for(lambda: r.xlen(BULK) == 0, 5, "the bulk lane emptied")
