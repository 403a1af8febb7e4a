"""The scaling benchmark's figures: medians and spreads of its rounds, the projection of how many
GPUs one Redis feeds, the table and the plot."""
import statistics

GPU_IMAGES_S = 2000  # the projection's GPU: images/s each
REDIS_SHARE = 0.70   # of Redis's one thread, leaving room for bursts and housekeeping


def _stat(values) -> dict:
    values = [v for v in values if v is not None]
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _point(rounds: list[dict], keys_: list[str]) -> dict:
    out = {k: _stat([r[k] for r in rounds]) for k in keys_}
    out["other_cores_max"] = max(r["other_cores"] for r in rounds)
    out["contended"] = any(r.get("contended", not r.get("clean", True)) for r in rounds)
    out["rounds"] = len(rounds)
    return out


def summarise(out: dict) -> dict:
    wk = ["jobs_s", "images_s", "redis_ms_per_job", "redis_main_ms_per_job", "redis_share",
          "redis_main_share", "worker_ms_per_job", "worker_cores", "box_cores",
          "enqueue_redis_ms_per_job"]
    lk = ["rate", "redis_ms_per_item", "redis_share", "api_ms_per_item", "api_cores",
          "box_cores", "loadgen_cores"]
    workers = {k: {n: _point(r, wk) for n, r in pts.items()} for k, pts in out["workers"].items()}
    api = {n: _point(r, lk) for n, r in out["api"].items()}
    lk.append("mean_batch")
    path = _point(out["path"], lk)
    path_full = _point(out["path_full"], lk) if "path_full" in out else None

    def pooled(per_job: str, key: str) -> float:
        """Redis's work per job does not depend on how many workers share it; pooled over
        every round of every point."""
        return statistics.median(r[key] for pts in out["workers"][per_job].values()
                                 for r in pts)

    drain = {k: pooled(k, "redis_ms_per_job") for k in out["workers"]}
    enq = {k: pooled(k, "enqueue_redis_ms_per_job") for k in out["workers"]}
    projection = {}
    for batches, pt in (("full", path_full), ("small", path)):
        if pt is None:
            continue
        r1 = pt["redis_ms_per_item"]["median"]
        per_job = {"1": r1}
        if "8" in drain:  # the path measured with 1 image; what 8 images add, from the drains
            per_job["8"] = r1 + (enq["8"] - enq["1"]) + (drain["8"] - drain["1"])
        for k, ms in per_job.items():
            per_image = ms / int(k)
            img_s = REDIS_SHARE * 1000 / per_image
            projection[f"{k}|{batches}"] = {
                "images_per_job": int(k), "batches": batches,
                "mean_batch": round(pt["mean_batch"]["median"], 1),
                "redis_ms_per_job": round(ms, 4), "redis_ms_per_image": round(per_image, 4),
                "images_s": round(img_s), "jobs_s": round(img_s / int(k)),
                "gpus": round(img_s / GPU_IMAGES_S, 1)}
    cores = out["machine"]["cores"]
    top = max(workers["1"], key=int)
    saturation = {
        "cores": cores, "workers_max": int(top),
        "box_cores_at_max": workers["1"][top]["box_cores"]["median"],
        "redis_share_max": max(p["redis_share"]["max"] for pts in workers.values()
                               for p in pts.values()),
        "peak_jobs_s": max(p["jobs_s"]["median"] for p in workers["1"].values()),
        "peak_at_workers": int(max(workers["1"],
                                   key=lambda n: workers["1"][n]["jobs_s"]["median"])),
    }
    saturation["box_first"] = (saturation["box_cores_at_max"] >= 0.85 * cores
                               and saturation["redis_share_max"] < 0.85)
    return {"summary": {"workers": workers, "api": api, "path": path, "path_full": path_full,
                        "drain_redis_ms_per_job": drain, "enqueue_redis_ms_per_job": enq},
            "projection": {"gpu_images_s": GPU_IMAGES_S, "redis_share": REDIS_SHARE,
                           "per_job_images": projection},
            "saturation": saturation}


def _s(stat: dict, fmt: str, scale: float = 1.0) -> str:
    """median (min to max)"""
    return (f"{stat['median'] * scale:{fmt}} ({stat['min'] * scale:{fmt}} to "
            f"{stat['max'] * scale:{fmt}})")


def table(out: dict) -> str:
    m, s, sat = out["machine"], out["summary"], out["saturation"]
    rounds = out["settings"]["rounds"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; Python {m['python']}, "
        f"Redis {m['redis_server']}; {m['date']}; profile `{out['profile']}`, commit "
        f"{out['git']['commit']}"
        + (" + uncommitted changes" if out["git"]["uncommitted_changes"] else "")
        + f". Load average {out['loadavg_start'][0]:.2f} at the start, "
        f"{out['loadavg_end'][0]:.2f} at the end (this run's own processes included; "
        "\"others\" below is the CPU of processes it did not start); "
        f"{out['duration_s']} s.",
        "",
        f"Each figure is the median of {rounds} round(s), the range in brackets. CPU is from "
        "/proc (utime + stime of each process tree); Redis's is its whole process, its main "
        "thread's (INFO) is in the JSON.",
        "",
        f"Null-model workers draining a backlog written while they were stopped "
        f"({out['settings']['jobs']:,} jobs of 1 image, {out['settings']['jobs8']:,} of 8):",
        "",
        "| workers | images/job | jobs/s | images/s | Redis CPU ms/job | Redis, share of "
        "one core | worker CPU ms/job | workers, cores | machine, cores busy | others, cores "
        "(max) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k, pts in s["workers"].items():
        for n, p in pts.items():
            lines.append(
                f"| {n} | {k} | {_s(p['jobs_s'], ',.0f')} | {_s(p['images_s'], ',.0f')} | "
                f"{_s(p['redis_ms_per_job'], '.3f')} | {_s(p['redis_share'], '.0%')} | "
                f"{_s(p['worker_ms_per_job'], '.3f')} | {p['worker_cores']['median']:.2f} | "
                f"{p['box_cores']['median']:.2f} of {m['cores']} | "
                f"{p['other_cores_max']:.2f}{' **contended**' if p['contended'] else ''} |")
    lines += ["", f"The API alone (no worker), {out['settings']['api_clients']} closed-loop "
              "clients submitting a 128x96 JPEG, one load generator process:", "",
              "| API processes | submits/s | Redis CPU ms/submit | Redis, share of one core | "
              "API CPU ms/submit | load generator, cores | machine, cores busy | others, cores "
              "(max) |", "|---|---|---|---|---|---|---|---|"]
    for n, p in s["api"].items():
        lines.append(
            f"| {n} | {_s(p['rate'], ',.0f')} | {_s(p['redis_ms_per_item'], '.3f')} | "
            f"{_s(p['redis_share'], '.0%')} | {_s(p['api_ms_per_item'], '.3f')} | "
            f"{p['loadgen_cores']['median']:.2f} | {p['box_cores']['median']:.2f} of "
            f"{m['cores']} | {p['other_cores_max']:.2f}"
            f"{' **contended**' if p['contended'] else ''} |")
    lines += ["", f"The whole path ({out['settings']['path_clients']} clients: submit, then "
              f"long-poll; the API's default {out['settings']['api_workers']} processes; "
              f"{out['settings']['path_workers']} null workers):", ""]
    for key, what in (("path", "greedy workers (`INFERQ_MAX_WAIT_S` 0, the default)"),
                      ("path_full", "workers waiting up to 50 ms for a batch to fill")):
        p = s[key]
        if p is None:
            continue
        lines.append(
            f"- {what}: {_s(p['rate'], ',.0f')} jobs/s, mean batch "
            f"{p['mean_batch']['median']:.1f}, Redis {_s(p['redis_ms_per_item'], '.3f')} CPU ms"
            f" per job, {_s(p['redis_share'], '.0%')} of one core; machine "
            f"{p['box_cores']['median']:.2f} of {m['cores']} cores busy.")
    cmds = out["path"][-1].get("redis_commands") or {}
    if cmds:
        lines += ["", "Redis's time in commands, as shares of its CPU on the greedy path (last "
                  "round; a script's or an EXEC's includes the commands it runs; the rest is "
                  "network and parsing): " + ", ".join(
                      f"{k} {v['share']:.0%} ({v['calls']:,} calls)"
                      for k, v in list(cmds.items())[:8]) + "."]
    pr = out["projection"]
    lines += ["", f"**How many GPUs one Redis feeds** at {pr['redis_share']:.0%} of its one "
              f"thread, GPUs of {pr['gpu_images_s']:,} images/s each, from Redis's CPU per job "
              "of the whole path (jobs of 8 images: the whole path's figure plus what 7 more "
              "images cost in the enqueue and the drain). A loaded GPU's batches are full; "
              "small batches are the worst case:", "",
              "| images/job | batches (mean) | Redis CPU ms/job | ms/image | images/s | jobs/s "
              "| GPUs |", "|---|---|---|---|---|---|---|"]
    for v in pr["per_job_images"].values():
        lines.append(f"| {v['images_per_job']} | {v['batches']} ({v['mean_batch']:.1f} jobs) | "
                     f"{v['redis_ms_per_job']:.3f} | {v['redis_ms_per_image']:.4f} | "
                     f"{v['images_s']:,} | {v['jobs_s']:,} | **{v['gpus']:.1f}** |")
    verdict = (f"On this {sat['cores']}-core machine the machine saturates before Redis: at "
               f"{sat['workers_max']} workers its cores were {sat['box_cores_at_max']:.2f} of "
               f"{sat['cores']} busy while Redis used at most {sat['redis_share_max']:.0%} of "
               f"one core. Jobs/s peak at {sat['peak_at_workers']} worker(s) "
               f"({sat['peak_jobs_s']:,.0f}); more workers only share the same cores. Where "
               "Redis's thread would saturate is the projection above, not a measured point."
               if sat["box_first"] else
               f"Redis used up to {sat['redis_share_max']:.0%} of one core; the machine's "
               f"cores were {sat['box_cores_at_max']:.2f} of {sat['cores']} busy at "
               f"{sat['workers_max']} workers.")
    lines += ["", verdict]
    return "\n".join(lines)


def plot(out: dict, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, m = out["summary"], out["machine"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = {"1": "#2a7ab9", "8": "#5aa02c"}
    rx = ax.twinx()
    for k, pts in s["workers"].items():
        ns = [int(n) for n in pts]
        med = [pts[n]["images_s"]["median"] for n in pts]
        err = [[pts[n]["images_s"]["median"] - pts[n]["images_s"]["min"] for n in pts],
               [pts[n]["images_s"]["max"] - pts[n]["images_s"]["median"] for n in pts]]
        ax.errorbar(ns, med, yerr=err, marker="o", capsize=3, color=colours.get(k),
                    label=f"images/s, jobs of {k} image{'s' if k != '1' else ''}")
        share = [pts[n]["redis_share"]["median"] * 100 for n in pts]
        rx.plot(ns, share, marker="s", ls="--", color=colours.get(k), alpha=0.6,
                label=f"Redis CPU, jobs of {k}")
    pts = s["workers"]["1"]
    rx.plot([int(n) for n in pts], [pts[n]["box_cores"]["median"] / m["cores"] * 100 for n in pts],
            marker=".", ls=":", color="#777777", label=f"machine CPU, % of its {m['cores']} cores")
    ax.set_xscale("log", base=2)
    ns = [int(n) for n in s["workers"]["1"]]
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("null-model worker processes")
    ax.set_ylabel("images/s (median, range of rounds)")
    ax.set_ylim(bottom=0)
    rx.set_ylabel("Redis CPU, % of one core (dashed)")
    rx.set_ylim(0, 105)
    ax.legend(loc="upper left", fontsize=7.5)
    rx.legend(loc="lower right", fontsize=7.5)
    ax.set_title(f"workers draining one Redis ({m['cores']} cores)", fontsize=10)
    ns = [int(n) for n in s["api"]]
    med = [s["api"][n]["rate"]["median"] for n in s["api"]]
    err = [[s["api"][n]["rate"]["median"] - s["api"][n]["rate"]["min"] for n in s["api"]],
           [s["api"][n]["rate"]["max"] - s["api"][n]["rate"]["median"] for n in s["api"]]]
    bx.errorbar(ns, med, yerr=err, marker="o", capsize=3, color="#d9822b", label="submits/s")
    by = bx.twinx()
    by.plot(ns, [s["api"][n]["redis_share"]["median"] * 100 for n in s["api"]], marker="s",
            ls="--", color="#d9822b", alpha=0.6, label="Redis CPU")
    by.plot(ns, [s["api"][n]["box_cores"]["median"] / m["cores"] * 100 for n in s["api"]],
            marker=".", ls=":", color="#777777", label=f"machine CPU, % of {m['cores']} cores")
    by.legend(loc="lower right", fontsize=7.5)
    bx.set_xticks(ns, [str(n) for n in ns])
    bx.set_xlabel("API processes (gunicorn workers)")
    bx.set_ylabel("submits/s")
    bx.set_ylim(bottom=0)
    by.set_ylabel("Redis CPU, % of one core (dashed)")
    by.set_ylim(0, 105)
    bx.set_title("the API alone", fontsize=10)
    fig.suptitle(f"inferq scaling ({out['profile']}), {m['date'][:10]}: {m['cpu']}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
