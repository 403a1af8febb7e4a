"""Micro-batching decisions, free of any transport or framework: when a batch is due, which
padded size it runs at, and how outputs map back to inputs."""
import time

import numpy as np


class OutputMismatch(RuntimeError):
    """The model returned a number of outputs that does not match its inputs."""


class BatchPolicy:
    """Collects items until a batch is due: `max_batch_size` items, or `max_wait_s` after the
    first item arrived. `max_wait_s=0` is greedy: whatever has arrived is due at once."""

    def __init__(self, max_batch_size: int, max_wait_s: float = 0.0, clock=time.monotonic):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if max_wait_s < 0:
            raise ValueError("max_wait_s must not be negative")
        self.max_batch_size, self.max_wait_s, self.clock = max_batch_size, max_wait_s, clock
        self.items: list = []
        self._first_at: float | None = None

    def add(self, items) -> None:
        if items and not self.items:
            self._first_at = self.clock()
        self.items.extend(items)

    @property
    def room(self) -> int:
        return max(0, self.max_batch_size - len(self.items))

    def time_left(self) -> float:
        """Seconds until the open batch is due by time (0 when due, inf when empty)."""
        if not self.items:
            return float("inf")
        return max(0.0, self._first_at + self.max_wait_s - self.clock())

    def due(self) -> bool:
        return bool(self.items) and (self.room == 0 or self.time_left() == 0)

    def take(self) -> list:
        """The next batch (at most `max_batch_size` items); the rest stay for the next one."""
        batch = self.items[:self.max_batch_size]
        self.items = self.items[self.max_batch_size:]
        self._first_at = self.clock() if self.items else None
        return batch


def buckets(max_batch_size: int) -> list[int]:
    """Padded batch sizes: powers of two below `max_batch_size`, then `max_batch_size` itself.
    A compiled model is traced once per bucket instead of once per batch size."""
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return sizes + [max_batch_size]


def bucket_for(n: int, sizes: list[int]) -> int:
    for size in sizes:
        if size >= n:
            return size
    raise ValueError(f"batch of {n} is larger than the largest bucket {sizes[-1]}")


def pad(batch: np.ndarray, size: int) -> np.ndarray:
    """Pad `batch` along its first axis to `size` rows with zeros."""
    n = batch.shape[0]
    if n == size:
        return batch
    if n > size:
        raise ValueError(f"cannot pad {n} rows down to {size}")
    padding = np.zeros((size - n,) + batch.shape[1:], dtype=batch.dtype)
    return np.concatenate([batch, padding])


def split(outputs: np.ndarray, n_inputs: int, padded_size: int) -> list[np.ndarray]:
    """One output row per real input; the padding rows are dropped. Checks the model returned
    exactly one row per padded input, so results can never be shifted onto the wrong job."""
    if outputs.ndim == 0 or outputs.shape[0] != padded_size:
        got = "a scalar" if outputs.ndim == 0 else f"{outputs.shape[0]} rows"
        raise OutputMismatch(f"model returned {got} for a batch of {padded_size}")
    return [outputs[i] for i in range(n_inputs)]
