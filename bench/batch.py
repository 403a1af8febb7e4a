"""Run 7: bulk batches. A tar of photos goes through the batch API, from the first byte of the
upload to `completed`: its images/s, set against the model in-process just before and after
it (bench.ceiling --serve, as run 2 does between its windows). Then the same
tar again while one client submits single jobs one at a time: their latency during it, set
against the idle latency of run 3. Two batches, because each single job costs a model run of
its own, which the throughput figure should not carry."""
import tarfile
import threading
import time
from pathlib import Path

import requests

from bench.common import WORK, pct


def build_tar(images: Path, n: int) -> Path:
    """A tar of `n` members cycling through the run's photos."""
    photos = sorted(images.iterdir())
    path = WORK / "batch.tar"
    with tarfile.open(path, "w") as tar:
        for i in range(n):
            tar.add(photos[i % len(photos)], arcname=f"photos/{i:05d}.jpg")
    return path


def run(base: str, model: str, tar: Path, n: int, images: Path, say, ceiling) -> dict:
    """`ceiling()`: the model's images/s in-process, measured just before and just after the
    first batch, which is set against their mean."""
    before = ceiling()
    seconds, upload_s = _batch(base, model, tar, n)
    after = ceiling()
    photo = sorted(images.iterdir())[0].read_bytes()
    latencies, stop = [], threading.Event()

    def single_jobs():
        while not stop.is_set():
            t0 = time.perf_counter()
            job = requests.post(f"{base}/v1/models/{model}/jobs",
                                files={"image": ("one.jpg", photo)},
                                headers={"Prefer": "wait=30"}, timeout=60).json()
            if job.get("status") == "succeeded" and not stop.is_set():
                latencies.append((time.perf_counter() - t0) * 1000)
            stop.wait(0.2)  # a user now and then, not a second load

    prober = threading.Thread(target=single_jobs, daemon=True)
    prober.start()
    try:
        _batch(base, model, tar, n)
    finally:
        stop.set()
        prober.join(70)
    out = {"images": n, "tar_mb": round(tar.stat().st_size / 2 ** 20, 1),
           "upload_s": round(upload_s, 2), "total_s": round(seconds, 2), "img_s": n / seconds,
           "ceiling_rounds": [round(before, 2), round(after, 2)],
           "ceiling_img_s": (before + after) / 2,
           "during_jobs": len(latencies),
           "during_p50_ms": round(pct(latencies, 0.5), 2) if latencies else None,
           "during_p99_ms": round(pct(latencies, 0.99), 2) if latencies else None}
    say(f"   {out['img_s']:.1f} images/s upload to completed ({out['total_s']} s, the upload "
        f"{out['upload_s']} s); in-process before and after {out['ceiling_rounds']}: ratio "
        f"{out['img_s'] / out['ceiling_img_s']:.3f}; single jobs during a second one: p50 {out['during_p50_ms']} ms "
        f"({out['during_jobs']} jobs)")
    return out


def _batch(base: str, model: str, tar: Path, n: int) -> tuple[float, float]:
    """Upload `tar` as a batch and wait until it completes: (seconds in all, of the upload)."""
    started = time.perf_counter()
    with open(tar, "rb") as body:
        resp = requests.post(f"{base}/v1/models/{model}/batches", data=body,
                             headers={"Content-Type": "application/x-tar"}, timeout=600)
    if resp.status_code != 202:
        raise RuntimeError(f"batch upload answered {resp.status_code}: {resp.text[:500]}")
    batch = resp.json()
    uploaded = time.perf_counter()
    while batch["status"] not in ("completed", "failed", "cancelled", "expired"):
        batch = requests.get(f"{base}/v1/batches/{batch['id']}", params={"wait": 10},
                             timeout=30).json()
    counts = batch["request_counts"]
    if batch["status"] != "completed" or counts["completed"] != n:
        raise RuntimeError(f"batch ended {batch['status']} with {counts}")
    return time.perf_counter() - started, uploaded - started
