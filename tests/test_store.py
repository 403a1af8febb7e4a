"""The job store and stream protocol against a real redis-server (no worker, no TensorFlow)."""
import threading
import time

import pytest

from jobs import keys
from jobs.consumer import Consumer, InputResult
from jobs.producer import BacklogFull, NoVersion, Producer
from jobs.record import job_json
from jobs.registry import heartbeat, live_workers, remove_worker
from jobs.routing import set_default
from jobs.stream import StreamConsumer
from stack.processes import wait_for

S = keys.stream("m", 1)
OK = {"top_k": [{"label": "circle", "index": 0, "score": 0.9}],
      "metrics": {"queue_ms": 1.0, "predict_ms": 2.0, "batch_size": 2}}


class Store:
    """Both sides of the job store over one Redis, as the API and a worker see it."""

    def __init__(self, r):
        self.producer = Producer(r, result_ttl_s=60, max_backlog=10, webhook_max_age_s=60)
        self.consumer = Consumer(r, result_ttl_s=60, webhook_max_age_s=60)
        self.enqueue, self.get = self.producer.enqueue, self.producer.get
        self.cancel, self.wait = self.producer.cancel, self.producer.wait
        self.start, self.finish = self.consumer.start, self.consumer.finish


@pytest.fixture
def store(r):
    return Store(r)


def backlog(r, model, version) -> int:
    return r.xlen(keys.stream(model, version))


def consumer(r, name="w1"):
    c = StreamConsumer(r, "m", 1, name)
    c.ensure_group()
    return c


def test_enqueue_writes_record_and_one_entry_per_input(store, r):
    job, _ = store.enqueue("m", [b"a", b"bb", b"ccc"], fallback_version="1")
    record = store.get(job["id"])
    assert record["status"] == "queued" and record["n_inputs"] == "3"
    assert 0 < r.ttl(keys.job(job["id"])) <= 60  # a job that never runs still expires
    c = consumer(r)
    entries = c.read(10)
    assert [(e.job_id, e.idx, e.data) for e in entries] == [
        (job["id"], 0, None), (job["id"], 1, None), (job["id"], 2, None)]
    # The bytes are plain keys that expire with the job; the entries only name them.
    assert all(0 < r.ttl(keys.job_input(job["id"], i)) <= 60 for i in range(3))
    assert [e.data for e in started(store, entries)] == [b"a", b"bb", b"ccc"]
    assert store.get(job["id"])["status"] == "running"


def started(store, entries) -> list:
    """The entries, their jobs started and their bytes fetched, as a worker does."""
    store.start([e.job_id for e in entries], "1", entries)
    return entries


def input_keys(r) -> list:
    return r.keys(keys.job_input("*", "*"))


def test_a_refused_job_leaves_no_input_bytes(store, r):
    full, _ = store.enqueue("m", [b"x"] * 10, fallback_version="1")
    with pytest.raises(BacklogFull):
        store.enqueue("m", [b"y"] * 2, fallback_version="1")
    with pytest.raises(NoVersion):
        store.enqueue("other", [b"z"])
    first, _ = store.enqueue("n", [b"a"], fallback_version="1", idempotency=("key", "digest"))
    again, replayed = store.enqueue("n", [b"a"], fallback_version="1",
                                    idempotency=("key", "digest"))
    assert replayed and again["id"] == first["id"]
    assert set(input_keys(r)) == {keys.job_input(j, i).encode()
                                  for j, n in ((full["id"], 10), (first["id"], 1))
                                  for i in range(n)}


def test_finishing_or_dropping_an_input_deletes_its_bytes(store, r):
    job, _ = store.enqueue("m", [b"a", b"b", b"c"], fallback_version="1")
    c = consumer(r)
    first, second, third = started(store, c.read(10))
    store.finish("m", 1, [InputResult(first.id, job["id"], 0, output=OK),
                     InputResult(second.id, job["id"], 1, error="cannot decode image")])
    assert r.exists(keys.job_input(job["id"], 0), keys.job_input(job["id"], 1)) == 0
    c.drop([third])
    assert input_keys(r) == [] and r.xlen(S) == 0


def test_an_input_whose_bytes_are_gone_loads_as_none(store, r):
    job, _ = store.enqueue("m", [b"a"], fallback_version="1")
    r.delete(keys.job_input(job["id"], 0))
    c = consumer(r)
    assert [e.data for e in started(store, c.read(10))] == [None]


def test_enqueue_and_start_survive_a_redis_that_forgot_its_scripts(store, r):
    r.script_flush()
    job, _ = store.enqueue("m", [b"a"], fallback_version="1")
    c = consumer(r)
    entries = c.read(10)
    r.script_flush()  # and again before the worker's start, which fetches the bytes with it
    assert [e.data for e in started(store, entries)] == [b"a"]
    assert store.get(job["id"])["status"] == "running"


def test_backlog_limit_refuses_whole_jobs(store, r):
    store.enqueue("m", [b"x"] * 8, fallback_version="1")
    with pytest.raises(BacklogFull):
        store.enqueue("m", [b"x"] * 3, fallback_version="1")
    assert backlog(r, "m", 1) == 8  # nothing of the refused job was written
    store.enqueue("m", [b"x"] * 2, fallback_version="1")
    assert backlog(r, "m", 1) == 10


def test_job_finishes_exactly_once_when_inputs_are_delivered_twice(store, r):
    job, _ = store.enqueue("m", [b"a", b"b"], fallback_version="1")
    c = consumer(r)
    first, second = c.read(10)
    assert store.finish("m", 1, [InputResult(first.id, job["id"], 0, output=OK)]) == []
    assert store.get(job["id"])["status"] == "running"
    # The same input again (a reclaimed duplicate) changes nothing.
    assert store.finish("m", 1, [InputResult(first.id, job["id"], 0, error="late dup")]) == []
    assert store.finish("m", 1, [InputResult(second.id, job["id"], 1, output=OK)]) == [job["id"]]
    record = store.get(job["id"])
    assert record["status"] == "succeeded" and record["n_done"] == "2"
    assert "error" not in record and record["completed_at"]
    assert store.finish("m", 1, [InputResult(second.id, job["id"], 1, output=OK)]) == []
    assert backlog(r, "m", 1) == 0  # acked and deleted
    assert 0 < r.ttl(keys.job(job["id"])) <= 60


def test_a_failed_input_fails_its_job_with_the_reason(store, r):
    job, _ = store.enqueue("m", [b"a", b"b"], fallback_version="1")
    e0, e1 = consumer(r).read(10)
    store.finish("m", 1, [InputResult(e0.id, job["id"], 0, output=OK),
                       InputResult(e1.id, job["id"], 1, error="cannot decode image")])
    record = store.get(job["id"])
    assert record["status"] == "failed"
    assert record["error"] == "1 of 2 inputs failed; first error: cannot decode image"


def test_cancel_only_unfinished_jobs(store, r):
    queued, _ = store.enqueue("m", [b"a"], fallback_version="1")
    assert store.cancel(queued["id"]) == 1
    assert store.get(queued["id"])["status"] == "canceled"
    assert store.cancel(queued["id"]) == 0
    assert store.cancel("x" * 22) == -1
    # The worker's start step reports the job canceled, so its entries are skipped.
    assert store.start([queued["id"]]) == {queued["id"]: ("canceled", "")}


def test_a_running_job_canceled_keeps_its_results_and_cancels_the_rest(store, r):
    job, _ = store.enqueue("m", [b"a", b"b"], fallback_version="1")
    e0, _ = consumer(r).read(10)
    store.finish("m", 1, [InputResult(e0.id, job["id"], 0, output=OK)])
    assert store.cancel(job["id"]) == 1
    public = job_json(store.get(job["id"]), "http://api")
    assert public["status"] == "canceled" and public["finished"]
    assert [o["status"] for o in public["outputs"]] == ["succeeded", "canceled"]


def test_start_marks_running_and_records_the_version(store):
    job, _ = store.enqueue("m", [b"a"], fallback_version="1")
    assert store.start([job["id"], job["id"]], "3") == {job["id"]: ("running", "")}
    record = store.get(job["id"])
    assert record["version"] == "3" and record["started_at"]
    assert store.start(["gone" * 5]) == {"gone" * 5: (None, "")}
    raw, _ = store.enqueue("m", [b"a"], fallback_version="1", fields={"output": "raw"})
    assert store.start([raw["id"]]) == {raw["id"]: ("running", "raw")}


def test_wait_wakes_on_the_finish_signal(store, r):
    job, _ = store.enqueue("m", [b"a"], fallback_version="1")
    entry = consumer(r).read(1)[0]

    def finish_once_subscribed():
        # The waiter has subscribed to the job's finish signal: it is waiting.
        wait_for(lambda: r.pubsub_numsub(keys.finished(job["id"]))[0][1] > 0, 10,
                 "the waiter to subscribe")
        store.finish("m", 1, [InputResult(entry.id, job["id"], 0, output=OK)])

    finisher = threading.Thread(target=finish_once_subscribed)
    finisher.start()
    started = time.monotonic()
    record = store.wait(job["id"], timeout_s=20)
    finisher.join()
    assert record["status"] == "succeeded"
    assert time.monotonic() - started < 10  # woken by the signal, not by the timeout


def test_wait_returns_the_unfinished_job_when_time_runs_out(store):
    job, _ = store.enqueue("m", [b"a"], fallback_version="1")
    assert store.wait(job["id"], timeout_s=0.2)["status"] == "queued"
    assert store.wait("no-such-job-at-all", timeout_s=0.2) is None


def test_reclaim_takes_entries_of_a_dead_consumer_and_counts_deliveries(store, r):
    job, _ = store.enqueue("m", [b"a", b"b"], fallback_version="1")
    dead = consumer(r, "dead")
    assert len(dead.read(10)) == 2  # read, never acked: its worker died
    alive = consumer(r, "alive")
    assert alive.reclaim(min_idle_s=60, count=10) == []  # not idle long enough
    # Taken once they have been idle 0.1 s (a reclaim that finds none idle takes nothing).
    claimed = wait_for(lambda: alive.reclaim(min_idle_s=0.1, count=10), 10, "idle entries")
    assert [(e.job_id, e.idx, e.deliveries) for e in claimed] == [(job["id"], 0, 2),
                                                                   (job["id"], 1, 2)]
    again = wait_for(lambda: consumer(r, "third").reclaim(min_idle_s=0.1, count=10), 10,
                     "idle entries")
    assert [e.deliveries for e in again] == [3, 3]


def test_heartbeats_list_live_workers_and_forget_removed_ones(r):
    heartbeat(r, "w1", {"name": "w1", "models": [{"name": "m", "version": 1,
                                                  "state": "available"}]}, ttl_s=5)
    assert [w["name"] for w in live_workers(r, 5)] == ["w1"]
    assert r.sismember(keys.models(), "m")
    remove_worker(r, "w1")
    assert live_workers(r, 5) == []


def test_jobs_go_to_the_default_version_or_the_pinned_one(store, r):
    with pytest.raises(NoVersion):
        store.enqueue("m", [b"a"])  # no default, no fallback: nowhere to go
    job, _ = store.enqueue("m", [b"a"], fallback_version="1")
    assert job["version"] == "1" and backlog(r, "m", 1) == 1
    set_default(r, "m", 2)  # a worker has v2 warm: unpinned jobs follow the default
    job, _ = store.enqueue("m", [b"a"], fallback_version="1")
    assert job["version"] == "2" and backlog(r, "m", 2) == 1
    assert store.get(job["id"])["version"] == "2"
    pinned, _ = store.enqueue("m", [b"a"], version="1")
    assert pinned["version"] == "1" and backlog(r, "m", 1) == 2
