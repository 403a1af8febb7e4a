"""The pure batching core, driven by a fake clock."""
import numpy as np
import pytest

from batching import BatchPolicy, OutputMismatch, bucket_for, buckets, pad, split


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_greedy_policy_is_due_as_soon_as_anything_arrived():
    policy = BatchPolicy(8, max_wait_s=0, clock=FakeClock())
    assert not policy.due()
    policy.add(["a", "b"])
    assert policy.due()
    assert policy.take() == ["a", "b"]
    assert not policy.due()


def test_batch_is_due_when_full_before_the_wait_ends():
    clock = FakeClock()
    policy = BatchPolicy(3, max_wait_s=1.0, clock=clock)
    policy.add(["a", "b"])
    assert not policy.due()
    assert policy.room == 1
    policy.add(["c"])
    assert policy.due()


def test_batch_is_due_when_the_wait_since_the_first_item_ends():
    clock = FakeClock()
    policy = BatchPolicy(10, max_wait_s=0.5, clock=clock)
    assert policy.time_left() == float("inf")
    policy.add(["a"])
    clock.now += 0.3
    policy.add(["b"])  # a later item does not restart the wait
    assert not policy.due()
    assert policy.time_left() == pytest.approx(0.2)
    clock.now += 0.2
    assert policy.due()
    assert policy.take() == ["a", "b"]


def test_take_returns_at_most_max_batch_size_and_keeps_the_rest():
    clock = FakeClock()
    policy = BatchPolicy(2, max_wait_s=1.0, clock=clock)
    policy.add([1, 2, 3])
    assert policy.take() == [1, 2]
    assert policy.items == [3]
    assert not policy.due()  # the rest starts a new wait
    clock.now += 1.0
    assert policy.due()


def test_policy_rejects_nonsense():
    with pytest.raises(ValueError):
        BatchPolicy(0)
    with pytest.raises(ValueError):
        BatchPolicy(4, max_wait_s=-1)


def test_buckets_are_powers_of_two_up_to_the_max():
    assert buckets(1) == [1]
    assert buckets(32) == [1, 2, 4, 8, 16, 32]
    assert buckets(24) == [1, 2, 4, 8, 16, 24]
    assert [bucket_for(n, buckets(32)) for n in (1, 2, 3, 5, 17, 32)] == [1, 2, 4, 8, 32, 32]
    with pytest.raises(ValueError):
        bucket_for(33, buckets(32))


def test_pad_adds_zero_rows_and_keeps_the_inputs():
    batch = np.ones((3, 2, 2, 1), dtype=np.uint8)
    padded = pad(batch, 4)
    assert padded.shape == (4, 2, 2, 1) and padded.dtype == np.uint8
    assert (padded[:3] == 1).all() and (padded[3] == 0).all()
    assert pad(batch, 3) is batch
    with pytest.raises(ValueError):
        pad(batch, 2)


def test_split_drops_padding_rows_and_keeps_order():
    outputs = np.arange(8).reshape(4, 2)
    rows = split(outputs, 3, 4)
    assert [r.tolist() for r in rows] == [[0, 1], [2, 3], [4, 5]]


@pytest.mark.parametrize("outputs", [np.zeros((3, 2)), np.zeros((5, 2)), np.float32(1.0)])
def test_split_refuses_outputs_that_do_not_match_the_batch(outputs):
    with pytest.raises(OutputMismatch):
        split(np.asarray(outputs), 3, 4)
