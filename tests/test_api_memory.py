"""An API process gives back the memory of the photos it was sent: after hundreds of jobs of
eight 640x480 photos each, sent 64 at a time (what `inferq predict` sends), each gunicorn
worker is about as small as it started (real Redis, the API under gunicorn; no worker, so the
jobs stay queued)."""
import asyncio
import io

import httpx
import numpy as np
from PIL import Image

from stack.processes import RedisServer, children, start_api, wait_for
from tests.test_batches_api import rss_mb

JOBS, IN_FLIGHT, PER_JOB = 400, 64, 8
BOUND_MB = 90  # a process that kept its request buffers grows past 100 MB here


def photo(seed: int) -> bytes:
    """A 640x480 JPEG of noise on a gradient: about 140 KB, as a camera photo is at that size."""
    rng = np.random.default_rng(seed)
    pixels = rng.random((480, 640, 3)) * 60 + np.linspace(0, 190, 640)[None, :, None]
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


async def submit_all(base: str, photos: list[bytes]) -> list[int]:
    gate = asyncio.Semaphore(IN_FLIGHT)
    limits = httpx.Limits(max_connections=IN_FLIGHT)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        async def one(i: int) -> int:
            files = [("image", (f"{j}.jpg", photos[(i + j) % len(photos)], "image/jpeg"))
                     for j in range(PER_JOB)]
            async with gate:
                resp = await client.post(f"{base}/v1/models/shapes/jobs", files=files)
            return resp.status_code
        return await asyncio.gather(*(one(i) for i in range(JOBS)))


def test_api_processes_give_back_the_memory_of_photo_uploads():
    redis = RedisServer()
    api = None
    try:
        api, base = start_api(redis.url, api_workers=2, max_backlog=JOBS * PER_JOB)
        workers = wait_for(lambda: children(api.pid), 10, "the API's workers")
        at_start = {pid: rss_mb(pid) for pid in workers}
        statuses = asyncio.run(submit_all(base, [photo(i) for i in range(16)]))
        assert statuses == [202] * JOBS
        after = {pid: rss_mb(pid) for pid in workers}
        print(f"API worker RSS MB: at start {at_start}, after {JOBS} jobs {after}")
        assert max(after.values()) < BOUND_MB, (at_start, after)
    finally:
        if api is not None:
            api.stop()
        redis.stop()
