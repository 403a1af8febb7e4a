"""/healthz (the process is up) and /readyz (Redis answers and a worker serves a model)."""
from flask import Blueprint, current_app, jsonify

from api.errors import error_response
from jobs import registry

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    ctx = current_app.extensions["inferq"]
    ctx.redis.ping()
    workers = registry.live_workers(ctx.redis, ctx.settings.heartbeat_ttl_s)
    served = sorted({m["name"] for w in workers for m in w["models"]
                     if m["state"] == "available"})
    if not served:
        broken = {f"{m['name']} v{m['version']}": m.get("reason") for w in workers
                  for m in w["models"] if m["state"] == "unavailable"}
        detail = f"; unavailable: {broken}" if broken else ""
        return error_response(503, "not_ready", f"no live worker serves a model yet{detail}",
                              {"Retry-After": "2"})
    return jsonify({"status": "ready", "models": served, "workers": len(workers)})
