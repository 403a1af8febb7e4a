"""/v1/models: the models jobs can be sent to, their versions, and the workers serving them."""
from flask import Blueprint, current_app, jsonify

from api.errors import ApiError

bp = Blueprint("models", __name__)


@bp.get("/v1/models")
def list_models():
    return jsonify({"models": list(current_app.extensions["inferq"].catalog.states().values())})


@bp.get("/v1/models/<model>")
def get_model(model):
    catalog = current_app.extensions["inferq"].catalog
    state = catalog.states().get(model)
    if state is None and catalog.exists(model):
        # Uploaded a moment ago, through another API process: this one's listing is older.
        catalog.forget(model)
        state = catalog.states().get(model)
    if state is None:
        raise ApiError(404, "unknown_model", f"no model named {model!r}")
    return jsonify(state)
