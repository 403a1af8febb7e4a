"""What INFERQ_REDIS_MIN_REPLICAS_ACK=1 costs a submit: a local master and one replica, two APIs
on it (one with the setting, one without), the same submits to each in turns.

    .venv/bin/python -m bench.replica_ack [--jobs 1000] [--threads 8]

Prints, for each API: one client's submit latency (p50, p99) and the submits/s of `--threads`
clients. No worker runs: the jobs stay queued (the backlog limit is raised for them)."""
import argparse
import io
import statistics
import threading
import time

import requests
from PIL import Image

from stack.processes import RedisServer, start_api, wait_for

BLOCK = 100  # submits to one API before the other's turn
ROUNDS = 5  # throughput windows of each API, in turns


def _image() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def _submit(session, base: str, image: bytes) -> float:
    t0 = time.perf_counter()
    resp = session.post(f"{base}/v1/models/shapes/jobs", files=[("image", ("x.png", image))],
                        timeout=10)
    elapsed = time.perf_counter() - t0
    if resp.status_code != 202:
        raise RuntimeError(f"{base}: {resp.status_code} {resp.text}")
    return elapsed


def _latencies(bases: dict, jobs: int, image: bytes) -> dict:
    """One client, BLOCK submits to each API in turn, until each had `jobs`."""
    out = {name: [] for name in bases}
    sessions = {name: requests.Session() for name in bases}
    while any(len(v) < jobs for v in out.values()):
        for name, base in bases.items():
            out[name] += [_submit(sessions[name], base, image) for _ in range(BLOCK)]
    return out


def _throughput(base: str, threads: int, seconds: float, image: bytes) -> float:
    done, stop = [0] * threads, threading.Event()

    def run(i):
        session = requests.Session()
        while not stop.is_set():
            _submit(session, base, image)
            done[i] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    return sum(done) / (time.perf_counter() - t0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="throughput time of each API, in ROUNDS windows")
    options = parser.parse_args()
    master = RedisServer()
    replica = RedisServer(replica_of=master.port)
    procs = []
    try:
        wait_for(lambda: replica.client.info("replication")["master_link_status"] == "up", 10,
                 "the replica to sync")
        bases = {}
        for name, acks in (("no wait", 0), ("WAIT 1", 1)):
            proc, bases[name] = start_api(master.url, api_workers=1, max_backlog=10 ** 7,
                                          redis_min_replicas_ack=acks)
            procs.append(proc)
        image = _image()
        _latencies(bases, BLOCK, image)  # warm up: connections, imports, the script cache
        latencies = _latencies(bases, options.jobs, image)
        # Throughput in short windows taken in turns, so that a slow moment of this shared
        # machine falls on both; the median window of each.
        rates = {name: [] for name in bases}
        for _ in range(ROUNDS):
            for name, base in bases.items():
                rates[name].append(_throughput(base, options.threads,
                                               options.seconds / ROUNDS, image))
        for name in bases:
            ms = sorted(x * 1000 for x in latencies[name])
            p99 = ms[int(len(ms) * 0.99) - 1]
            print(f"{name:8s} one client: p50 {statistics.median(ms):.2f} ms, p99 {p99:.2f} ms "
                  f"({len(ms)} submits); {options.threads} clients: "
                  f"{statistics.median(rates[name]):.0f} submits/s (median of {ROUNDS} windows: "
                  f"{', '.join(f'{r:.0f}' for r in rates[name])})")
    finally:
        for proc in procs:
            proc.stop()
        replica.stop()
        master.stop()


if __name__ == "__main__":
    main()
