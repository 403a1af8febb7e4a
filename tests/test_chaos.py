"""Chaos: workers killed again and again, Redis crashed, an API process killed mid-submit, Redis
out of memory. Real processes throughout (redis-server, gunicorn, Celery workers, the demo
model); every job a client was told about ends, exactly once."""
import os
import random
import signal
import time

import pytest
import redis
import requests

from jobs import keys
from jobs.public import iso
from tests.chaos_tools import Flow, FinishCounter, Stack, png, stream_state, submit, wait_job
from tests.procs import wait_for, wait_until_serving
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
        consumers = client.xpending(keys.stream("shapes", 1), keys.GROUP)["consumers"]
    except redis.ResponseError:
        return 0
    return sum(c["pending"] for c in consumers if f":{pid}:" in c["name"].decode())


def test_worker_killed_again_and_again_loses_no_job_and_finishes_each_once(stacks):
    # A generous max_attempts: being killed is not the input's fault, and the poison path has
    # its own test (test_worker_failures.py).
    stack = stacks(claim_idle_s=CLAIM_IDLE_S, max_attempts=10)
    counter = FinishCounter(stack.client)
    try:
        current = stack.worker()
        # 1,000 jobs at 25/s: they keep flowing through every kill below.
        flow = Flow(stack.base, total=1000, rate=25, threads=4)
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
        for job in jobs:
            resp = wait_job(job["urls"]["get"], timeout_s=60)
            assert resp.json()["status"] == "succeeded", resp.text
        time.sleep(0.5)  # let the last finish messages arrive
        counts = counter.snapshot()
    finally:
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
