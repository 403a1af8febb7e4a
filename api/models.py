"""/v1/models: the models jobs can be sent to, and whether a live worker serves each."""
from flask import Blueprint, current_app, jsonify

from api.errors import ApiError
from jobs import keys, streams

bp = Blueprint("models", __name__)


def model_states(ctx) -> dict[str, dict]:
    """Every known model (repository, or served by some worker) with its serving state."""
    workers = streams.live_workers(ctx.redis, ctx.settings.heartbeat_ttl_s)
    names = set(ctx.repository_models()) | streams.known_models(ctx.redis)
    states = {n: {"name": n, "state": "unavailable", "versions": [], "workers": 0,
                  "reason": "no live worker serves this model"} for n in names}
    for worker in workers:
        for name, reason in worker.get("unavailable", {}).items():
            states.setdefault(name, {"name": name, "state": "unavailable", "versions": [],
                                     "workers": 0})["reason"] = reason
        for served in worker["models"]:
            state = states.setdefault(served["name"], {"name": served["name"], "versions": [],
                                                       "workers": 0})
            state.update(state="available", labels=served["labels"],
                         input_size=served["input_size"],
                         max_batch_size=served["max_batch_size"])
            state.pop("reason", None)
            state["workers"] += 1
            if served["version"] not in state["versions"]:
                state["versions"].append(served["version"])
    pipe = ctx.redis.pipeline(transaction=False)
    ordered = sorted(states)
    for name in ordered:
        pipe.xlen(keys.stream(name))
    for name, backlog in zip(ordered, pipe.execute()):
        states[name]["backlog"] = backlog
    return {n: states[n] for n in ordered}


@bp.get("/v1/models")
def list_models():
    return jsonify({"models": list(model_states(current_app.extensions["inferq"]).values())})


@bp.get("/v1/models/<model>")
def get_model(model):
    state = model_states(current_app.extensions["inferq"]).get(model)
    if state is None:
        raise ApiError(404, "unknown_model", f"no model named {model!r}")
    return jsonify(state)
