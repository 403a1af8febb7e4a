"""GET /metrics in the Prometheus text format. Everything is read from Redis at scrape time, so
every API process (and every API machine) answers alike: counters that the job scripts keep
(jobs.keys.stats), and gauges from the streams and the workers' heartbeats."""
from flask import Blueprint, Response, current_app

from jobs import keys, registry

bp = Blueprint("metrics", __name__)

# keys.stats field prefix -> metric name, help, the labels the rest of the field holds.
COUNTERS = {
    "submitted": ("inferq_jobs_submitted_total", "Jobs queued.", ("model", "version")),
    "refused": ("inferq_jobs_refused_total", "Submits refused by the queue (backlog_full, "
                "no_version); input errors are not counted.", ("model", "reason")),
    "jobs": ("inferq_jobs_finished_total", "Jobs that reached a final state.",
             ("model", "status")),
    "inputs": ("inferq_inputs_total", "Inputs with a result, by outcome.",
               ("model", "version", "outcome")),
    "batches": ("inferq_batches_total", "Batches run through a model.", ("model", "version")),
    "batched_inputs": ("inferq_batched_inputs_total", "Inputs in those batches: divided by "
                       "inferq_batches_total, the mean batch size.", ("model", "version")),
}


@bp.get("/metrics")
def metrics():
    ctx = current_app.extensions["inferq"]
    out = []
    counts = sorted((field.decode().split("|"), int(value))
                    for field, value in ctx.redis.hgetall(keys.stats()).items())
    for prefix, (name, text, labels) in COUNTERS.items():
        _family(out, name, "counter", text, [
            (dict(zip(labels, values)), value) for (kind, *values), value in counts
            if kind == prefix and len(values) == len(labels)])
    workers = registry.live_workers(ctx.redis, ctx.settings.heartbeat_ttl_s)
    models = ctx.catalog.states(workers)
    versions = [(name, v) for name, m in models.items() for v in m["versions"]]
    _family(out, "inferq_backlog_inputs", "gauge", "Inputs queued or being run, per version.",
            [(_labels(n, v), v["backlog"]) for n, v in versions])
    _family(out, "inferq_version_available", "gauge", "1 when a live worker serves the version.",
            [(_labels(n, v), int(v["state"] == "available")) for n, v in versions])
    _family(out, "inferq_version_workers", "gauge", "Live workers serving or loading the version.",
            [(_labels(n, v), v["workers"]) for n, v in versions])
    _family(out, "inferq_workers", "gauge", "Live workers.",
            [({}, len(workers))])
    _family(out, "inferq_webhook_deliveries_due", "gauge",
            "Webhook deliveries waiting for an attempt (or in one).",
            [({}, ctx.redis.zcard(keys.webhooks_due()))])
    return Response("".join(out), content_type="text/plain; version=0.0.4; charset=utf-8")


def _labels(model: str, version: dict) -> dict:
    return {"model": model, "version": str(version["version"])}


def _family(out: list, name: str, kind: str, text: str, samples: list):
    out.append(f"# HELP {name} {text}\n# TYPE {name} {kind}\n")
    for labels, value in samples:
        pairs = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        out.append(f"{name}{{{pairs}}} {value}\n" if pairs else f"{name} {value}\n")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
