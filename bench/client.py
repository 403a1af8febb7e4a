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
    """The whole process's images/s, and its steady rate: from its 10th to its 90th percent of
    lines (the --out file is flushed line by line), as run 2 counts windows after a warm-up."""
    out = WORK / "predict.jsonl"
    out.unlink(missing_ok=True)
    env = {**os.environ, "INFERQ_URL": f"http://127.0.0.1:{port}"}
    env.pop("INFERQ_API_KEY", None)
    started = time.perf_counter()
    proc = subprocess.Popen([str(BIN / "inferq"), "predict", model, str(folder), "--out",
                             str(out), "--concurrency", str(concurrency)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []  # (seconds, lines written)
    while proc.poll() is None:
        samples.append((time.perf_counter() - started, _count(out)))
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    err = proc.stderr.read()
    written = _count(out)
    if proc.returncode != 0 or written != n:
        raise RuntimeError(f"inferq predict exited {proc.returncode} with {written} of {n} "
                           f"lines: {err[-1000:]}")
    samples.append((seconds, written))
    t10 = next(t for t, k in samples if k >= n * 0.1)
    t90 = next(t for t, k in samples if k >= n * 0.9)
    result = {"images": n, "concurrency": concurrency, "seconds": round(seconds, 2),
              "img_s_whole": n / seconds, "img_s": n * 0.8 / (t90 - t10)}
    say(f"   {result['img_s']:.1f} images/s steady (10% to 90% of the lines); "
        f"{result['img_s_whole']:.1f} images/s from start to exit ({n} images in "
        f"{result['seconds']} s, {concurrency} in flight)")
    return result


def _count(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0
