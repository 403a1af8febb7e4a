"""The web console: /console (one HTML page), /console/assets/<name> (its CSS and JavaScript
modules, from console/ in the repository) and /console/examples[/<file>] (the example images
in examples/, read-only). None needs a key: the page asks for one and sends it to the API as a
Bearer header from the browser. Every file is from this server, under a strict
Content-Security-Policy: no inline script, nothing from elsewhere."""
from pathlib import Path

from flask import Blueprint, Response, jsonify, send_from_directory

from api.errors import ApiError

bp = Blueprint("console", __name__)
ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = ROOT / "console"
EXAMPLES_DIR = ROOT / "examples"
TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript",
         ".svg": "image/svg+xml"}
EXAMPLE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
# blob: for the preview of an image the user picks; connect-src 'self' for the API itself.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


@bp.get("/console")
def page():
    return _file(ASSETS_DIR, "index.html", TYPES, max_age=0)


@bp.get("/console/assets/<name>")
def asset(name):
    if name == "index.html":  # the page is /console, not a second address
        raise _missing("console file", name)
    return _file(ASSETS_DIR, name, TYPES, max_age=0)


@bp.get("/console/examples")
def examples():
    names = sorted(p.name for p in EXAMPLES_DIR.iterdir() if p.suffix in EXAMPLE_TYPES)
    return jsonify({"examples": [{"name": n, "url": f"/console/examples/{n}"} for n in names]})


@bp.get("/console/examples/<name>")
def example(name):
    return _file(EXAMPLES_DIR, name, EXAMPLE_TYPES, max_age=3600)


def _file(folder: Path, name: str, types: dict, max_age: int) -> Response:
    """A file straight from `folder` (no subfolders, only the listed types)."""
    kind = types.get(Path(name).suffix)
    if kind is None or "/" in name or name.startswith(".") or not (folder / name).is_file():
        raise _missing("console file" if folder == ASSETS_DIR else "example", name)
    response = send_from_directory(folder, name, mimetype=kind, max_age=max_age)
    response.headers.update(HEADERS)
    return response


def _missing(what: str, name: str) -> ApiError:
    return ApiError(404, "not_found", f"no {what} {name!r}")
