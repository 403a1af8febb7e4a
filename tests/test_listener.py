"""The per-process finish listener that long-polls share, against a real redis-server."""
import threading
import time

import redis

from jobs.listener import FinishListener
from jobs.consumer import RECORD_IN_MESSAGE_MAX, Consumer, InputResult
from jobs.producer import Producer
from jobs.stream import StreamConsumer
from stack.processes import wait_for

OK = {"top_k": [], "metrics": {}}


def _store(client, idle_exit_s: float = 60.0):
    return Producer(client, result_ttl_s=60, max_backlog=1000, webhook_max_age_s=60,
                    listener=FinishListener(client, idle_exit_s=idle_exit_s))


def _finish(store, job_id, entry, output=OK):
    Consumer(store.redis, 60, 60).finish("m", 1, [InputResult(entry.id, job_id, entry.idx,
                                                              output=output)])


def _finish_later(store, job_id, entry, delay_s):
    timer = threading.Timer(delay_s, _finish, [store, job_id, entry])
    timer.start()
    return timer


def _finish_when(condition, store, job_id, entry, output=OK):
    """Finish the job's input from another thread once `condition()` holds."""
    def run():
        wait_for(condition, 10, "the waiter to wait")
        _finish(store, job_id, entry, output)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _entries(client, n):
    c = StreamConsumer(client, "m", 1, "w")
    c.ensure_group()
    return c.read(n)


def _hgetall_calls(r) -> int:
    """HGETALLs served so far (a waiter reads its job with one), by this whole Redis."""
    return r.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0)


def _pubsub_clients(r) -> int:
    return len(r.client_list(_type="pubsub"))


def test_many_waiters_on_one_connection_wake_on_their_own_job(own_redis):
    # A Redis of its own: it counts connections and reads server-wide.
    r = own_redis.client
    store = _store(r, idle_exit_s=1.0)
    jobs = [store.enqueue("m", [b"a"], fallback_version="1")[0]["id"] for _ in range(20)]
    entries = {e.job_id: e for e in _entries(r, 20)}
    assert store.wait("no-such-job-at-all", timeout_s=10) is None  # the listener is up
    results = {}

    def wait(job_id):
        results[job_id] = store.wait(job_id, timeout_s=20)

    before = _hgetall_calls(r)
    threads = [threading.Thread(target=wait, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    # Each thread reads its job once it is watching for the finish, then waits.
    wait_for(lambda: _hgetall_calls(r) - before >= 20, 10, "every thread to wait")
    for j in jobs[:10]:  # only half finish
        _finish(store, j, entries[j])
    assert _pubsub_clients(r) == 1  # one connection for every waiting thread
    # Each finished job's waiter wakes (long before its 20 s wait ends); the others wait on.
    wait_for(lambda: len(results) == 10, 10, "the finished jobs' waiters")
    assert set(results) == set(jobs[:10])
    assert all(results[j]["status"] == "succeeded" for j in jobs[:10])
    for j in jobs[10:]:
        _finish(store, j, entries[j])
    for t in threads:
        t.join(10)
    assert all(results[j]["status"] == "succeeded" for j in jobs)
    # Every waiter has left: with nobody waiting, the listener goes idle and disconnects.
    wait_for(lambda: _pubsub_clients(r) == 0, 10, "the listener to go idle")


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
        timer = _finish_later(store, job["id"], entry, 0.0)  # racing the wait, on purpose
        assert store.wait(job["id"], timeout_s=10)["status"] == "succeeded"
        timer.join()


def test_a_woken_waiter_gets_the_final_record_from_the_message_not_from_a_read(own_redis):
    r = own_redis.client  # its own Redis: HGETALL is counted server-wide
    store = _store(r)
    small, _ = store.enqueue("m", [b"a"], fallback_version="1")
    big, _ = store.enqueue("m", [b"b"], fallback_version="1")
    entries = {e.job_id: e for e in _entries(r, 2)}
    # Past RECORD_IN_MESSAGE_MAX, the message carries only the status: the waiter reads.
    outputs = {small["id"]: OK, big["id"]: {"top_k": [], "metrics": {},
                                             "note": "x" * (RECORD_IN_MESSAGE_MAX + 1)}}
    for job_id, reads_after_wake in ((small["id"], 0), (big["id"], 1)):
        before = _hgetall_calls(r)
        # Finished once the waiter has read the job (queued) and waits.
        finisher = _finish_when(lambda: _hgetall_calls(r) > before, store, job_id,
                                entries[job_id], outputs[job_id])
        record = store.wait(job_id, timeout_s=10)
        finisher.join()
        # One read before waiting (the job is still queued), one in the finish script
        # (Redis counts a script's commands too), then the waiter's own after, if any.
        assert _hgetall_calls(r) - before == 2 + reads_after_wake
        assert record == store.get(job_id)
        assert record["status"] == "succeeded" and record["completed_at"]


def test_the_listener_stops_when_idle_and_starts_again(own_redis):
    r = own_redis.client  # its own Redis: no other test's listener in CLIENT LIST
    store = _store(r, idle_exit_s=0.2)
    job, _ = store.enqueue("m", [b"a"], fallback_version="1")
    entry = _entries(r, 1)[0]
    assert store.wait(job["id"], timeout_s=0.2)["status"] == "queued"
    assert _pubsub_clients(r) == 1
    # Nobody waits any more: the listener closes its connection.
    wait_for(lambda: _pubsub_clients(r) == 0, 15, "the idle listener to disconnect")
    # The next wait starts it again, and wakes when the job finishes.
    before = _hgetall_calls(r)
    finisher = _finish_when(lambda: _hgetall_calls(r) > before, store, job["id"], entry)
    assert store.wait(job["id"], timeout_s=10)["status"] == "succeeded"
    finisher.join()
    assert _pubsub_clients(r) == 1


def test_waiters_survive_a_redis_restart(own_redis):
    server = own_redis
    client = redis.Redis.from_url(server.url)
    store = _store(client)
    job, _ = store.enqueue("m", [b"a"], fallback_version="1")
    _entries(client, 1)
    out = {}
    before = _hgetall_calls(client)
    waiter = threading.Thread(target=lambda: out.update(
        record=_wait_through_outage(store, job["id"])))
    waiter.start()
    wait_for(lambda: _hgetall_calls(client) > before, 10, "the waiter to wait")
    # Redis goes away and comes back (no AOF: the job is gone after it).
    server.crash_and_restart(down_s=0.5)
    waiter.join(20)
    assert out["record"] in (None, "unavailable")  # woken, not left waiting 20 s
    job, _ = store.enqueue("m", [b"b"], fallback_version="1")
    entry = _entries(client, 1)[0]
    waiter2 = {}
    before = _hgetall_calls(client)
    t2 = threading.Thread(target=lambda: waiter2.update(
        record=store.wait(job["id"], timeout_s=20)))
    t2.start()
    # Finished once the new waiter waits, on the listener that connected again.
    wait_for(lambda: _hgetall_calls(client) > before, 10, "the second waiter to wait")
    _finish(store, job["id"], entry)
    t2.join(20)
    assert waiter2["record"]["status"] == "succeeded"


def _wait_through_outage(store, job_id):
    try:
        return store.wait(job_id, timeout_s=20)
    except redis.ConnectionError:
        return "unavailable"
