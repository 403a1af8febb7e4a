"""GET /: to the console. GET /v1: a short JSON index of the API, for scripts that open the
server's address; sent a key, it also says whether the key is valid and an admin's, so that
the console can check a key without a failing request. GET /favicon.ico: 204, so a browser's request for an icon gets neither a 404
nor a 401. None needs a key."""
from flask import Blueprint, current_app, jsonify, redirect, request

from api.auth import BEARER

bp = Blueprint("index", __name__)


@bp.get("/")
def index():
    # Relative, so the redirect holds behind a proxy or a path prefix.
    return redirect("console", 302)


@bp.get("/v1")
def v1():
    ctx = current_app.extensions["inferq"]
    body = {"name": "inferq", "description": "Queue-backed inference for Keras/TensorFlow "
            "models", "links": {"console": "/console", "openapi": "/openapi.json",
                                "docs": "/docs", "models": "/v1/models", "health": "/healthz"}}
    if ctx.keyring.enabled:
        needless = ("/, /v1, the console's files, health and the docs" if ctx.settings.public_docs
                    else "/, /v1, the console's files and health")
        body["authentication"] = f"send {BEARER} (every endpoint but {needless} needs it)"
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and key.strip():
            found = ctx.keyring.lookup(key.strip())
            body["key"] = ({"valid": True, "tenant": found.tenant, "admin": found.admin}
                           if found else {"valid": False})
    return jsonify(body)


@bp.get("/favicon.ico")
def favicon():
    return "", 204
