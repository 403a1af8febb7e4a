"""Run 8: `inferq predict` (the command line) over a folder of photos, against run 2's load
generator through the same stack: the client must not be what limits a user's throughput."""
import os
import shutil
import subprocess
import time
from pathlib import Path

from bench.common import WORK
from stack.processes import BIN


def build_folder(images: Path, n: int) -> Path:
    """`n` files cycling through the run's photos."""
    folder = WORK / "folder"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    photos = sorted(images.iterdir())
    for i in range(n):
        os.link(photos[i % len(photos)], folder / f"{i:05d}.jpg")
    return folder


def run(port: int, model: str, folder: Path, n: int, concurrency: int, say) -> dict:
    out = WORK / "predict.jsonl"
    out.unlink(missing_ok=True)
    env = {**os.environ, "INFERQ_URL": f"http://127.0.0.1:{port}"}
    env.pop("INFERQ_API_KEY", None)
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "inferq"), "predict", model, str(folder), "--out", str(out),
                           "--concurrency", str(concurrency)], env=env, capture_output=True,
                          text=True, timeout=1800)
    seconds = time.perf_counter() - started
    lines = out.read_text().splitlines() if out.exists() else []
    if done.returncode != 0 or len(lines) != n:
        raise RuntimeError(f"inferq predict exited {done.returncode} with {len(lines)} of {n} "
                           f"lines: {done.stderr[-1000:]}")
    result = {"images": n, "concurrency": concurrency, "seconds": round(seconds, 2),
              "img_s": n / seconds}
    say(f"   {result['img_s']:.1f} images/s ({n} images in {result['seconds']} s, "
        f"{concurrency} in flight)")
    return result
