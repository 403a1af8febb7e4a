"""Turn the phases' measurements into the result keys, the table and the plot."""
from bench.common import MAX_BATCH_SIZE

# name: (key, target, higher is better, unit)
TARGETS = {
    "e2e_ratio": ("e2e_ratio", 0.90, True, "of the ceiling"),
    "mean_batch_ratio": ("mean_batch_ratio", 0.90, True, "of max_batch_size"),
    "idle_p50_overhead_ms": ("idle_p50_overhead_ms", 5.0, False, "ms"),
    "idle_p99_overhead_ms": ("idle_p99_overhead_ms", 15.0, False, "ms"),
    "null_jobs_s": ("null_jobs_s", 3000.0, True, "jobs/s"),
    "api_submits_s": ("api_submits_s", 1000.0, True, "submits/s"),
    "api_rss_mb": ("api_rss_mb", 80.0, False, "MB"),
    "batch_ratio": ("batch_ratio", 0.85, True, "of the ceiling"),
    "cli_ratio": ("cli_ratio", 0.90, True, "of the load generator"),
}


CPU_NAMES = {"worker": "worker (with the model)", "api": "API", "redis": "Redis",
             "loadgen": "load generator", "bench": "bench script", "steal": "steal (hypervisor)",
             "other": "other processes", "naive": "Flask app"}
STAGE_NAMES = {"submit_to_queued": "submit to queued", "queued_to_started": "queued to started",
               "started_to_predict": "decode", "predict": "model",
               "predict_to_completed": "results written", "completed_to_client": "to the client"}


def summarise(ceiling, e2e, idle, null, naive, api, batch, cli, p) -> dict:
    """Run 1 (`ceiling`) is measured on its own first. Run 2's windows are each divided by the
    model's in-process rounds on either side of them, run 3 less the model's one-image calls
    made between its jobs: the figures each ratio sets side by side come from the same
    minutes."""
    img_s = e2e["ceiling_img_s"]
    single = idle["single_ms_p50"]
    out = {
        "ceiling_img_s": round(img_s, 2),
        "ceiling_single_ms": single,
        "ceiling_img_s_each": [round(ceiling["img_s"], 2)] + e2e["ceiling_rounds"],
        "ceiling_single_ms_each": [ceiling["single_ms_p50"], single],
        "e2e_img_s": round(e2e["img_s"], 2),
        "e2e_ratio": round(e2e["ratio"], 3),
        "mean_batch": round(e2e["mean_batch"], 2),
        "mean_batch_ratio": round(e2e["mean_batch"] / MAX_BATCH_SIZE, 3),
        "idle_p50_ms": idle["p50_ms"],
        "idle_p99_ms": idle["p99_ms"],
        # Like for like: each percentile of the jobs less the same percentile of the model's
        # own one-image calls, made between them (the VM's jitter reaches both).
        "idle_p50_overhead_ms": round(idle["p50_ms"] - single, 2),
        "idle_p99_overhead_ms": round(idle["p99_ms"] - idle["single_ms_p99"], 2),
        "idle_p99_over_single_p50_ms": round(idle["p99_ms"] - single, 2),
        "in_process_single_ms_p99": idle["single_ms_p99"],
        "idle_p50_outside_model_ms": idle.get("outside_model_ms_p50"),
        "idle_p99_outside_model_ms": idle.get("outside_model_ms_p99"),
        "null_jobs_s": round(null["jobs_s"]),
        "null_worker_cpu_ms_per_job": round(null["worker_cpu_ms_per_job"], 3),
        "naive_img_s": round(naive["img_s"], 2),
        "naive_ratio": round(naive["img_s"] / img_s, 3),
        "e2e_over_naive": round(e2e["img_s"] / naive["img_s"], 2) if naive["img_s"] else None,
        "api_submits_s": round(api["submits_s"]),
        "api_rss_mb": api["rss_mb"],
        "api_peak_rss_mb": api["peak_rss_mb"],
        "api_cpu_ms_per_submit": api["cpu"]["api"]["ms_per_item"],
        "batch_img_s": round(batch["img_s"], 2),
        "batch_ratio": round(batch["img_s"] / batch["ceiling_img_s"], 3),
        "batch_single_p50_ms": batch["during_p50_ms"],
        "batch_single_p50_over_idle_ms": round(batch["during_p50_ms"] - idle["p50_ms"], 2)
        if batch["during_p50_ms"] is not None else None,
        "cli_img_s": round(cli["img_s"], 2),
        "cli_ratio": round(cli["img_s"] / cli["loadgen_img_s"], 3),
    }
    targets = {}
    for name, (key, target, higher, unit) in TARGETS.items():
        value = out[key]
        met = value >= target if higher else (value <= target if name != "api_rss_mb"
                                              else value < target)
        targets[name] = {"value": value, "target": target, "higher_is_better": higher,
                         "unit": unit, "met": bool(met)}
    out["targets"] = targets
    out["details"] = {"ceiling": ceiling, "e2e": e2e, "idle": idle, "null": null,
                      "naive": naive, "api": api, "batch": batch,
                      "cli": cli}
    return out


def _ms(value, sign: str = "") -> str:
    return "n/a" if value is None else f"{sign}{value:.1f} ms"


def _yes(out, *names):
    return "yes" if all(out["targets"][n]["met"] for n in names) else "**no**"


def table(out: dict) -> str:
    d, m = out["details"], out["machine"]
    e2e_cpu = d["e2e"]["cpu"]
    lines = [
        f"Model: {out['model']['arch']}, alpha {out['model']['alpha']}, input "
        f"{'x'.join(map(str, out['model']['input']))}, max_batch_size "
        f"{out['model']['max_batch_size']}. Inputs: {out['inputs']}.",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, no GPU; Python "
        f"{m['python']}, TensorFlow {m['versions'].get('tensorflow')}, Redis "
        f"{m['redis_server']}; {m['date']}; profile `{out['profile']}`, "
        f"commit {out['git']['commit']}"
        + (" + uncommitted changes" if out["git"]["uncommitted_changes"] else "") + ".",
        "",
        "| # | measurement | result | ratio / target | met |",
        "|---|---|---|---|---|",
        f"| 1 | ceiling: the model in-process, compiled tf.function, batches of "
        f"{MAX_BATCH_SIZE} | **{out['ceiling_img_s']:.1f} images/s**; one image "
        f"{out['ceiling_single_ms']:.1f} ms | 1.00 | |",
        f"| 2 | inferq end to end: HTTP submit + long-poll, API, Redis, 1 worker; "
        f"{out['settings']['clients']} clients | **{out['e2e_img_s']:.1f} images/s** | "
        f"**{out['e2e_ratio']:.2f}** of 1 (target >= 0.90) | {_yes(out, 'e2e_ratio')} |",
        f"| 2 | mean batch at saturation (jobs' `metrics.batch_size`) | {out['mean_batch']:.1f} "
        f"of {MAX_BATCH_SIZE} | {out['mean_batch_ratio']:.2f} (target >= 0.90) | "
        f"{_yes(out, 'mean_batch_ratio')} |",
        f"| 3 | idle latency, one client, submit + long-poll: p50 / p99 | "
        f"{out['idle_p50_ms']:.1f} / {out['idle_p99_ms']:.1f} ms | "
        f"+{out['idle_p50_overhead_ms']:.1f} / +{out['idle_p99_overhead_ms']:.1f} ms over the "
        f"model's own p50 / p99 on one image, in-process between the jobs ("
        f"{out['ceiling_single_ms']:.1f} / {out['in_process_single_ms_p99']:.1f} ms; target "
        f"<= +5 / +15) | {_yes(out, 'idle_p50_overhead_ms')} / "
        f"{_yes(out, 'idle_p99_overhead_ms')} |",
        f"| 4 | queue overhead: null model drained by 1 worker | **{out['null_jobs_s']:,} "
        f"jobs/s**; {out['null_worker_cpu_ms_per_job']:.3f} worker CPU ms/job | target >= "
        f"3,000 jobs/s | {_yes(out, 'null_jobs_s')} |",
        f"| 5 | Flask + `model.predict` per request (same gunicorn settings and clients) | "
        f"**{out['naive_img_s']:.1f} images/s** | {out['naive_ratio']:.2f} of 1; inferq "
        f"does **{out['e2e_over_naive']:.1f}x** | |",
        f"| 6 | API alone (no worker): submits of a small JPEG; RSS per API process | "
        f"**{out['api_submits_s']:,} submits/s**; {out['api_rss_mb']:.0f} MB (peak "
        f"{out['api_peak_rss_mb']:.0f}) | target >= 1,000/s, < 80 MB | "
        f"{_yes(out, 'api_submits_s')} / {_yes(out, 'api_rss_mb')} |",
        f"| 7 | bulk batch: a tar of {d['batch']['images']:,} photos through the batch API, "
        f"upload to completed | **{out['batch_img_s']:.1f} images/s** | "
        f"**{out['batch_ratio']:.2f}** of the model in-process just before and after "
        f"({', '.join(f'{x:.1f}' for x in d['batch']['ceiling_rounds'])} images/s; target "
        f">= 0.85) | {_yes(out, 'batch_ratio')} |",
        f"| 7 | single jobs (submit, `Prefer: wait`) while the same batch runs again: p50 | "
        f"{_ms(out['batch_single_p50_ms'])} | {_ms(out['batch_single_p50_over_idle_ms'], '+')} "
        f"over run 3's idle p50 ({d['batch']['during_jobs']} jobs) | |",
        f"| 8 | `inferq predict` over a folder of {d['cli']['images']:,} photos, "
        f"{d['cli']['concurrency']} in flight, steady (10% to 90% of its lines) | "
        f"**{out['cli_img_s']:.1f} images/s** ({d['cli']['img_s_whole']:.1f} start to exit) | "
        f"**{out['cli_ratio']:.2f}** of the load generator's clients just before and after "
        f"({', '.join(f'{x:.1f}' for x in d['cli']['loadgen_img_s_each'])} images/s; target "
        f">= 0.90) | {_yes(out, 'cli_ratio')} |",
        "",
        f"API worker RSS: {', '.join(f'{x:.0f}' for x in d['api']['rss_mb_at_start'])} MB at "
        f"start, {', '.join(f'{x:.0f}' for x in d['e2e']['api_rss_mb_after'])} MB after run 2 "
        f"({out['settings']['api_threads']} threads each), "
        f"{', '.join(str(round(v['rss_mb'])) for k, v in d['api']['rss'].items() if k != 'master')}"
        f" MB after run 6.",
        "",
        "Where the CPU went during run 2 (cores kept busy; CPU ms per image):",
        "",
        "| " + " | ".join(CPU_NAMES.get(k, k) for k in e2e_cpu) + " |",
        "|" + "---|" * len(e2e_cpu),
        "| " + " | ".join(f"{v['cores']:.2f}; {v['ms_per_item']:.1f}" for v in e2e_cpu.values())
        + " |",
    ]
    each_img_s, each_single = out["ceiling_img_s_each"], out["ceiling_single_ms_each"]
    lines += ["", f"The VM's speed drifts by tens of percent within minutes, so each run is set "
              f"against the model measured in the same minutes. Run 1 on its own, first: "
              f"{each_img_s[0]:.1f} images/s, one image {each_single[0]:.1f} ms. Between run 2's "
              f"windows the clients were stopped, the worker drained, and the model ran "
              f"{MAX_BATCH_SIZE}-image batches in-process: "
              f"{', '.join(f'{x:.1f}' for x in each_img_s[1:])} images/s. Each window is divided "
              f"by the mean of the rounds on either side of it "
              f"({', '.join(f'{x:.2f}' for x in d['e2e']['ratios'])}); row 2 is their median and "
              f"row 1 the mean of those rounds. In run 3 the model was called in-process on one "
              f"image after each job: run 3's p50 is less that call's p50 ({each_single[1]:.1f} "
              f"ms, the one image in row 1), its p99 less that call's p99 (p99 less the "
              f"call's p50: +{out['idle_p99_over_single_p50_ms']:.1f} ms)."]
    stages = d["idle"].get("stages_ms_p50") or {}
    if stages:
        lines += ["", "Run 3, median time of each step of an idle job (ms): " + ", ".join(
            f"{STAGE_NAMES.get(k, k)} {v:.1f}" for k, v in stages.items()) + "."]
    if out.get("idle_p50_outside_model_ms") is not None:
        lines[-1] += (f" Each job's latency minus its own model time: p50 "
                      f"{out['idle_p50_outside_model_ms']:.1f}, p99 "
                      f"{out['idle_p99_outside_model_ms']:.1f} ms.")
    contended = (["ceiling"] if d["ceiling"].get("contended") else []) + [
        n for n in ("e2e", "idle", "null", "naive", "api") if d[n].get("contended")]
    lines += ["", "Every measurement ran while processes this run did not start kept fewer than "
              "0.15 cores busy." if not contended else
              f"**Contended:** {', '.join(contended)} could not find quiet windows on this "
              f"shared machine; their figures are from the least contended windows (see "
              f"`other_cores` in the JSON)."]
    api_cpu = d["api"]["cpu"]
    lines += ["", f"Run 6 CPU per submit: API {api_cpu['api']['ms_per_item']:.2f} ms, Redis "
              f"{api_cpu['redis']['ms_per_item']:.2f} ms, load generator "
              f"{api_cpu['loadgen']['ms_per_item']:.2f} ms; other processes "
              f"{api_cpu['other']['cores']:.2f} cores."]
    return "\n".join(lines)


def plot(out: dict, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1.2]})
    names = ["ceiling\n(in-process,\nbatches of 32)", "inferq\nend to end",
             "inferq\nbulk batch", "Flask +\nmodel.predict"]
    values = [out["ceiling_img_s"], out["e2e_img_s"], out["batch_img_s"], out["naive_img_s"]]
    bars = ax.bar(names, values, color=["#999999", "#2a7ab9", "#5a9ad9", "#d9822b"])
    for bar, v in zip(bars, values):
        ax.annotate(f"{v:.1f}/s\n{v / values[0]:.2f}x", (bar.get_x() + bar.get_width() / 2, v),
                    ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("images/s")
    ax.set_ylim(0, max(values) * 1.3)
    ax.set_title(f"{out['model']['arch'].split(' ')[0]} {out['model']['input'][0]}px, "
                 f"{out['machine']['cores']} CPU cores")
    labels, shares, colours = [], [], []
    for name, t in out["targets"].items():
        v, target = t["value"], t["target"]
        share = v / target if t["higher_is_better"] else (target / v if v > 0 else 2.0)
        rel = ">=" if t["higher_is_better"] else ("<" if name == "api_rss_mb" else "<=")
        labels.append(f"{name}\n{v:g} vs {rel} {target:g}")
        shares.append(min(share, 2.0))
        colours.append("#3a9a4a" if t["met"] else "#c0392b")
    bx.barh(labels[::-1], shares[::-1], color=colours[::-1])
    bx.axvline(1.0, color="black", lw=1)
    bx.set_xlim(0, 2.0)
    bx.set_xlabel("share of target (>= 1 meets it; capped at 2)")
    bx.tick_params(axis="y", labelsize=7.5)
    bx.set_title("targets")
    fig.suptitle(f"inferq benchmark ({out['profile']}), {out['machine']['date'][:10]}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
