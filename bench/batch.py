"""Run 7: a bulk batch. A tar of photos goes through the batch API, from the first byte of the
upload to `completed`, while one client submits single jobs one at a time: the batch's
images/s (set against the model's in-process ceiling) and the single jobs' latency during it
(set against the idle latency of run 3)."""
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


def run(base: str, model: str, tar: Path, n: int, images: Path, say) -> dict:
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

    started = time.perf_counter()
    with open(tar, "rb") as body:
        resp = requests.post(f"{base}/v1/models/{model}/batches", data=body,
                             headers={"Content-Type": "application/x-tar"}, timeout=600)
    if resp.status_code != 202:
        raise RuntimeError(f"batch upload answered {resp.status_code}: {resp.text[:500]}")
    batch = resp.json()
    uploaded = time.perf_counter()
    prober = threading.Thread(target=single_jobs, daemon=True)
    prober.start()
    try:
        while batch["status"] not in ("completed", "failed", "cancelled", "expired"):
            batch = requests.get(f"{base}/v1/batches/{batch['id']}", params={"wait": 10},
                                 timeout=30).json()
    finally:
        stop.set()
        prober.join(70)
    done = time.perf_counter()
    counts = batch["request_counts"]
    if batch["status"] != "completed" or counts["completed"] != n:
        raise RuntimeError(f"batch ended {batch['status']} with {counts}")
    out = {"images": n, "tar_mb": round(tar.stat().st_size / 2 ** 20, 1),
           "upload_s": round(uploaded - started, 2), "total_s": round(done - started, 2),
           "img_s": n / (done - started),
           "during_jobs": len(latencies),
           "during_p50_ms": round(pct(latencies, 0.5), 2) if latencies else None,
           "during_p99_ms": round(pct(latencies, 0.99), 2) if latencies else None}
    say(f"   {out['img_s']:.1f} images/s upload to completed ({out['total_s']} s, the upload "
        f"{out['upload_s']} s); single jobs during it p50 {out['during_p50_ms']} ms "
        f"({out['during_jobs']} jobs)")
    return out
