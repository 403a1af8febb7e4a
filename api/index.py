"""GET /: a short JSON index of the API, for whoever opens the server's address (a console may
take this place later). GET /favicon.ico: 204, so a browser's request for an icon gets neither
a 404 nor a 401. Neither needs a key."""
from flask import Blueprint, current_app, jsonify

from api.auth import BEARER

bp = Blueprint("index", __name__)


@bp.get("/")
def index():
    ctx = current_app.extensions["inferq"]
    body = {"name": "inferq", "description": "Queue-backed inference for Keras/TensorFlow "
            "models", "links": {"openapi": "/openapi.json", "docs": "/docs",
                                "models": "/v1/models", "health": "/healthz"}}
    if ctx.keyring.enabled:
        needless = "/, health and the docs" if ctx.settings.public_docs else "/ and health"
        body["authentication"] = f"send {BEARER} (every endpoint but {needless} needs it)"
    return jsonify(body)


@bp.get("/favicon.ico")
def favicon():
    return "", 204
