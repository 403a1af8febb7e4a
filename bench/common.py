"""What the benchmark's parts share: where things live, the test images, reading a process's CPU
time and memory from /proc, and the machine's description. No TensorFlow here."""
import io
import json
import os
import platform
import random
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"  # git-ignored: the model repository, logs of a failed run
RESULTS = BENCH / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# The two profiles. "full" is the published figure; "quick" exercises every path in CI.
PROFILES = {
    "full": {
        "model": "mobilenet_v2", "alpha": 1.0, "size": 224,
        "ceiling_batches": 8, "ceiling_rounds": 5, "single_calls": 200,
        "clients": 128, "e2e_warmup_s": 15, "e2e_window_s": 20, "e2e_windows": 3, "e2e_ramp_s": 3,
        "idle_jobs": 300, "idle_warmup": 20,
        "null_jobs": 20000, "null_rounds": 3,
        "naive_warmup_s": 15, "naive_window_s": 20, "naive_windows": 3,
        "api_clients": 64, "api_warmup_s": 3, "api_window_s": 10, "api_windows": 3,
        "quiet_wait_s": 120, "retries": 4, "batch_images": 2000,
        "cli_ref_warmup_s": 5, "cli_ref_window_s": 15,
    },
    "quick": {
        "model": "mobilenet_v2_035_96", "alpha": 0.35, "size": 96,
        "ceiling_batches": 4, "ceiling_rounds": 3, "single_calls": 30,
        "clients": 96, "e2e_warmup_s": 3, "e2e_window_s": 3, "e2e_windows": 2, "e2e_ramp_s": 1,
        "idle_jobs": 30, "idle_warmup": 5,
        "null_jobs": 2000, "null_rounds": 1,
        "naive_warmup_s": 3, "naive_window_s": 3, "naive_windows": 1,
        "api_clients": 32, "api_warmup_s": 1, "api_window_s": 2, "api_windows": 1,
        "quiet_wait_s": 3, "retries": 1, "batch_images": 300,
        "cli_ref_warmup_s": 2, "cli_ref_window_s": 3,
    },
}
MAX_BATCH_SIZE = 32
NULL_MODEL = "null"


# -- test images ---------------------------------------------------------------------------
def photo_jpeg(seed: int, size=(640, 480), quality: int = 90) -> bytes:
    """A photo-like JPEG: smooth gradients, shapes with soft edges and sensor-like noise, so it
    costs about what a camera picture of that size costs to decode (pure noise would cost more,
    flat colour much less)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = random.Random(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([(x / w) * rng.uniform(60, 200) + (y / h) * rng.uniform(0, 80)
                     for _ in range(3)], axis=-1) + np.array([rng.uniform(0, 60) for _ in range(3)])
    im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1, y1 = x0 + rng.randrange(20, w // 2), y0 + rng.randrange(20, h // 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    im = im.filter(ImageFilter.GaussianBlur(2))
    noise = np.random.default_rng(seed).normal(0, 6, (h, w, 3))
    arr = np.clip(np.asarray(im, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(arr, "RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def small_jpeg() -> bytes:
    """What the API-alone runs submit: photo 0 (640x480) scaled to 128x96, about 2.3 KB."""
    from PIL import Image

    im = Image.open(io.BytesIO(photo_jpeg(0))).resize((128, 96))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=85)
    return out.getvalue()


def tiny_png(seed: int, size: int = 8) -> bytes:
    from PIL import Image

    rng = random.Random(seed)
    im = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def multipart(data: bytes, filename: str = "image.jpg", field: str = "image",
              boundary: str = "inferqbenchboundary7MA4YWxkTrZu0gW") -> tuple[bytes, str]:
    """A multipart/form-data body with one file, and its Content-Type."""
    ctype = "image/jpeg" if filename.endswith(".jpg") else "image/png"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: {ctype}\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


# -- /proc ----------------------------------------------------------------------------------
def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def children(pid: int) -> list[int]:
    """Direct children of `pid` (gunicorn's worker processes)."""
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(p) for p in f.read().split()]
    except FileNotFoundError:
        pass
    return out


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants (a worker's model processes, gunicorn's workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def memory_mb(pid: int) -> dict:
    """Resident memory now and at its peak (VmRSS, VmHWM), in MiB."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, kb = line.split()[:2]
                    values[key[:-1]] = int(kb) / 1024
    except FileNotFoundError:
        pass
    return {"rss_mb": round(values.get("VmRSS", 0.0), 1),
            "peak_mb": round(values.get("VmHWM", 0.0), 1)}


def machine_cpu_s() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


class CpuMeter:
    """CPU seconds used by named process trees (root pids) between snapshots, and by the rest
    of the machine ("other": processes this benchmark did not start)."""

    def __init__(self, roots: dict[str, int]):
        self.roots = roots

    def snapshot(self) -> dict[str, float]:
        snap = {name: sum(cpu_s(p) for p in tree(pid)) for name, pid in self.roots.items()}
        own = os.times()
        snap["bench"] = own.user + own.system  # this orchestrator itself
        snap["_busy"], snap["_steal"] = machine_cpu_s()
        return snap

    @staticmethod
    def delta(a: dict, b: dict) -> dict:
        d = {k: b[k] - a[k] for k in a}
        busy = d.pop("_busy")
        d["steal"] = d.pop("_steal")
        d["other"] = max(0.0, busy - sum(v for k, v in d.items() if k != "steal"))
        return d


def busy_cores(interval_s: float = 1.0) -> float:
    """How many cores the machine kept busy over the last `interval_s`."""
    import time

    b0, _ = machine_cpu_s()
    time.sleep(interval_s)
    return (machine_cpu_s()[0] - b0) / interval_s


# -- the machine ----------------------------------------------------------------------------
def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except FileNotFoundError:
        pass
    mem_gib = os.sysconf("SC_PHYS_PAGES") * PAGE / 2 ** 30
    # From the installed distributions, without importing them: keras would load TensorFlow
    # into the orchestrator.
    from importlib.metadata import version
    versions = {}
    dists = {"tensorflow": ("tensorflow-cpu", "tensorflow"), "PIL": ("pillow",)}
    for module in ("tensorflow", "keras", "celery", "redis", "flask", "gunicorn", "PIL", "numpy"):
        versions[module] = None
        for dist in dists.get(module, (module,)):
            try:
                versions[module] = version(dist)
                break
            except Exception:
                continue
    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_gib, 1),
        "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
        "versions": versions, "redis_server": (redis_v.split("v=")[1].split()[0]
                                                if "v=" in redis_v else redis_v.strip()),
        "gpu": False,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def run_json(args: list[str], env=None, timeout=None) -> dict:
    """Run a bench helper (`python -m bench.X ...`) in its own process; it prints one JSON line
    last. Raises with its output when it fails."""
    proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, start_new_session=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def write_results(name: str, out: dict, table: str, plot) -> list[Path]:
    """bench/results/<name>.json, .md (the table) and .png (`plot(out, path)`); prints the
    table and returns the paths written."""
    paths = [RESULTS / f"{name}.{ext}" for ext in ("json", "md", "png")]
    paths[0].write_text(json.dumps(out, indent=2) + "\n")
    paths[1].write_text(table + "\n")
    plot(out, paths[2])
    print(f"\n{table}\n")
    return paths
