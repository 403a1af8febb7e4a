"""The ceiling: the bench model called in-process through a compiled tf.function, on uint8 batches
of max_batch_size, cast and normalised inside the graph (what worker/predictor.py does), with no
queue, HTTP or decoding around it. Also its single-image latency.

python -m bench.ceiling --model-file F --size S --batch 32 --batches N --rounds R --single M
Prints one JSON line.

python -m bench.ceiling --serve --model-file F --size S [--batch 32]
Prints a JSON line when ready, then for each line read on stdin: an empty line calls the model on
one image and prints that call's latency (ms); "batches N" runs N batches and prints images/s.
Runs 2 and 3 call it between their windows and jobs."""
import argparse
import json
import os
import statistics
import sys
import time

from bench.common import machine_cpu_s

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def proc_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-file", required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--single", type=int, default=200)
    ap.add_argument("--max-rounds", type=int, default=15)
    ap.add_argument("--clean-cores", type=float, default=0.15)
    ap.add_argument("--serve", action="store_true")
    a = ap.parse_args()

    import numpy as np
    import tensorflow as tf

    model = tf.keras.models.load_model(a.model_file, compile=False)

    @tf.function
    def run(x):
        return model(tf.cast(x, tf.float32) / 127.5 - 1.0, training=False)

    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (a.batch, a.size, a.size, 3), dtype=np.uint8)
    one = batch[:1].copy()
    for _ in range(3):  # trace and warm both shapes
        np.asarray(run(batch))
        np.asarray(run(one))
    if a.serve:
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            n, t = int(line.split()[1]) if line.startswith("batches") else 0, time.perf_counter()
            for _ in range(n):
                np.asarray(run(batch))
            if not n:
                np.asarray(run(one))
            wall = time.perf_counter() - t
            print(f"{n * a.batch / wall:.3f}" if n else f"{wall * 1000:.3f}", flush=True)
        return

    # Rounds during which other processes kept the machine busy are measured again (up to
    # --max-rounds), so a shared machine does not lower the ceiling unnoticed.
    rates, cpu_shares, rounds = [], [], []
    while len(rates) < a.rounds and len(rounds) < a.max_rounds:
        c0, (b0, _), t0 = proc_cpu_s(), machine_cpu_s(), time.perf_counter()
        for _ in range(a.batches):
            np.asarray(run(batch))
        wall = time.perf_counter() - t0
        own, other = proc_cpu_s() - c0, (machine_cpu_s()[0] - b0 - (proc_cpu_s() - c0)) / wall
        rounds.append({"img_s": round(a.batches * a.batch / wall, 2), "cores": round(own / wall, 2),
                       "other_cores": round(other, 2)})
        if other < a.clean_cores:
            rates.append(a.batches * a.batch / wall)
            cpu_shares.append(own / wall)
    contended = len(rates) < a.rounds
    if contended:  # no luck: the least contended rounds, flagged
        best = sorted(rounds, key=lambda r: r["other_cores"])[:a.rounds]
        rates = [r["img_s"] for r in best]
        cpu_shares = [r["cores"] for r in best]

    lat, chunks = [], 0
    while len(lat) < a.single and chunks < a.max_rounds * 4:
        chunk, c0, (b0, _), t0 = [], proc_cpu_s(), machine_cpu_s(), time.perf_counter()
        for _ in range(max(10, a.single // 4)):
            t = time.perf_counter()
            np.asarray(run(one))
            chunk.append((time.perf_counter() - t) * 1000)
        wall = time.perf_counter() - t0
        chunks += 1
        if (machine_cpu_s()[0] - b0 - (proc_cpu_s() - c0)) / wall < a.clean_cores or \
                chunks >= a.max_rounds * 4:
            lat += chunk
    lat.sort()
    img_s = statistics.median(rates)
    print(json.dumps({
        "img_s": img_s, "img_s_rounds": [round(r, 1) for r in rates],
        "rounds": rounds, "contended": contended,
        "cores_busy": round(statistics.median(cpu_shares), 2),
        "batch_ms": round(a.batch / img_s * 1000, 1),
        "single_ms_p50": round(statistics.median(lat), 2),
        "single_ms_p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2),
        "tf": tf.__version__,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
    }))


if __name__ == "__main__":
    main()
