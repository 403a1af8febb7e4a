"""Chaos: workers killed again and again, Redis crashed, an API process killed mid-submit, Redis
out of memory. Real processes throughout (redis-server, gunicorn, Celery workers, the demo
model); every job a client was told about ends, exactly once."""
import itertools
import os
import random
import signal
import threading
import time

import pytest
import redis
import requests

from jobs import keys
from jobs.consumer import Consumer, InputResult
from jobs.producer import Producer
from jobs.record import iso
from jobs.stream import StreamConsumer
from tests.chaos_tools import (STREAM, Flow, FinishCounter, Stack, job_records, png,
                               stream_state, submit, wait_job)
from stack.processes import RedisServer, model_processes, wait_for, wait_until_serving
from tests.receiver import Receiver

pytestmark = pytest.mark.chaos

CLAIM_IDLE_S = 2  # inputs of a dead worker are taken over after this


@pytest.fixture
def stacks():
    """Make stacks; each is stopped at the end, however the test ended."""
    made = []

    def make(**kwargs) -> Stack:
        made.append(Stack(**kwargs))
        return made[-1]

    yield make
    for stack in made:
        stack.close()


def held_by(client, pid: int) -> int:
    """Entries of the stream that the worker with this pid has read and not acked (its
    consumer names hold its pid)."""
    try:
        consumers = client.xpending(STREAM, keys.GROUP)["consumers"]
    except redis.ResponseError:
        return 0
    return sum(c["pending"] for c in consumers if f":{pid}:" in c["name"].decode())


def test_worker_killed_again_and_again_loses_no_job_and_finishes_each_once(stacks):
    # A generous max_attempts: being killed is not the input's fault, and the poison path has
    # its own test (test_worker_failures.py).
    stack = stacks(claim_idle_s=CLAIM_IDLE_S, max_attempts=10)
    current = stack.worker()
    counter = FinishCounter(stack.client)
    # 1,000 jobs at 25/s: they keep flowing through every kill below.
    flow = Flow(stack.base, total=1000, rate=25, threads=4)
    try:
        kills, taken = 0, []
        while kills < 5:
            # The next worker warms up while the current one serves; each worker serves
            # 1-3 s beside it, then is killed, preferably while it holds a batch.
            spare = stack.worker(wait_ready=False)
            wait_until_serving(spare, stack.redis.url, ["shapes"])
            time.sleep(random.uniform(1, 3))
            try:
                wait_for(lambda: held_by(stack.client, current.pid) > 0, 2,
                         "the worker to hold a batch", interval_s=0.001)
            except TimeoutError:
                pass  # killed anyway, holding nothing
            current.kill9()
            taken.append(held_by(stack.client, current.pid))
            kills += 1
            current = spare
        flow.hurry()
        jobs = [job for _, job in flow.join()]
        assert len(jobs) == 1000, (flow.refused[:3], flow.failed[:3])
        counts = counter.after_success(jobs)
    finally:
        flow.stop()
        counter.stop()
    print(f"\n5 kills; entries the killed workers held: {taken}")
    assert sum(taken) > 0  # the kills took unacked entries with them, which were reclaimed
    assert set(counts) == {job["id"] for job in jobs}  # none lost, no stray job
    assert set(counts.values()) == {1}  # each finished exactly once
    assert stream_state(stack.client) == (0, 0)  # nothing queued, nothing held


SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HOOKS = {"webhook_secret": SECRET, "webhook_allow_networks": "127.0.0.1/32",
         "webhook_retry_schedule_s": "3"}


def deliveries(job) -> list[dict]:
    return requests.get(job["urls"]["get"] + "/deliveries", timeout=10).json()["deliveries"]


def poll_while_down(stack, job, down_s: float) -> list[float]:
    """Submit and read (plain and long-poll) for `down_s`: every answer must be a quick 503
    that says the store is unavailable. Returns how long each answer took."""
    took = []
    deadline = time.monotonic() + down_s
    while time.monotonic() < deadline:
        for call in (lambda: submit(stack.base, [png(7)], timeout_s=5),
                     lambda: requests.get(job["urls"]["get"], timeout=5),
                     lambda: requests.get(job["urls"]["get"], params={"wait": 10}, timeout=5)):
            started = time.monotonic()
            resp = call()  # a hang past 5 s raises here
            took.append(time.monotonic() - started)
            assert resp.status_code == 503, resp.text
            assert resp.json()["error"]["code"] == "redis_unavailable"
            assert resp.headers["Retry-After"]
        time.sleep(0.1)
    return took


def test_redis_crash_with_everysec_aof_loses_no_accepted_job_and_everything_reconnects(stacks):
    receiver = Receiver()
    try:
        stack = stacks(redis_options={"aof": True, "appendfsync": "everysec"},
                       claim_idle_s=CLAIM_IDLE_S, **HOOKS)
        worker, hooks = stack.worker(), stack.webhook_worker()
        flow = Flow(stack.base, total=None, rate=40, threads=4)
        stack.on_close(flow.stop)
        wait_for(lambda: flow.count() >= 80, 30, "jobs to flow")
        # A webhook whose first attempt fails: its retry falls due while Redis is down.
        receiver.script("/across", 503, 200)
        hooked = submit(stack.base, [png(1)], data={"webhook": receiver.url("/across")}).json()
        wait_for(lambda: deliveries(hooked) and deliveries(hooked)[0]["attempts"], 30,
                 "the first webhook attempt")
        # The worker pauses, so jobs are still queued when Redis crashes; it resumes while
        # Redis is down.
        os.killpg(worker.pid, signal.SIGSTOP)
        time.sleep(2)  # less than the 3 s (-20%) before the webhook's retry is due
        crashed_at = time.time()
        stack.redis.crash()
        os.killpg(worker.pid, signal.SIGCONT)
        took = poll_while_down(stack, hooked, down_s=3)
        stack.redis.restart()
        restarted_at = time.time()
        wait_for(lambda: any(t > restarted_at for t, _ in flow.accepted[-5:]), 30,
                 "the API to accept jobs again")
        time.sleep(1)
        flow.stop()

        # Jobs accepted over a second before the crash were on disk (AOF, fsync every second).
        early = [job for t, job in flow.accepted if t < crashed_at - 1]
        last_second = [job for t, job in flow.accepted if crashed_at - 1 <= t < crashed_at]
        later = [job for t, job in flow.accepted if t >= restarted_at]
        assert len(early) >= 20 and later
        ended_after_crash = 0
        for job in early + later + [hooked]:
            resp = wait_job(job["urls"]["get"], timeout_s=60)
            assert resp.json()["status"] == "succeeded", resp.text
            ended_after_crash += job in early and resp.json()["completed_at"] > iso(crashed_at)
        assert ended_after_crash > 0  # some were still queued when Redis went down
        for job in last_second:  # may be lost with the crash, but never stuck
            resp = wait_job(job["urls"]["get"], timeout_s=60)
            assert resp.status_code == 404 or resp.json()["status"] == "succeeded", resp.text
        # Every answer was a 202 or, while Redis was down, a 503: never a 500, never silence.
        assert {status for _, status, _ in flow.refused} <= {503}
        assert flow.failed == []

        # The same worker and webhook worker carry on, with no restart.
        assert worker.alive() and hooks.alive()
        wait_until_serving(worker, stack.redis.url, ["shapes"], timeout_s=30)
        [d] = wait_for(lambda: [d for d in deliveries(hooked) if d["status"] != "pending"],
                       60, "the webhook retry across the crash")
        assert d["status"] == "delivered"
        assert [a["status_code"] for a in d["attempts"]] == [503, 200]
        after = submit(stack.base, [png(2)], data={"webhook": receiver.url("/after")}).json()
        assert wait_job(after["urls"]["get"]).json()["status"] == "succeeded"
        wait_for(lambda: receiver.to("/after"), 30, "the webhook of a job after the restart")
        print(f"\nRedis down 3 s: {len(took)} answers, all 503, slowest {max(took):.2f} s; "
              f"{len(early)} jobs accepted before ({ended_after_crash} still queued), "
              f"{len(later)} after; "
              f"{len(flow.refused)} submits refused while down")
    finally:
        receiver.close()


class Submits:
    """Client threads sending multi-image jobs, each with its own Idempotency-Key and images,
    until stopped. `sent` holds (key, images, response or None when no answer came)."""

    def __init__(self, base: str, threads: int):
        self.base, self.sent = base, []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(t,), daemon=True)
                         for t in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self, thread: int):
        rng = random.Random(thread)
        for i in itertools.count():
            if self._stop.is_set():
                return
            key = f"chaos-{thread}-{i}"
            images = [png(rng.getrandbits(48), size=64) for _ in range(rng.randint(4, 16))]
            try:
                resp = submit(self.base, images, timeout_s=30, headers={"Idempotency-Key": key})
            except requests.RequestException:
                resp = None
            self.sent.append((key, images, resp))

    def answered(self) -> int:
        return sum(resp is not None for _, _, resp in self.sent)

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(60)


def queued_entries(client) -> dict[str, list[int]]:
    """Job id -> the input indexes its stream entries carry."""
    found = {}
    for _, fields in client.xrange(STREAM):
        found.setdefault(fields[b"job"].decode(), []).append(int(fields[b"idx"]))
    return found


def test_api_process_killed_mid_submit_leaves_whole_jobs_or_nothing(stacks):
    # No inference worker until the end: the stream keeps every entry for the check.
    stack = stacks(max_backlog=1_000_000)
    clients = Submits(stack.base, threads=12)
    try:
        wait_for(lambda: clients.answered() >= 30, 60, "submits to flow")
        # At least 3 kills, and on until one has cut a submit off mid-request (a kill can land
        # while the clients are between requests, building their images).
        for kills in itertools.count(1):
            victim = random.choice(stack.api_workers())
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: len(stack.api_workers()) == 2 and victim not in stack.api_workers(),
                     30, "gunicorn to replace its worker")
            answered = clients.answered()
            wait_for(lambda: clients.answered() >= answered + 20, 60, "the API to serve again")
            if kills >= 10 or kills >= 3 and any(resp is None for _, _, resp in clients.sent):
                break
    finally:
        clients.stop()
    accepted = {resp.json()["id"]: len(images) for _, images, resp in clients.sent
                if resp is not None and resp.status_code == 202}
    no_answer = [(key, images) for key, images, resp in clients.sent if resp is None]
    assert {resp.status_code for _, _, resp in clients.sent if resp is not None} == {202}
    assert no_answer  # the kills did cut submits off mid-request

    # Every job record is whole: all its inputs queued; every entry belongs to a job.
    records = {job_id: stack.client.hgetall(keys.job(job_id))
               for job_id in job_records(stack.client)}
    entries = queued_entries(stack.client)
    for job_id, record in records.items():
        assert sorted(entries.get(job_id, [])) == list(range(int(record[b"n_inputs"]))), job_id
    assert set(entries) <= set(records)
    assert set(accepted) <= set(records)
    assert all(int(records[j][b"n_inputs"]) == n for j, n in accepted.items())

    # A client whose request got no answer sends it again with the same Idempotency-Key: it
    # gets the job its first try made, or a new one if that try made nothing. No other job
    # exists: a cut-off request left a whole job or nothing.
    replayed, made = set(), set()
    for key, images in no_answer:
        resp = submit(stack.base, images, headers={"Idempotency-Key": key})
        assert resp.status_code == 202, resp.text
        (replayed if resp.headers.get("Idempotent-Replayed") else made).add(resp.json()["id"])
    assert set(records) == set(accepted) | replayed
    assert not made & set(records)

    # The API serves again, and a worker runs every job to the end.
    assert stack.api.alive() and len(stack.api_workers()) == 2
    stack.worker()
    for job_id in set(records) | made:
        resp = wait_job(f"{stack.base}/v1/jobs/{job_id}", timeout_s=120)
        assert resp.json()["status"] == "succeeded", resp.text
    assert stream_state(stack.client) == (0, 0)
    print(f"\n3 API workers killed: {len(clients.sent)} submits, {len(no_answer)} cut off "
          f"({len(replayed)} had made a whole job, {len(no_answer) - len(replayed)} nothing)")


def test_a_finish_refused_for_memory_acks_nothing():
    """When Redis refuses a result for memory, the input's entry stays pending (it is
    retried or reclaimed) rather than being acked with its result lost."""
    server = RedisServer()
    try:
        client = redis.Redis.from_url(server.url)
        store = Producer(client, result_ttl_s=600, max_backlog=100, webhook_max_age_s=60)
        results_side = Consumer(client, result_ttl_s=600, webhook_max_age_s=60)
        consumer = StreamConsumer(client, "shapes", 1, "w1")
        consumer.ensure_group()
        job, _ = store.enqueue("shapes", [b"a", b"b"], version="1")
        entries = consumer.read(10)
        results_side.start([job["id"]], "1")
        client.config_set("maxmemory", client.info("memory")["used_memory"] - 100_000)
        results = [InputResult(e.id, e.job_id, e.idx, output={"top_k": []}) for e in entries]
        with pytest.raises(redis.OutOfMemoryError):
            results_side.finish(consumer.model, consumer.version, results)
        assert stream_state(client) == (2, 2)  # both entries still held, neither acked
        assert store.get(job["id"])["n_done"] == "0"
        client.config_set("maxmemory", 0)
        assert results_side.finish(consumer.model, consumer.version, results) == [job["id"]]
        assert store.get(job["id"])["status"] == "succeeded"
        assert stream_state(client) == (0, 0)
    finally:
        server.stop()


def test_redis_full_refuses_submits_evicts_nothing_and_every_job_completes_after(stacks):
    stack = stacks(claim_idle_s=CLAIM_IDLE_S)
    worker = stack.worker()
    counter = FinishCounter(stack.client)
    try:
        earlier = [submit(stack.base, [png(i)]).json() for i in range(20)]
        for job in earlier:
            assert wait_job(job["urls"]["get"]).json()["status"] == "succeeded"
        # The worker pauses (as a slow GPU would), so jobs are queued when memory runs out.
        os.killpg(worker.pid, signal.SIGSTOP)
        stack.client.config_set("maxmemory", stack.client.info("memory")["used_memory"] + 2**21)
        accepted = []
        for i in itertools.count():
            resp = submit(stack.base, [png(1000 * i + k, size=64) for k in range(8)])
            if resp.status_code != 202:
                break
            accepted.append(resp.json())
            assert i < 1000, "the store never filled"
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"]["code"] == "store_full" and resp.headers["Retry-After"]
        assert accepted
        # Keep it full: the refused request's buffer, once freed, would leave a little room.
        full_at = stack.client.info("memory")["used_memory"] - 2**19
        stack.client.config_set("maxmemory", full_at)
        os.killpg(worker.pid, signal.SIGCONT)

        # Full: the worker's writes are refused too. Longer than it takes a held input to be
        # reclaimed max_attempts times, so a worker that gave inputs up would show it here.
        time.sleep(CLAIM_IDLE_S * 4)
        assert worker.alive() and model_processes(worker.pid)
        assert "redis full" in worker.output()  # it did meet the full store, and waited
        assert stack.client.info("stats")["evicted_keys"] == 0
        for job in earlier:  # nothing was evicted: earlier results are still there
            resp = requests.get(job["urls"]["get"], timeout=10)
            assert resp.status_code == 200 and resp.json()["status"] == "succeeded"
        assert submit(stack.base, [png(1, size=64)] * 8).status_code == 503
        assert stack.client.info("memory")["used_memory"] > full_at  # still full
        for job in accepted:
            assert requests.get(job["urls"]["get"], timeout=10).json()["status"] != "failed"

        # Memory freed: the same worker finishes every job, each once; submits are taken again.
        stack.client.config_set("maxmemory", 0)
        resp = submit(stack.base, [png(2)])
        assert resp.status_code == 202, resp.text
        jobs = earlier + accepted + [resp.json()]
        counts = counter.after_success(jobs)
    finally:
        counter.stop()
    assert counts == {job["id"]: 1 for job in jobs}
    assert stream_state(stack.client) == (0, 0)
    assert stack.client.info("stats")["evicted_keys"] == 0
    print(f"\nRedis full after {len(accepted)} jobs of 8 images; the worker waited, then "
          f"finished all {len(jobs)}")
