"""Live figures over the last minute (GET /v1/stats, /v1/workers). The finish scripts add what
each call finished to the hash of its 10-second slot (keys.live_slot), which expires; a reader
sums the last six. Latency is kept as a histogram: bucket b counts jobs whose submit-to-finish
time was in [2^(b/4), 2^((b+1)/4)) ms, so a quantile read from it is within 9% of the truth."""
import math
import time
from collections import Counter

from jobs import keys

SLOT_S = 10
SLOTS = 6
WINDOW_S = SLOT_S * SLOTS
# A slot outlives the window it can be read in, with room for clocks a little apart.
SLOT_TTL_S = WINDOW_S + 2 * SLOT_S
BUCKETS_PER_DOUBLING = 4  # as finish.lua computes the bucket


def slot_of(now: float) -> int:
    return int(now // SLOT_S)


def bucket_ms(bucket: int) -> float:
    """The middle of a latency bucket (geometric), in ms."""
    return 2 ** ((bucket + 0.5) / BUCKETS_PER_DOUBLING)


class Window:
    """The last minute's counts, summed over its slots: `counts[field]` (fields as the finish
    scripts write them, split on "|"), and `span_s`, the seconds they cover (the current slot
    only so far: 50 to 60)."""

    def __init__(self, counts: Counter, span_s: float):
        self.counts, self.span_s = counts, span_s

    def rate(self, *field: str) -> float:
        return self.counts.get(field, 0) / self.span_s

    def histogram(self, model: str, version: str) -> dict[int, int]:
        return {int(f[3]): n for f, n in self.counts.items()
                if f[0] == "lat" and f[1] == model and f[2] == version}

    def versions(self) -> set[tuple[str, str]]:
        """(model, version) of every version that finished something in the window."""
        return {(f[1], f[2]) for f in self.counts if f[0] in ("jobs", "inputs", "lat")}


def read(redis, now: float | None = None) -> Window:
    now = time.time() if now is None else now
    current = slot_of(now)
    pipe = redis.pipeline(transaction=False)
    for slot in range(current - SLOTS + 1, current + 1):
        pipe.hgetall(keys.live_slot(slot))
    counts = Counter()
    for raw in pipe.execute():
        for field, value in raw.items():
            counts[tuple(field.decode().split("|"))] += int(value)
    span = now - (current - SLOTS + 1) * SLOT_S
    return Window(counts, max(span, 1.0))


def quantile(histogram: dict[int, int], q: float) -> float | None:
    """The q-quantile (0..1) of a latency histogram, in ms (a bucket's middle); None if empty."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = math.ceil(q * total)
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return round(bucket_ms(bucket), 1)
    return round(bucket_ms(max(histogram)), 1)
