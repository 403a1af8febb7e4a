"""Bulk batches under failure (make chaos): the model worker, the feeder or Redis dies in the
middle of a batch, and the batch still completes with every custom_id exactly once across its
results and errors files: none lost, none written twice."""
import pytest
import requests

from stack.processes import wait_for
from tests.batch_tools import each_once, shape_tar, submit, wait_final

pytestmark = pytest.mark.chaos
N = 1500


def started_batch(stack, seed: int) -> tuple[str, dict, str]:
    data, labels = shape_tar(N, seed=seed, extra=[("broken.png", b"\x89PNG\r\n\x1a\nbroken")])
    labels["broken.png"] = None
    batch = submit(stack.base, data).json()
    url = f"{stack.base}/v1/batches/{batch['id']}"

    def under_way():
        c = requests.get(url, timeout=10).json()["request_counts"]
        return c["completed"] >= N // 5

    wait_for(under_way, 180, "a fifth of the batch to finish")
    return batch["id"], labels, url


def check_complete(stack, batch_id, labels):
    final = wait_final(stack.base, batch_id, timeout_s=600)
    assert final["status"] == "completed", final
    assert final["request_counts"] == {"total": N + 1, "completed": N, "failed": 1}
    ok, bad = each_once(stack.base, batch_id, labels)
    assert [x["custom_id"] for x in bad] == ["broken.png"]
    assert len(ok) == N


def test_the_model_worker_killed_mid_batch(stack_factory):
    stack = stack_factory(models=["shapes"], feeder=True, claim_idle_s=2)
    batch_id, labels, _ = started_batch(stack, seed=31)
    stack.worker.kill9()
    stack.start_worker(["shapes"])
    check_complete(stack, batch_id, labels)


def test_the_feeder_killed_mid_batch(stack_factory):
    stack = stack_factory(models=["shapes"], feeder=True)
    batch_id, labels, _ = started_batch(stack, seed=32)
    stack.feeder.kill9()
    stack.start_feeder()  # takes the batch over once the dead one's lease runs out
    check_complete(stack, batch_id, labels)


def test_redis_restarted_mid_batch(stack_factory):
    stack = stack_factory(models=["shapes"], feeder=True, aof=True, claim_idle_s=2)
    batch_id, labels, _ = started_batch(stack, seed=33)
    stack.redis.crash_and_restart(down_s=1.0)
    check_complete(stack, batch_id, labels)
