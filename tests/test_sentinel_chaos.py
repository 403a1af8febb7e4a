"""Chaos: the Redis master SIGKILLed while 500 jobs flow, with the whole stack (API, worker,
webhook worker, feeder) on Redis Sentinel: a master, one replica, three sentinels. The API
answers only 202 or 503 meanwhile; the stack goes on on the new master by itself; every job
that got a 202 ends. With INFERQ_REDIS_MIN_REPLICAS_ACK=1 none is lost; without it, the jobs
the old master accepted and had not yet copied are lost, and the test says how many."""
import collections
import time
import uuid

import pytest
import requests

from stack.processes import wait_for
from tests.chaos_tools import Flow, png, submit, wait_job
from tests.receiver import Receiver

pytestmark = pytest.mark.chaos

JOBS = 500
KILL_AFTER = 150  # jobs accepted before the master is killed
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def accepted_after_retries(base: str, seed: int, timeout_s: float = 30, **kwargs) -> dict:
    """Submit until a 202, as a client would: 503s are retried, with an Idempotency-Key, so a
    retry never makes a second job."""
    headers = {"Idempotency-Key": uuid.uuid4().hex}

    def attempt():
        resp = submit(base, [png(seed)], timeout_s=10, headers=headers, **kwargs)
        assert resp.status_code in (200, 202, 503), resp.text
        return resp.json() if resp.status_code != 503 else None

    return wait_for(attempt, timeout_s, "a submit to be accepted", 0.25)


@pytest.mark.parametrize("replica_ack", [1, 0], ids=["replica-ack", "no-replica-ack"])
def test_master_killed_while_jobs_flow(stack_factory, capsys, replica_ack):
    receiver = Receiver()
    stack = stack_factory(models=["shapes"], webhooks=True, feeder=True, sentinel=True,
                          claim_idle_s=2, max_attempts=10, webhook_secret=SECRET,
                          webhook_allow_networks="127.0.0.1/32",
                          redis_min_replicas_ack=replica_ack)
    group, old = stack.group, stack.group.master
    flow = Flow(stack.base, total=JOBS, rate=50, threads=8)
    try:
        wait_for(lambda: flow.count() >= KILL_AFTER, 60, f"{KILL_AFTER} accepted jobs", 0.01)
        killed_at, killed_wall = time.monotonic(), time.time()
        old.crash()
        new_port = group.wait_failover(old.port)
        failover_s = time.monotonic() - killed_at
        # The dead node comes back (as systemd would restart it) while jobs still flow; the
        # sentinels make it a replica of the new master, so replica acks can be had again.
        old.restart()
        group.wait_ready(new_port)
        replica_back_s = time.monotonic() - killed_at
        flow.join()
    finally:
        flow.stop()
    answers = collections.Counter(status for _, status, _ in flow.refused)
    answers[202] = len(flow.accepted)
    assert flow.failed == [], f"requests with no answer: {flow.failed[:3]}"
    assert set(answers) <= {202, 503}, flow.refused[:3]


    # The stack goes on by itself: jobs submitted now succeed, a webhook is delivered.
    after = [accepted_after_retries(stack.base, 10_000 + i) for i in range(20)]
    hooked = accepted_after_retries(stack.base, 20_000, data={"webhook": receiver.url("/after")})
    for job in after + [hooked]:
        resp = wait_job(job["urls"]["get"], timeout_s=60)
        assert resp.json()["status"] == "succeeded", resp.text
    wait_for(lambda: receiver.to("/after"), 30, "the webhook after the failover")
    receiver.close()

    # Every accepted job ends, or (without replica acks) was lost with the old master.
    lost, ends = [], collections.Counter()
    for _, job in flow.accepted:
        resp = wait_job(job["urls"]["get"], timeout_s=60)
        if resp.status_code == 404:
            lost.append(job["id"])
            continue
        assert resp.status_code == 200 and resp.json()["finished"], resp.text
        ends[resp.json()["status"]] += 1
    with capsys.disabled():
        print(f"\n[sentinel failover, replica acks {replica_ack}] failover in {failover_s:.1f} s, "
              f"old master back as a replica {replica_back_s:.1f} s after the kill; "
              f"answers {dict(answers)} "
              f"({sum(t > killed_wall for t, _ in flow.accepted)} 202s after the kill); "
              f"of {len(flow.accepted)} accepted jobs {len(lost)} lost, ends {dict(ends)}")
    assert ends["succeeded"] == len(flow.accepted) - len(lost)
    if replica_ack:
        assert lost == []
    assert requests.get(stack.base + "/readyz", timeout=5).status_code == 200
