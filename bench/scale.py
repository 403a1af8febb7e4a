"""The scaling benchmark: how jobs/s and Redis's CPU grow with worker processes and API
processes against one Redis, and how many GPUs one Redis can feed (bench/README.md, "Scaling").

python -m bench.scale            # make bench-scale: bench/results/scale.{json,md,png}
python -m bench.scale --quick    # in make bench-quick: 1 and 2 workers, few jobs: scale-quick.*

Like bench.run it starts its own redis-server, workers and API processes, and stops them on
exit, failure or Ctrl-C. Workers serve the null model (bench.build): the model step costs
nothing, so what is left is the queue's own work, in the workers and in Redis."""
import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

import redis

from bench import scale_report
from bench.common import NULL_MODEL, RESULTS, WORK, CpuMeter, machine, run_json, small_jpeg, \
    tiny_png, write_results
from bench.run import (CLEAN_CORES, BenchRedis, Failure, Stack, closed_loop, git_state, say,
                       start_api, wait_quiet)
from jobs import keys
from jobs.producer import Producer
from jobs.settings import load_settings
from stack.processes import start_worker, wait_until_serving

PROFILES = {
    # Rounds go up 1, 2, 4, 8 workers, adding processes; each point of a round is measured
    # again (up to `retries` times) when other processes kept CLEAN_CORES busy.
    "full": {"workers": [1, 2, 4, 8], "jobs": 20000, "jobs8": 2500, "rounds": 3, "retries": 2,
             "api_procs": [1, 2, 4], "api_clients": 64, "api_warmup_s": 3, "api_window_s": 10,
             "path_workers": 2, "path_clients": 64, "path_warmup_s": 5, "path_window_s": 10,
             "quiet_wait_s": 10, "fill": True},
    "quick": {"workers": [1, 2], "jobs": 600, "jobs8": 75, "rounds": 1, "retries": 1,
              "api_procs": [1], "api_clients": 16, "api_warmup_s": 2, "api_window_s": 1.5,
              "path_workers": 1, "path_clients": 16, "path_warmup_s": 2, "path_window_s": 1.5,
              "quiet_wait_s": 1, "fill": False},
}
IMAGES_PER_JOB = (1, 8)
# The whole path run again with batches that fill (about 32 of the 64 clients' jobs each).
FILL_WAIT_S = 0.05


def redis_cpu(client: redis.Redis) -> dict:
    """Redis's own account of its CPU seconds: the process, and its main thread (the one that
    runs every command, and so the one that saturates)."""
    info = client.info("cpu")
    return {"process": info["used_cpu_sys"] + info["used_cpu_user"],
            "main": info.get("used_cpu_sys_main_thread", info["used_cpu_sys"])
            + info.get("used_cpu_user_main_thread", info["used_cpu_user"])}


class Workers:
    """Null-model worker processes against one Redis, added as the round goes up."""

    def __init__(self, stack: Stack, rserver: BenchRedis, repo: Path, **settings):
        self.stack, self.rserver, self.repo = stack, rserver, repo
        self.settings = settings
        self.procs = []

    def grow(self, n: int):
        new = []
        while len(self.procs) + len(new) < n:
            name = f"worker-null-{len(self.procs) + len(new)}"
            new.append((name, self.stack.proc(name, start_worker(
                self.rserver.url, models=[NULL_MODEL], wait_ready=False,
                model_repository=str(self.repo), **self.settings))))
        for _, proc in new:
            wait_until_serving(proc, self.rserver.url, [NULL_MODEL], timeout_s=300)
        self.procs += new

    def signal(self, sig):
        for _, proc in self.procs:
            os.killpg(proc.pid, sig)

    def shrink(self, n: int = 0):
        """Stop all but the first `n`, at once: each finishes what it holds, then exits."""
        stops = [self.stack.pop(name) for name, _ in self.procs[n:]]
        threads = [threading.Thread(target=fn) for fn in stops if fn]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.procs = self.procs[:n]


def finished_jobs(client: redis.Redis) -> int:
    """Jobs of the null model that reached a final state, from the stats the scripts keep."""
    got = client.hmget(keys.stats(), *(f"jobs|{NULL_MODEL}|{s}"
                                       for s in ("succeeded", "failed", "canceled")))
    return sum(int(v) for v in got if v)


def drain(workers: Workers, rserver: BenchRedis, store: Producer, n_jobs: int,
          per_job: int) -> dict:
    """Write `n_jobs` jobs of `per_job` images while the workers are stopped (SIGSTOP), then
    let them drain it: jobs/s from the first to the last `completed_at`, and the CPU of Redis,
    the workers and the rest of the machine from the moment they go on to the last job."""
    client = rserver.client
    pngs = [tiny_png(i) for i in range(16)]
    meter = CpuMeter({"redis": rserver.proc.pid,
                      **{name: proc.pid for name, proc in workers.procs}})
    base = finished_jobs(client)
    workers.signal(signal.SIGSTOP)
    try:
        e0, r0, t0 = meter.snapshot(), redis_cpu(client), time.monotonic()
        ids = [store.enqueue(NULL_MODEL, [pngs[(i * per_job + k) % 16]
                                          for k in range(per_job)])[0]["id"]
               for i in range(n_jobs)]
    finally:
        a, ra, ta = meter.snapshot(), redis_cpu(client), time.monotonic()
        workers.signal(signal.SIGCONT)
    deadline = ta + 600
    while finished_jobs(client) < base + n_jobs:
        if time.monotonic() > deadline:
            raise Failure(f"the null model's backlog did not drain ({n_jobs} jobs)")
        time.sleep(0.01)
    b, rb, tb = meter.snapshot(), redis_cpu(client), time.monotonic()
    pipe = client.pipeline(transaction=False)
    for j in ids:
        pipe.hmget(keys.job(j), "status", "completed_at")
    rows = pipe.execute()
    bad = [r[0] for r in rows if r[0] != b"succeeded"]
    if bad:
        raise Failure(f"null model: {len(bad)} of {n_jobs} jobs did not succeed ({set(bad)})")
    for i in range(0, len(ids), 1000):  # keep Redis's memory flat from round to round
        client.unlink(*(keys.job(j) for j in ids[i:i + 1000]))
    done = sorted(float(r[1]) for r in rows)
    n_first = sum(1 for t in done if t == done[0])
    span = done[-1] - done[0]
    jobs_s = (n_jobs - n_first) / span if span > 0 else float("nan")
    enq, d = CpuMeter.delta(e0, a), CpuMeter.delta(a, b)
    wall = tb - ta
    worker_s = sum(v for k, v in d.items() if k.startswith("worker"))
    busy = sum(v for k, v in d.items() if k != "steal")
    out = {"jobs": n_jobs, "images_per_job": per_job, "jobs_s": jobs_s,
           "images_s": jobs_s * per_job,
           "redis_ms_per_job": d["redis"] / n_jobs * 1000,
           "redis_main_ms_per_job": (rb["main"] - ra["main"]) / n_jobs * 1000,
           "redis_share": d["redis"] / wall,
           "redis_main_share": (rb["main"] - ra["main"]) / wall,
           "worker_ms_per_job": worker_s / n_jobs * 1000, "worker_cores": worker_s / wall,
           "box_cores": busy / wall, "other_cores": d["other"] / wall,
           "steal_cores": d["steal"] / wall,
           "enqueue_jobs_s": n_jobs / (ta - t0),
           "enqueue_redis_ms_per_job": enq["redis"] / n_jobs * 1000,
           "enqueue_redis_main_ms_per_job": (ra["main"] - r0["main"]) / n_jobs * 1000}
    out["clean"] = out["other_cores"] < CLEAN_CORES
    return out


def worker_points(p: dict, stack: Stack, rserver: BenchRedis, repo: Path) -> tuple[dict, Workers]:
    """{images per job: {workers: [each round's measurement]}}; a contended measurement is
    taken again (up to `retries` times) and the least contended one kept, all of them in
    `attempts`. The last round's workers are left running, for the whole path."""
    store = Producer(rserver.client, 3600, 10 ** 9, 60)
    out = {str(k): {str(n): [] for n in p["workers"]} for k in IMAGES_PER_JOB}
    for rnd in range(p["rounds"]):
        workers = Workers(stack, rserver, repo)
        for n in p["workers"]:
            t0 = time.monotonic()
            workers.grow(n)
            started_s = time.monotonic() - t0
            # Not measured: each new process's first batches (a model's first calls trace it).
            drain(workers, rserver, store, 64 * n, 1)
            for per_job in IMAGES_PER_JOB:
                n_jobs = p["jobs"] if per_job == 1 else p["jobs8"]
                busy = wait_quiet(p["quiet_wait_s"], f"{n} workers")
                attempts = []
                while len(attempts) < p["retries"]:
                    attempts.append(drain(workers, rserver, store, n_jobs, per_job))
                    if attempts[-1]["clean"]:
                        break
                best = dict(min(attempts, key=lambda m: (not m["clean"], m["other_cores"])))
                best.update(busy_before=busy, workers_started_s=round(started_s, 1),
                            attempts=[{"jobs_s": round(m["jobs_s"]),
                                       "other_cores": round(m["other_cores"], 2)}
                                      for m in attempts])
                out[str(per_job)][str(n)].append(best)
                say(f"   round {rnd + 1}, {n} worker(s), {per_job} image(s)/job: "
                    f"{best['jobs_s']:.0f} jobs/s; Redis {best['redis_ms_per_job']:.3f} CPU "
                    f"ms/job, {best['redis_share']:.0%} of a core; workers "
                    f"{best['worker_cores']:.2f} cores; machine {best['box_cores']:.2f} of "
                    f"{os.cpu_count()} cores busy"
                    + ("" if best["clean"] else
                       f" (contended: others {best['other_cores']:.2f} cores)"))
        if rnd < p["rounds"] - 1:
            workers.shrink()
    return out, workers


def command_usec(client: redis.Redis) -> dict:
    return {k[len("cmdstat_"):]: (v["calls"], v["usec"])
            for k, v in client.info("commandstats").items()}


def where_redis_time_went(before: dict, after: dict, cpu_s: float, top: int = 12) -> dict:
    """Redis's time in each command over a run, as shares of its CPU then (the rest is reading,
    parsing and writing replies). A script's or an EXEC's time includes the commands it runs,
    which are counted on their own too."""
    d = {k: (c - before.get(k, (0, 0))[0], u - before.get(k, (0, 0))[1])
         for k, (c, u) in after.items()}
    d = {k: v for k, v in d.items() if v[0] > 0 and k != "info"}
    total = cpu_s * 1e6 or 1
    rows = sorted(d.items(), key=lambda kv: -kv[1][1])[:top]
    return {k: {"calls": c, "usec": u, "share": round(u / total, 3)} for k, (c, u) in rows}


def loop_point(stack: Stack, mode: str, port: int, clients: int, image: Path, roots: dict,
               warmup_s: float, window_s: float, retries: int, client: redis.Redis) -> dict:
    """One closed-loop window (bench.run's load generator): rate, and CPU per item by process
    tree; and Redis's time by command over the whole loop (warm-up included)."""
    c0, r0 = command_usec(client), redis_cpu(client)
    run = closed_loop(stack, mode, port, clients, image, roots, warmup_s, window_s, 1, retries,
                      NULL_MODEL)
    commands = where_redis_time_went(c0, command_usec(client),
                                     redis_cpu(client)["process"] - r0["process"])
    n, span = len(run["records"]), run["span_s"]
    cpu = run["cpu_s"]
    worker_s = sum(v for k, v in cpu.items() if k.startswith("worker"))
    busy = sum(v for k, v in cpu.items() if k != "steal")
    batches = [r[2] for r in run["records"] if r[2]]
    return {"rate": run["rates"][0], "n": n,
            "mean_batch": sum(batches) / len(batches) if batches else None,
            "redis_ms_per_item": cpu["redis"] / n * 1000, "redis_share": cpu["redis"] / span,
            "api_ms_per_item": cpu["api"] / n * 1000, "api_cores": cpu["api"] / span,
            "worker_ms_per_item": worker_s / n * 1000 if worker_s else None,
            "loadgen_cores": cpu["loadgen"] / span, "box_cores": busy / span,
            "other_cores": cpu["other"] / span, "steal_cores": cpu["steal"] / span,
            "contended": run["contended"], "windows": run["windows"],
            "redis_commands": commands}


def api_points(p: dict, stack: Stack, rserver: BenchRedis, repo: Path, image: Path,
               api_threads: int) -> dict:
    """The API alone (no worker) at 1, 2 and 4 gunicorn processes: submits/s and Redis CPU per
    submit. A fresh API per point, on an emptied Redis (the submits pile up unserved)."""
    out = {str(n): [] for n in p["api_procs"]}
    for rnd in range(p["rounds"]):
        for n in p["api_procs"]:
            rserver.client.flushall()
            api, port = start_api(stack, rserver.url, name=f"api-{n}",
                                  model_repository=str(repo), max_backlog=10 ** 8,
                                  batch_dir=str(WORK / "batches"), api_workers=n,
                                  api_threads=api_threads)
            busy = wait_quiet(p["quiet_wait_s"], f"{n} API processes")
            m = loop_point(stack, "submit", port, p["api_clients"], image,
                           {"api": api.pid, "redis": rserver.proc.pid}, p["api_warmup_s"],
                           p["api_window_s"], p["retries"], rserver.client)
            stack.stop(f"api-{n}")
            m["busy_before"] = busy
            out[str(n)].append(m)
            say(f"   round {rnd + 1}, {n} API process(es): {m['rate']:.0f} submits/s; Redis "
                f"{m['redis_ms_per_item']:.3f} CPU ms/submit, {m['redis_share']:.0%} of a "
                f"core; API {m['api_cores']:.2f} cores; machine {m['box_cores']:.2f} cores busy")
    rserver.client.flushall()
    return out


def path_points(p: dict, stack: Stack, rserver: BenchRedis, repo: Path, image: Path,
                api_settings: dict, workers: Workers) -> list[dict]:
    """The whole path of a job, for the projection: clients submit and long-poll through the
    API (its defaults), null-model workers run the jobs. Redis CPU per completed job. Greedy
    workers (`max_wait_s` 0, as deployed) keep up with the clients, so their batches stay
    small; `path_points(..., full=True)` is the same with batches made to fill."""
    workers.shrink(p["path_workers"])
    workers.grow(p["path_workers"])
    api, port = start_api(stack, rserver.url, name="api-path", model_repository=str(repo),
                          max_backlog=10 ** 8, batch_dir=str(WORK / "batches"), **api_settings)
    roots = {"api": api.pid, "redis": rserver.proc.pid,
             **{name: proc.pid for name, proc in workers.procs}}
    out = []
    for rnd in range(p["rounds"]):
        busy = wait_quiet(p["quiet_wait_s"], "the whole path")
        m = loop_point(stack, "e2e", port, p["path_clients"], image, roots, p["path_warmup_s"],
                       p["path_window_s"], p["retries"], rserver.client)
        m["busy_before"] = busy
        out.append(m)
        say(f"   round {rnd + 1}: {m['rate']:.0f} jobs/s, mean batch {m['mean_batch']:.1f}; Redis "
            f"{m['redis_ms_per_item']:.3f} CPU ms/job, {m['redis_share']:.0%} of a core; "
            f"machine {m['box_cores']:.2f} cores busy")
    stack.stop("api-path")
    workers.shrink()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 and 2 workers, few jobs (CI)")
    a = ap.parse_args(argv)
    profile = "quick" if a.quick else "full"
    p = PROFILES[profile]
    name = "scale-quick" if a.quick else "scale"
    defaults = load_settings({})
    api_settings = {"api_workers": defaults.api_workers, "api_threads": defaults.api_threads}
    repo = WORK / "models"
    RESULTS.mkdir(parents=True, exist_ok=True)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    started = time.monotonic()
    stack = Stack(logs=WORK / "logs-scale")
    out = {"profile": profile, "machine": machine(), "git": git_state(),
           "loadavg_start": os.getloadavg(), "settings": {**p, **api_settings}}
    try:
        say(f"scale, profile {profile}: the null model in {repo}")
        out["build"] = run_json(["bench.build", "--repo", str(repo), "--model", ""],
                                timeout=600)
        image = WORK / "scale" / "small.jpg"
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(small_jpeg())
        rserver = BenchRedis()
        stack.add("redis", rserver.stop)
        say(f"1. null-model workers at {p['workers']} processes, jobs of "
            f"{' and '.join(map(str, IMAGES_PER_JOB))} images, {p['rounds']} round(s)")
        out["workers"], workers = worker_points(p, stack, rserver, repo)
        say(f"2. the whole path: {p['path_clients']} clients (submit + long-poll), the API "
            f"({api_settings['api_workers']} processes), {p['path_workers']} null workers")
        out["path"] = path_points(p, stack, rserver, repo, image, api_settings, workers)
        if p["fill"]:  # not in the quick profile: it starts workers again, ~10 s
            say(f"   again, the workers waiting up to {FILL_WAIT_S} s for a batch to fill "
                "(INFERQ_MAX_WAIT_S), as a loaded GPU's batches are full")
            out["path_full"] = path_points(p, stack, rserver, repo, image, api_settings,
                                           Workers(stack, rserver, repo, max_wait_s=FILL_WAIT_S))
        rserver.client.flushall()
        say(f"3. the API alone at {p['api_procs']} processes, {p['api_clients']} clients "
            f"submitting a {image.stat().st_size} B JPEG, {p['rounds']} round(s)")
        out["api"] = api_points(p, stack, rserver, repo, image, api_settings["api_threads"])
        stack.stop_all()
    except KeyboardInterrupt:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        say("interrupted: stopping everything this run started")
        stack.stop_all()
        return 130
    except Exception as exc:
        say(f"FAILED: {exc}")
        say(f"the service logs are in {stack.logs}")
        stack.stop_all()
        return 1
    out["loadavg_end"] = os.getloadavg()
    out["duration_s"] = round(time.monotonic() - started)
    out.update(scale_report.summarise(out))
    json_path = write_results(name, out, scale_report.table(out), scale_report.plot)[0]
    say(f"wrote {json_path}, {name}.md and {name}.png in {out['duration_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
