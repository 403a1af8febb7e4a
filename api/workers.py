"""/v1/workers: each live worker, what it serves, and its batches over the last minute (admin
keys only: worker names and hosts say how the service is deployed)."""
import time

from flask import Blueprint, current_app, jsonify

from api import auth
from api.errors import ApiError
from jobs import live, registry

bp = Blueprint("workers", __name__)


@bp.get("/v1/workers")
def list_workers():
    ctx = current_app.extensions["inferq"]
    if not auth.caller().admin:  # an open API's caller is an admin
        raise ApiError(403, "admin_required", "the worker list needs an admin key "
                       "(INFERQ_ADMIN_KEYS)")
    infos = registry.live_workers(ctx.redis, ctx.settings.heartbeat_ttl_s)
    now = time.time()
    window = live.read(ctx.redis, now)
    out = []
    for info in sorted(infos, key=lambda i: i["name"]):
        name = info["name"]
        batches = window.counts.get(("batches", name), 0)
        inputs = window.counts.get(("batch_inputs", name), 0)
        out.append({"name": name, "host": info.get("host", ""), "gpu": info.get("gpu"),
                    "models": [{"model": m["name"], "version": m["version"],
                                "state": m["state"]} for m in info.get("models", [])],
                    "heartbeat_age_s": round(max(now - info.get("at", now), 0.0), 1),
                    "batches_per_s": round(batches / window.span_s, 3),
                    "mean_batch_size": round(inputs / batches, 2) if batches else None})
    return jsonify({"workers": out})
