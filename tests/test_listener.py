"""The per-process finish listener that long-polls share, against a real redis-server."""
import threading
import time

import redis

from jobs import keys
from jobs.listener import FinishListener
from jobs.consumer import RECORD_IN_MESSAGE_MAX, Consumer, InputResult
from jobs.producer import Producer
from jobs.stream import StreamConsumer
from stack.processes import RedisServer, wait_for

OK = {"top_k": [], "metrics": {}}


def _store(client):
    return Producer(client, result_ttl_s=60, max_backlog=1000, webhook_max_age_s=60,
                    listener=FinishListener(client))


def _finish_later(store, job_id, entry, delay_s):
    timer = threading.Timer(delay_s, Consumer(store.redis, 60, 60).finish, ["m", 1, [
        InputResult(entry.id, job_id, entry.idx, output=OK)]])
    timer.start()
    return timer


def _entries(client, n):
    c = StreamConsumer(client, "m", 1, "w")
    c.ensure_group()
    return c.read(n)


def test_many_waiters_on_one_connection_wake_on_their_own_job():
    # A Redis of its own: listeners of other tests' stores would show in CLIENT LIST.
    server = RedisServer()
    try:
        _many_waiters(server.client)
    finally:
        server.stop()


def _many_waiters(r):
    store = _store(r)
    jobs = [store.enqueue("m", [b"a"], fallback_version="1")[0]["id"] for _ in range(20)]
    entries = {e.job_id: e for e in _entries(r, 20)}
    results = {}

    def wait(job_id):
        results[job_id] = store.wait(job_id, timeout_s=20)

    threads = [threading.Thread(target=wait, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    wait_for(lambda: len(store.listener._waiting) == 20, 10, "every thread to wait")
    for j in jobs[:10]:  # only half finish
        Consumer(store.redis, 60, 60).finish("m", 1, [InputResult(entries[j].id, j, 0, output=OK)])
    assert len(r.client_list(_type="pubsub")) == 1  # one connection for every waiting thread
    # Each finished job's waiter wakes (long before its 20 s wait ends); the others wait on.
    wait_for(lambda: len(results) == 10, 10, "the finished jobs' waiters")
    assert set(results) == set(jobs[:10])
    assert all(results[j]["status"] == "succeeded" for j in jobs[:10])
    for j in jobs[10:]:
        Consumer(store.redis, 60, 60).finish("m", 1, [InputResult(entries[j].id, j, 0, output=OK)])
    for t in threads:
        t.join(10)
    assert all(results[j]["status"] == "succeeded" for j in jobs)
    assert store.listener._waiting == {}


def test_wait_times_out_with_the_job_as_it_stands(r):
    store = _store(r)
    job, _ = store.enqueue("m", [b"a"], fallback_version="1")
    t0 = time.monotonic()
    assert store.wait(job["id"], timeout_s=0.3)["status"] == "queued"
    assert 0.25 < time.monotonic() - t0 < 3
    assert store.wait("no-such-job-at-all", timeout_s=0.2) is None


def test_a_finish_just_before_the_wait_is_not_missed(r):
    store = _store(r)
    for _ in range(20):
        job, _ = store.enqueue("m", [b"a"], fallback_version="1")
        entry = _entries(r, 1)[0]
        timer = _finish_later(store, job["id"], entry, 0.0)
        assert store.wait(job["id"], timeout_s=10)["status"] == "succeeded"
        timer.join()


def _hgetall_calls(r) -> int:
    return r.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0)


def test_a_woken_waiter_gets_the_final_record_from_the_message_not_from_a_read():
    server = RedisServer()  # its own Redis: HGETALL is counted server-wide
    try:
        r = server.client
        store = _store(r)
        small, _ = store.enqueue("m", [b"a"], fallback_version="1")
        big, _ = store.enqueue("m", [b"b"], fallback_version="1")
        entries = {e.job_id: e for e in _entries(r, 2)}
        # Past RECORD_IN_MESSAGE_MAX, the message carries only the status: the waiter reads.
        outputs = {small["id"]: OK, big["id"]: {"top_k": [], "metrics": {},
                                                 "note": "x" * (RECORD_IN_MESSAGE_MAX + 1)}}
        for job_id, reads_after_wake in ((small["id"], 0), (big["id"], 1)):
            entry = entries[job_id]
            timer = threading.Timer(0.3, Consumer(store.redis, 60, 60).finish, ["m", 1, [
                InputResult(entry.id, job_id, 0, output=outputs[job_id])]])
            timer.start()
            before = _hgetall_calls(r)
            record = store.wait(job_id, timeout_s=10)
            timer.join()
            # One read before waiting (the job is still queued), one in the finish script
            # (Redis counts a script's commands too), then the waiter's own after, if any.
            assert _hgetall_calls(r) - before == 2 + reads_after_wake
            assert record == store.get(job_id)
            assert record["status"] == "succeeded" and record["completed_at"]
    finally:
        server.stop()


def test_the_listener_stops_when_idle_and_starts_again(r):
    others = len(r.client_list(_type="pubsub"))  # other tests' listeners
    store = Producer(r, 60, 1000, 60, listener=FinishListener(r, idle_exit_s=0.2))
    job, _ = store.enqueue("m", [b"a"], fallback_version="1")
    entry = _entries(r, 1)[0]
    assert store.wait(job["id"], timeout_s=0.2)["status"] == "queued"
    deadline = time.monotonic() + 15
    while store.listener._thread is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert store.listener._thread is None
    assert len(r.client_list(_type="pubsub")) == others
    timer = _finish_later(store, job["id"], entry, 0.3)
    assert store.wait(job["id"], timeout_s=10)["status"] == "succeeded"
    timer.join()


def test_waiters_survive_a_redis_restart():
    server = RedisServer()
    try:
        client = redis.Redis.from_url(server.url)
        store = _store(client)
        job, _ = store.enqueue("m", [b"a"], fallback_version="1")
        entry = _entries(client, 1)[0]
        out = {}
        waiter = threading.Thread(target=lambda: out.update(
            record=_wait_through_outage(store, job["id"])))
        waiter.start()
        time.sleep(0.3)
        # Redis goes away and comes back (no AOF: the job is gone after it).
        server.crash_and_restart(down_s=0.5)
        job, _ = store.enqueue("m", [b"b"], fallback_version="1")
        entry = _entries(client, 1)[0]
        waiter2 = {}
        t2 = threading.Thread(target=lambda: waiter2.update(
            record=store.wait(job["id"], timeout_s=20)))
        t2.start()
        time.sleep(0.5)
        Consumer(store.redis, 60, 60).finish("m", 1, [InputResult(entry.id, job["id"], 0, output=OK)])
        t2.join(20)
        assert waiter2["record"]["status"] == "succeeded"
        waiter.join(20)
        assert out["record"] in (None, "unavailable")  # woken, not left waiting 20 s
    finally:
        server.stop()


def _wait_through_outage(store, job_id):
    try:
        return store.wait(job_id, timeout_s=20)
    except redis.ConnectionError:
        return "unavailable"
