"""/v1/stats: live figures per model version over the last minute, for the console. Read at
request time from the slots the finish scripts keep (jobs/live.py) and from the catalog."""
from flask import Blueprint, current_app, jsonify

from jobs import live, registry

bp = Blueprint("stats", __name__)


@bp.get("/v1/stats")
def stats():
    ctx = current_app.extensions["inferq"]
    workers = registry.live_workers(ctx.redis, ctx.settings.heartbeat_ttl_s)
    known = {(name, str(v["version"])): v for name, m in ctx.catalog.states(workers).items()
             for v in m["versions"]}
    window = live.read(ctx.redis)
    out = []
    # A version that finished work in the window is shown even once it is gone from the
    # catalog (removed a moment ago).
    for model, version in sorted(known.keys() | window.versions(),
                                 key=lambda mv: (mv[0], _number(mv[1]))):
        if _number(version) is None:
            continue
        state = known.get((model, version), {})
        histogram = window.histogram(model, version)
        out.append({"model": model, "version": int(version),
                    "backlog": state.get("backlog", 0), "workers": state.get("workers", 0),
                    "jobs_per_s": round(window.rate("jobs", model, version), 3),
                    "inputs_per_s": round(window.rate("inputs", model, version), 3),
                    "p50_ms": live.quantile(histogram, 0.5),
                    "p99_ms": live.quantile(histogram, 0.99)})
    return jsonify({"window_s": live.WINDOW_S, "models": out})


def _number(version: str) -> int | None:
    return int(version) if version.isdigit() else None
