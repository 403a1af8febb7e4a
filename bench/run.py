"""inferq's benchmark: every figure measured in one run, on one machine, with one model and one set
of images, reported as ratios. See bench/README.md for the method.

python -m bench.run            # the published figures (make bench): bench/results/latest.json
python -m bench.run --quick    # a short run of every path (make bench-quick, CI): quick.json

It starts everything it measures (its own redis-server on a free port, the API under gunicorn,
workers, the Flask baseline) and stops all of it on exit, failure or Ctrl-C."""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import redis

from bench import report
from bench.loadgen import InProcess
from jobs import keys
from jobs.settings import load_settings
from bench import batch as batch_run
from bench import client as client_run
from bench.common import (MAX_BATCH_SIZE, NULL_MODEL, PROFILES, RESULTS, ROOT, WORK, CpuMeter,
                          busy_cores, children, machine, memory_mb, photo_jpeg, run_json,
                          pct, small_jpeg, tiny_png, write_results)
from stack.processes import (BIN, Proc, RedisServer, free_port, service_env, start_feeder,
                             start_worker, wait_for, wait_until_serving)

WAIT_S = 30  # the long-poll the clients ask for
# A measurement window counts only when processes this run did not start kept fewer cores
# busy than this; on a shared machine, contended windows are measured again.
CLEAN_CORES = 0.15


class Failure(RuntimeError):
    """A measurement path broke (a job failed, a request errored): the run exits non-zero."""


def say(msg: str):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class BenchRedis(RedisServer):
    """stack.processes.RedisServer in its own session, so a Ctrl-C in the terminal reaches only this
    script, which stops the workers (they finish their batches against Redis) before Redis."""

    def _start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for(self._ping, 10, "redis-server to answer")
        except BaseException:
            self.proc.kill()
            self.proc.wait(10)
            raise


class Stack:
    """Everything this run started, stopped in reverse order whatever happens."""

    def __init__(self, logs: Path = WORK / "logs"):
        self._stops: list[tuple[str, callable]] = []
        self.logs = logs
        shutil.rmtree(self.logs, ignore_errors=True)
        self.logs.mkdir(parents=True)

    def add(self, name: str, stop):
        self._stops.append((name, stop))

    def proc(self, name: str, proc: Proc) -> Proc:
        def stop():
            proc.stop(timeout_s=30)
            try:  # keep the last run's logs in bench/.work/logs (git-ignored), not in /tmp
                shutil.move(str(proc.log_path), self.logs / f"{name}.log")
            except OSError:
                pass
        self.add(name, stop)
        return proc

    def pop(self, name: str):
        """Take `name`'s stop function off the list (to run it elsewhere); None if absent."""
        for i, (n, fn) in enumerate(self._stops):
            if n == name:
                del self._stops[i]
                return fn
        return None

    def stop(self, name: str):
        fn = self.pop(name)
        if fn:
            fn()

    def stop_all(self):
        while self._stops:
            name, fn = self._stops.pop()
            try:
                fn()
            except Exception as exc:  # keep stopping the rest
                say(f"stopping {name}: {exc}")


def start_api(stack: Stack, redis_url: str, name: str = "api", app: str = "api.app:create_app()",
              extra_env: dict | None = None, ready_path: str = "/healthz", timeout_s: float = 120,
              **settings) -> tuple[Proc, int]:
    """gunicorn with the API's own config file (api/gunicorn_conf.py) on a free port; `app` may
    be another app (the Flask baseline) run under the same settings."""
    import requests

    port = free_port()
    env = service_env(redis_url, api_port=port, **settings)
    env.update(extra_env or {})
    proc = stack.proc(name, Proc([str(BIN / "gunicorn"), "-c", "api/gunicorn_conf.py", app],
                                 env, name))

    def up():
        if not proc.alive():
            raise Failure(f"{name} exited:\n{proc.output()[-3000:]}")
        try:
            return requests.get(f"http://127.0.0.1:{port}{ready_path}", timeout=2).ok
        except requests.RequestException:
            return False

    wait_for(up, timeout_s, f"{name} to start", 0.2)
    return proc, port


def start_bench_worker(stack: Stack, redis_url: str, model: str, repo: Path, name: str) -> Proc:
    proc = stack.proc(name, start_worker(redis_url, models=[model], wait_ready=False,
                                         model_repository=str(repo)))
    wait_until_serving(proc, redis_url, [model], timeout_s=300)
    return proc


def wait_quiet(limit_s: float, what: str) -> float:
    """Wait (up to `limit_s`) until other processes leave the machine idle; returns the cores
    they kept busy when we started. The figures are only comparable on an otherwise idle
    machine, so a busy one is reported, not hidden."""
    deadline = time.monotonic() + limit_s
    while True:
        busy = busy_cores(1.0)
        if busy < 0.15 or time.monotonic() > deadline:
            if busy >= 0.15:
                say(f"warning: the machine is busy ({busy:.2f} cores) before {what}")
            return round(busy, 2)
        time.sleep(2)


def loadgen(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.loadgen", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def loadgen_result(proc: subprocess.Popen, timeout_s: float) -> dict:
    out, err = proc.communicate(timeout=timeout_s)
    if proc.returncode != 0:
        raise Failure(f"load generator failed ({proc.returncode}):\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    if result["errors"]:
        raise Failure(f"{result['errors']} requests failed, e.g. {result['error_samples']}")
    return result


def closed_loop(stack: Stack, mode: str, port: int, clients: int, images: Path, roots: dict,
                warmup_s: float, window_s: float, windows: int, retries: int,
                model: str = "", between=None, ramp_s: float = 0.0) -> dict:
    """Run `clients` closed-loop clients; after `warmup_s`, count completions and CPU per
    process tree in windows of `window_s` until `windows` of them were clean (other processes
    kept less than CLEAN_CORES busy), or `windows * retries` windows passed. Returns the rates
    and cycles of the windows used, CPU seconds per process tree over them, and every window.
    `between`: called after each window but the last with the clients stopped (SIGSTOP);
    they go on `ramp_s` before the next window starts."""
    start_at = time.monotonic() + 1.5
    hard_end = start_at + warmup_s + windows * retries * window_s
    if between:
        hard_end += windows * retries * 600  # pauses; the clients are stopped at the end anyway
    proc = loadgen(["--mode", mode, "--port", str(port), "--model", model, "--clients",
                    str(clients), "--images", str(images), "--start-at", repr(start_at),
                    "--end-at", repr(hard_end)])
    stack.add("loadgen", lambda: (proc.poll() is None and proc.kill(), proc.wait()))
    meter = CpuMeter({**roots, "loadgen": proc.pid})
    start = start_at + warmup_s
    time.sleep(max(0.0, start - time.monotonic()))
    snap, spans, deltas = meter.snapshot(), [], []
    while len(deltas) < windows * retries:
        if proc.poll() is not None:
            break  # the load generator ended early: its result says why
        end = start + window_s
        time.sleep(max(0.0, end - time.monotonic()))
        after = meter.snapshot()
        spans.append((start, end))
        deltas.append(CpuMeter.delta(snap, after))
        if sum(d["other"] / window_s < CLEAN_CORES for d in deltas) >= windows:
            break
        start, snap = end, after
        if between:
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                between()
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            time.sleep(ramp_s)
            start, snap = time.monotonic(), meter.snapshot()
    if proc.poll() is None:
        proc.send_signal(signal.SIGUSR1)  # stop: each client ends the cycle it is in
    result = loadgen_result(proc, WAIT_S + 90)
    stack.stop("loadgen")
    records = result["records"]
    all_windows = []
    for (start, end), d in zip(spans, deltas):
        recs = [r for r in records if start <= r[1] < end]
        all_windows.append({"rate": len(recs) / window_s,
                            "other_cores": round(d["other"] / window_s, 2),
                            "clean": d["other"] / window_s < CLEAN_CORES, "records": recs,
                            "cpu_s": d})
    used = [w for w in all_windows if w["clean"]][:windows]
    if not used:  # no clean window: report the least contended ones, flagged
        used = sorted(all_windows, key=lambda w: w["other_cores"])[:windows]
        say(f"   warning: other processes kept the machine busy in every window "
            f"(min {used[0]['other_cores'] if used else '?'} cores)")
    measured = [r for w in used for r in w["records"]]
    if not measured:
        raise Failure(f"{mode}: nothing completed in the measured windows")
    cpu = {k: sum(w["cpu_s"][k] for w in used) for k in used[0]["cpu_s"]}
    return {"rates": [w["rate"] for w in used], "records": measured, "cpu_s": cpu,
            "span_s": window_s * len(used), "contended": not all(w["clean"] for w in used),
            "windows": [{"rate": round(w["rate"], 2), "other_cores": w["other_cores"],
                         "used": any(w is u for u in used)} for w in all_windows]}


def cpu_table(cpu_s: dict, span_s: float, n: int) -> dict:
    """Cores kept busy, and CPU ms per completed item, by process tree."""
    return {k: {"cores": round(v / span_s, 2), "ms_per_item": round(v / n * 1000, 2)}
            for k, v in cpu_s.items()}


# -- phases ---------------------------------------------------------------------------------
def model_file(p: dict, repo: Path) -> str:
    """The bench model's file (version 1) in the repository bench.build made."""
    return str(repo / p["model"] / "1" / "model.keras")


def phase_ceiling(p: dict, repo: Path) -> dict:
    """Run 1 on its own. A shared VM's speed drifts by tens of percent within minutes, so runs
    2 and 3 measure the model in-process again, between their own windows and jobs, and are
    set against that."""
    say(f"1. ceiling: the model in-process through a tf.function, batches of {MAX_BATCH_SIZE}")
    quiet = wait_quiet(p["quiet_wait_s"], "the ceiling")
    t0, b0 = os.times(), CpuMeter({}).snapshot()
    res = run_json(["bench.ceiling", "--model-file", model_file(p, repo),
                    "--size", str(p["size"]), "--batch", str(MAX_BATCH_SIZE),
                    "--batches", str(p["ceiling_batches"]), "--rounds", str(p["ceiling_rounds"]),
                    "--single", str(p["single_calls"]),
                    "--max-rounds", str(p["ceiling_rounds"] * p["retries"]),
                    "--clean-cores", str(CLEAN_CORES)], timeout=1800)
    t1, b1 = os.times(), CpuMeter({}).snapshot()
    wall = t1.elapsed - t0.elapsed
    own = (t1.children_user + t1.children_system) - (t0.children_user + t0.children_system)
    res["other_cores"] = round(max(0.0, b1["_busy"] - b0["_busy"] - own) / wall, 2)
    res["busy_before"] = quiet
    say(f"   {res['img_s']:.1f} images/s (rounds {res['img_s_rounds']}), "
        f"{res['cores_busy']} cores busy")
    say(f"   single image p50 {res['single_ms_p50']} ms")
    return res


def phase_e2e(p, stack, rserver, api, port, worker, images, repo: Path) -> dict:
    """Closed-loop clients through inferq. Between windows the clients are stopped, the worker
    drains its stream, and the model runs batches in-process (run 1 again): each window is
    divided by the mean of the in-process rounds on either side of it, minutes or seconds
    apart, not a quarter of an hour."""
    say(f"2. inferq end to end: {p['clients']} closed-loop clients (submit, then long-poll), "
        f"{p['e2e_windows']} x {p['e2e_window_s']} s after {p['e2e_warmup_s']} s warm-up; "
        f"between windows the model in-process, {2 * p['ceiling_batches']} batches")
    server = InProcess(model_file(p, repo), p["size"], MAX_BATCH_SIZE)
    stack.add("ceiling-server", server.close)
    stream = keys.stream(p["model"], 1)

    def ceiling_round() -> float:
        drained(rserver.client, stream)
        time.sleep(1.0)  # the API answers the last long-polls
        return server.batches(2 * p["ceiling_batches"])

    quiet = wait_quiet(p["quiet_wait_s"], "the end-to-end run")
    rounds = [ceiling_round()]
    run = closed_loop(stack, "e2e", port, p["clients"], images,
                      {"worker": worker.pid, "api": api.pid, "redis": rserver.proc.pid},
                      p["e2e_warmup_s"], p["e2e_window_s"], p["e2e_windows"], p["retries"],
                      p["model"], between=lambda: rounds.append(ceiling_round()),
                      ramp_s=p["e2e_ramp_s"])
    rounds.append(ceiling_round())
    stack.stop("ceiling-server")
    # Window i lies between rounds i and i + 1.
    used = [i for i, w in enumerate(run["windows"]) if w["used"]]
    ceilings = [(rounds[i] + rounds[i + 1]) / 2 for i in used]
    ratios = [run["windows"][i]["rate"] / c for i, c in zip(used, ceilings)]
    recs = run["records"]
    batches = [r[2] for r in recs]
    mean_batch = statistics.fmean(batches)
    # Per batch rather than per job: each batch of size b holds b jobs, so it counts 1/b each.
    mean_per_batch = len(batches) / sum(1 / b for b in batches)
    lat = [(r[1] - r[0]) * 1000 for r in recs]
    out = {"img_s": statistics.median(run["rates"]), "img_s_windows": run["rates"],
           "ratio": statistics.median(ratios), "ratios": [round(r, 3) for r in ratios],
           "ceiling_img_s": statistics.fmean(ceilings),
           "ceiling_rounds": [round(r, 2) for r in rounds],
           "jobs": len(recs), "mean_batch": mean_batch, "mean_batch_per_batch": mean_per_batch,
           "latency_ms_p50": round(pct(lat, 0.5), 1), "latency_ms_p99": round(pct(lat, 0.99), 1),
           "cpu": cpu_table(run["cpu_s"], run["span_s"], len(recs)), "busy_before": quiet,
           "contended": run["contended"], "windows": run["windows"]}
    say(f"   {out['img_s']:.1f} images/s (windows {[round(r, 1) for r in run['rates']]}), "
        f"mean batch {mean_batch:.1f}; in-process rounds {out['ceiling_rounds']}: ratio "
        f"{out['ratio']:.3f}")
    return out


def drained(r: redis.Redis, stream: str, timeout_s: float = 300):
    """Wait until the worker has finished every input of `stream` (finished ones are deleted)."""
    deadline = time.monotonic() + timeout_s
    while r.xlen(stream):
        if time.monotonic() > deadline:
            raise Failure(f"the worker left {r.xlen(stream)} inputs in {stream}")
        time.sleep(0.05)


def phase_idle(p, stack, port, images, repo: Path, roots: dict) -> dict:
    """One client, one job at a time. After each job the same model is called in-process on
    one image (in a process of its own, idle in between as the worker is): each job is set
    against the model's one-image latency measured in the same minutes."""
    say(f"3. idle latency: one client, {p['idle_jobs']} jobs (submit + long-poll), each "
        "followed by one in-process call of the model")
    model = p["model"]
    quiet = wait_quiet(p["quiet_wait_s"], "the idle-latency run")
    attempts = []
    for _ in range(p["retries"]):
        proc = loadgen(["--mode", "e2e", "--port", str(port), "--model", model, "--images",
                        str(images), "--jobs", str(p["idle_jobs"]),
                        "--warmup", str(p["idle_warmup"]),
                        "--in-process", model_file(p, repo),
                        "--size", str(p["size"])])
        stack.add("loadgen", lambda: (proc.poll() is None and proc.kill(), proc.wait()))
        meter = CpuMeter(roots)
        a, t0 = meter.snapshot(), time.monotonic()
        result = loadgen_result(proc, 600)
        stack.stop("loadgen")
        # The load generator has exited: its CPU (and its in-process model's) is what it said.
        other = max(0.0, CpuMeter.delta(a, meter.snapshot())["other"] - result["cpu_s"]) / (
            time.monotonic() - t0)
        attempts.append((other, result))
        if other < CLEAN_CORES:
            break
        say(f"   other processes kept {other:.2f} cores busy: measuring again")
    other, result = min(attempts, key=lambda x: x[0])
    lat = [(r[1] - r[0]) * 1000 for r in result["records"]]
    if any(r[2] != 1 for r in result["records"]):
        raise Failure("idle run: a job shared its batch; the worker was not idle")
    # Each job's time outside the model: its latency minus its own model time. It needs no
    # reference at all, not even the in-process calls made between the jobs.
    outside = [l - s[6] for l, s in zip(lat, result["stages"])] if result["stages"] else []
    single = result["in_process_ms"]
    out = {"p50_ms": round(pct(lat, 0.5), 2), "p99_ms": round(pct(lat, 0.99), 2),
           "single_ms_p50": round(pct(single, 0.5), 2),
           "single_ms_p99": round(pct(single, 0.99), 2),
           "outside_model_ms_p50": round(pct(outside, 0.5), 2) if outside else None,
           "outside_model_ms_p99": round(pct(outside, 0.99), 2) if outside else None,
           "jobs": len(lat), "stages_ms_p50": idle_stages(result["stages"]),
           "other_cores": round(other, 2), "contended": other >= CLEAN_CORES,
           "attempts": len(attempts), "busy_before": quiet}
    say(f"   p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms; the model in-process between "
        f"them: one image p50 {out['single_ms_p50']} ms")
    return out


def idle_stages(stages: list) -> dict:
    """Median time of each step of an idle job, from the client's clock and the job's own
    timestamps (ISO, ms precision; one machine, one clock)."""
    from datetime import datetime

    def ts(iso):
        return datetime.fromisoformat(iso).timestamp()

    parts = {"submit_to_queued": [], "queued_to_started": [], "started_to_predict": [],
             "predict": [], "predict_to_completed": [], "completed_to_client": []}
    for sent, got, created, started, completed, queue_ms, predict_ms in stages:
        created, started, completed = ts(created), ts(started), ts(completed)
        predict_at = created + queue_ms / 1000
        parts["submit_to_queued"].append(created - sent)
        parts["queued_to_started"].append(started - created)
        parts["started_to_predict"].append(predict_at - started)
        parts["predict"].append(predict_ms / 1000)
        parts["predict_to_completed"].append(completed - predict_at - predict_ms / 1000)
        parts["completed_to_client"].append(got - completed)
    return {k: round(statistics.median(v) * 1000, 2) for k, v in parts.items()} if stages else {}


def api_rss(api_pid: int) -> list[float]:
    """RSS of each gunicorn worker process of the API, in MiB."""
    return [memory_mb(pid)["rss_mb"] for pid in sorted(children(api_pid))]


def phase_api(p, stack, redis_pid, api, port, small: Path) -> dict:
    say(f"6. the API alone (no worker): {p['api_clients']} clients submitting a "
        f"{small.stat().st_size} B JPEG")
    quiet = wait_quiet(p["quiet_wait_s"], "the API-alone run")
    run = closed_loop(stack, "submit", port, p["api_clients"], small,
                      {"api": api.pid, "redis": redis_pid}, p["api_warmup_s"], p["api_window_s"],
                      p["api_windows"], p["retries"], p["model"])
    procs = {"master": memory_mb(api.pid)}
    for i, pid in enumerate(sorted(children(api.pid))):
        procs[f"worker{i + 1}"] = memory_mb(pid)
    workers = [v for k, v in procs.items() if k != "master"]
    out = {"submits_s": statistics.median(run["rates"]), "submits_s_windows": run["rates"],
           "cpu": cpu_table(run["cpu_s"], run["span_s"], len(run["records"])),
           "rss": procs, "rss_mb": max(w["rss_mb"] for w in workers),
           "peak_rss_mb": max(w["peak_mb"] for w in workers), "busy_before": quiet,
           "contended": run["contended"], "windows": run["windows"]}
    say(f"   {out['submits_s']:.0f} submits/s; API worker RSS {out['rss_mb']} MB "
        f"(peak {out['peak_rss_mb']} MB)")
    return out


def phase_null(p, stack, rserver: BenchRedis, repo: Path) -> dict:
    from jobs import keys
    from jobs.producer import Producer

    say(f"4. queue overhead: {p['null_jobs']} jobs of the null model drained by one worker, "
        f"{p['null_rounds']} round(s)")
    worker = start_bench_worker(stack, rserver.url, NULL_MODEL, repo, "worker-null")
    client = redis.Redis.from_url(rserver.url)
    store = Producer(client, 3600, 10 ** 9, 60)
    pngs = [tiny_png(i) for i in range(16)]
    rounds = []
    while (sum(r["clean"] for r in rounds) < p["null_rounds"]
           and len(rounds) < p["null_rounds"] * p["retries"]):
        rnd = len(rounds)
        quiet = wait_quiet(p["quiet_wait_s"], "the null-model run")
        os.killpg(worker.pid, signal.SIGSTOP)  # hold the worker while its backlog is written
        try:
            ids = [store.enqueue(NULL_MODEL, [pngs[i % 16]])[0]["id"]
                   for i in range(p["null_jobs"])]
        finally:
            meter = CpuMeter({"worker": worker.pid, "redis": rserver.proc.pid})
            a = meter.snapshot()
            resumed = time.time()
            os.killpg(worker.pid, signal.SIGCONT)

        def final(job_id):
            return client.hget(keys.job(job_id), "status") in (b"succeeded", b"failed",
                                                               b"canceled")

        wait_for(lambda: final(ids[-1]), 300, "the null model's backlog to drain", 0.01)
        b = meter.snapshot()
        wait_for(lambda: all(final(j) for j in ids[::97]), 60, "the last null jobs", 0.05)
        pipe = client.pipeline(transaction=False)
        for j in ids:
            pipe.hmget(keys.job(j), "status", "completed_at")
        rows = pipe.execute()
        bad = [r[0] for r in rows if r[0] != b"succeeded"]
        if bad:
            raise Failure(f"null model: {len(bad)} of {len(ids)} jobs did not succeed "
                          f"({set(bad)})")
        done = sorted(float(r[1]) for r in rows)
        n_first = sum(1 for t in done if t == done[0])
        cpu = CpuMeter.delta(a, b)
        span = done[-1] - done[0]
        rounds.append({"jobs_s": (len(ids) - n_first) / span if span > 0 else float("nan"),
                       "jobs_s_from_resume": len(ids) / (done[-1] - resumed),
                       "worker_cpu_ms_per_job": cpu["worker"] / len(ids) * 1000,
                       "redis_cpu_ms_per_job": cpu["redis"] / len(ids) * 1000,
                       "other_cores": cpu["other"] / (done[-1] - resumed),
                       "busy_before": quiet})
        rounds[-1]["clean"] = rounds[-1]["other_cores"] < CLEAN_CORES
        say(f"   round {rnd + 1}: {rounds[-1]['jobs_s']:.0f} jobs/s, worker "
            f"{rounds[-1]['worker_cpu_ms_per_job']:.3f} CPU ms/job"
            + ("" if rounds[-1]["clean"] else f" (other processes: "
               f"{rounds[-1]['other_cores']:.2f} cores; not counted)"))
    stack.stop("worker-null")
    used = [r for r in rounds if r["clean"]] or sorted(
        rounds, key=lambda r: r["other_cores"])[:p["null_rounds"]]
    med = {k: statistics.median(r[k] for r in used) for k in used[0] if k != "clean"}
    med["rounds"] = [{"jobs_s": round(r["jobs_s"]), "other_cores": round(r["other_cores"], 2),
                      "used": any(r is u for u in used)} for r in rounds]
    med["contended"] = not all(r["clean"] for r in used)
    return med


def prime_naive(port: int, images: Path):
    """A few requests before the clients start, two at a time on new connections, so each
    gunicorn worker has traced its predict function once: many first calls at once each trace
    it again, which takes minutes on a small CPU and is not the steady state measured here."""
    import requests
    from concurrent.futures import ThreadPoolExecutor

    data = sorted(images.iterdir())[0].read_bytes()

    def one(_):
        r = requests.post(f"http://127.0.0.1:{port}/predict", timeout=300,
                          files={"image": ("image.jpg", data, "image/jpeg")})
        if r.status_code != 200:
            raise Failure(f"Flask baseline: {r.status_code} {r.text[:300]}")

    with ThreadPoolExecutor(2) as pool:
        for _ in range(4):
            list(pool.map(one, range(2)))


def phase_naive(p, stack, redis_url, repo: Path, images: Path, api_settings: dict) -> dict:
    say(f"5. Flask + model.predict per request, same gunicorn settings, {p['clients']} clients")
    proc, port = start_api(stack, redis_url, name="naive", app="bench.naive_app:create_app()",
                           extra_env={"BENCH_NAIVE_MODEL": model_file(p, repo),
                                      "BENCH_NAIVE_SIZE": str(p["size"])},
                           timeout_s=300, **api_settings)
    prime_naive(port, images)
    quiet = wait_quiet(p["quiet_wait_s"], "the Flask baseline")
    run = closed_loop(stack, "naive", port, p["clients"], images, {"naive": proc.pid},
                      p["naive_warmup_s"], p["naive_window_s"], p["naive_windows"], p["retries"])
    stack.stop("naive")
    lat = [(r[1] - r[0]) * 1000 for r in run["records"]]
    out = {"img_s": statistics.median(run["rates"]), "img_s_windows": run["rates"],
           "latency_ms_p50": round(pct(lat, 0.5), 1),
           "cpu": cpu_table(run["cpu_s"], run["span_s"], len(run["records"])),
           "busy_before": quiet, "contended": run["contended"], "windows": run["windows"]}
    say(f"   {out['img_s']:.1f} images/s (windows {[round(r, 1) for r in run['rates']]})")
    return out


# -- the run --------------------------------------------------------------------------------
def phase_batch(p, stack, redis_url, port, images, repo: Path) -> dict:
    say(f"7. a bulk batch: a tar of {p['batch_images']} photos, upload to completed, one "
        "client's single jobs meanwhile")
    stack.proc("feeder", start_feeder(redis_url, batch_dir=str(WORK / "batches"),
                                      model_repository=str(repo)))
    tar = batch_run.build_tar(images, p["batch_images"])
    server = InProcess(model_file(p, repo), p["size"], MAX_BATCH_SIZE)
    stack.add("ceiling-server", server.close)
    wait_quiet(p["quiet_wait_s"], "the batch run")
    out = batch_run.run(f"http://127.0.0.1:{port}", p["model"], tar, p["batch_images"], images,
                        say, lambda: server.batches(2 * p["ceiling_batches"]))
    stack.stop("ceiling-server")
    stack.stop("feeder")
    return out


def phase_cli(p, stack, port, images, roots: dict) -> dict:
    """The command line, set against the load generator (run 2's clients) run just before and
    just after it through the same stack."""
    say(f"8. inferq predict: the command line over a folder of {p['batch_images']} photos, "
        f"{p['clients']} in flight; the load generator before and after it")
    folder = client_run.build_folder(images, p["batch_images"])

    def loadgen_rate() -> float:
        run = closed_loop(stack, "e2e", port, p["clients"], images, roots,
                          p["cli_ref_warmup_s"], p["cli_ref_window_s"], 1, p["retries"],
                          p["model"])
        return run["rates"][0]

    wait_quiet(p["quiet_wait_s"], "the command-line run")
    before = loadgen_rate()
    out = client_run.run(port, p["model"], folder, p["batch_images"], p["clients"], say)
    after = loadgen_rate()
    out["loadgen_img_s_each"] = [round(before, 2), round(after, 2)]
    out["loadgen_img_s"] = (before + after) / 2
    say(f"   load generator before and after: {out['loadgen_img_s_each']} images/s; ratio "
        f"{out['img_s'] / out['loadgen_img_s']:.3f}")
    return out


def git_state() -> dict:
    def git(*args):
        r = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return r.stdout if r.returncode == 0 else ""
    # Changes outside bench/ (and the Makefile's bench targets) are what the figures may owe to
    # uncommitted code.
    dirty = [l[3:] for l in git("status", "--porcelain").splitlines()
             if not l[3:].startswith("bench/") and l[3:] != "Makefile"]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "uncommitted_changes": dirty}


def prepare_inputs(p: dict) -> tuple[Path, Path]:
    images, small = WORK / "images", WORK / "small"
    for d in (images, small):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    for i in range(16):
        (images / f"{i:02d}.jpg").write_bytes(photo_jpeg(i))
    (small / "small.jpg").write_bytes(small_jpeg())
    return images, small / "small.jpg"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the short CI run (quick.json)")
    ap.add_argument("--clients", type=int, help="closed-loop clients for runs 2 and 5")
    a = ap.parse_args(argv)
    profile = "quick" if a.quick else "full"
    p = dict(PROFILES[profile])
    if a.clients:
        p["clients"] = a.clients
    # The API's defaults (INFERQ_API_WORKERS, INFERQ_API_THREADS). A long-poll holds a thread
    # while it waits (the waits of a process share one pub/sub connection), so 3 x 32 threads
    # serve 128 clients: a long-poll that waits for a thread finds its job done. 2 x 44 gave
    # the same images/s and mean batch within noise; 3 processes gave more API submits/s.
    defaults = load_settings({})
    api_settings = {"api_workers": defaults.api_workers, "api_threads": defaults.api_threads}
    RESULTS.mkdir(parents=True, exist_ok=True)
    repo = WORK / "models"

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT too: a background
        signal.signal(sig, on_signal)                             # job starts with it ignored

    started = time.monotonic()
    stack = Stack()
    out = {"profile": profile, "machine": machine(), "git": git_state(),
           "model": {"name": p["model"], "arch": "MobileNetV2 (random weights)",
                     "alpha": p["alpha"], "input": [p["size"], p["size"], 3],
                     "max_batch_size": MAX_BATCH_SIZE, "preprocessing": "tf", "top_k": 5},
           "inputs": "640x480 photo-like JPEGs (~68 KB), 16 different",
           "settings": {"clients": p["clients"], **api_settings, "long_poll_wait_s": WAIT_S,
                        "worker": "1 worker, INFERQ_* defaults (decode_threads 2, "
                                  "max_wait_s 0)"}}
    try:
        say(f"profile {profile}; building the model repository in {repo}")
        out["build"] = run_json(["bench.build", "--repo", str(repo), "--model", p["model"],
                                 "--alpha", str(p["alpha"]), "--size", str(p["size"])],
                                timeout=600)
        images, small = prepare_inputs(p)
        ceiling = phase_ceiling(p, repo)

        rserver = BenchRedis()
        stack.add("redis", rserver.stop)
        api, port = start_api(stack, rserver.url, model_repository=str(repo),
                              max_backlog=10 ** 7, batch_dir=str(WORK / "batches"),
                              **api_settings)
        rss_start = api_rss(api.pid)
        worker = start_bench_worker(stack, rserver.url, p["model"], repo, "worker")
        e2e = phase_e2e(p, stack, rserver, api, port, worker, images, repo)
        e2e["api_rss_mb_after"] = api_rss(api.pid)
        idle = phase_idle(p, stack, port, images, repo,
                          {"worker": worker.pid, "api": api.pid, "redis": rserver.proc.pid})
        batch = phase_batch(p, stack, rserver.url, port, images, repo)
        cli = phase_cli(p, stack, port, images,
                        {"worker": worker.pid, "api": api.pid, "redis": rserver.proc.pid})
        stack.stop("worker")
        api_alone = phase_api(p, stack, rserver.proc.pid, api, port, small)
        api_alone["rss_mb_at_start"] = rss_start
        rserver.client.flushall()
        null = phase_null(p, stack, rserver, repo)
        stack.stop("api")
        naive = phase_naive(p, stack, rserver.url, repo, images, api_settings)
        stack.stop_all()
    except KeyboardInterrupt:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        say("interrupted: stopping everything this run started")
        stack.stop_all()
        return 130
    except Exception as exc:
        say(f"FAILED: {exc}")
        say(f"the service logs are in {stack.logs}")
        stack.stop_all()
        return 1

    out.update(report.summarise(ceiling, e2e, idle, null, naive, api_alone, batch, cli, p))
    out["duration_s"] = round(time.monotonic() - started)
    name = "quick" if a.quick else "latest"
    json_path = write_results(name, out, report.table(out), report.plot)[0]
    say(f"wrote {json_path}, {name}.md and {name}.png in {out['duration_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
