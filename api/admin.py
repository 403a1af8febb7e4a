"""Runtime model control: upload a version, remove a version or a model. The API writes the
repository; the workers notice the change, load or unload, and report it in their heartbeats.
With API keys set, these need an admin key (INFERQ_ADMIN_KEYS); with none set (an open,
development API), they are off unless INFERQ_MODEL_ADMIN=1."""
import json
import logging
import os
import secrets
import shutil
import zipfile

from flask import Blueprint, current_app, jsonify, request

from api import auth
from api.errors import ApiError
from api.jsonbody import parse_json
from jobs import repository, routing

bp = Blueprint("admin", __name__)
log = logging.getLogger("inferq.api")
MODEL_FILES = {".keras": "model.keras", ".h5": "model.h5"}
MAX_ZIP_FILES = 10_000


def _ctx():
    ctx = current_app.extensions["inferq"]
    if ctx.keyring.enabled:
        if not auth.caller().admin:
            raise ApiError(403, "admin_required", "uploading and removing models needs an "
                           "admin key (INFERQ_ADMIN_KEYS)")
    elif not ctx.settings.model_admin:
        raise ApiError(403, "admin_disabled", "model administration is off; set "
                       "INFERQ_MODEL_ADMIN=1 to enable it, or set API and admin keys")
    return ctx


def _model_dir(ctx, model: str) -> str:
    if not repository.NAME_RE.match(model):
        raise ApiError(400, "invalid_name", "model names are letters, digits, '_', '.', '-', "
                       "starting with a letter or digit, at most 64 characters")
    return os.path.join(ctx.settings.model_repository, model)


@bp.put("/v1/models/<model>/versions/<int:version>")
def upload(model, version):
    ctx = _ctx()
    request.max_content_length = ctx.settings.max_model_bytes
    model_dir = _model_dir(ctx, model)
    target = os.path.join(model_dir, str(version))
    if os.path.exists(target):
        raise ApiError(409, "version_exists", f"model {model!r} already has version {version}; "
                       "upload another version number, or delete this one first")
    upload_file = request.files.get("model")
    ext = os.path.splitext(upload_file.filename or "")[1].lower() if upload_file else ""
    if ext not in (*MODEL_FILES, ".zip"):
        raise ApiError(400, "no_model_file", "send the model as the multipart file 'model': "
                       "a .keras or .h5 file, or a .zip of a SavedModel directory")
    config = _config(model_dir)
    incoming = os.path.join(ctx.settings.model_repository, f".incoming-{secrets.token_hex(6)}")
    os.makedirs(incoming)
    try:
        if ext == ".zip":
            # Unpacked, a SavedModel may be a few times its compressed size, not more.
            _unzip_saved_model(upload_file, incoming, 4 * ctx.settings.max_model_bytes)
        else:
            upload_file.save(os.path.join(incoming, MODEL_FILES[ext]))
        if config is not None:
            with open(os.path.join(incoming, "config.json"), "w") as f:
                json.dump(config, f)
        _check(model, version, model_dir, incoming)
        os.makedirs(model_dir, exist_ok=True)
        os.rename(incoming, target)  # atomic: a worker never sees half a version
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    ctx.catalog.forget(model)
    log.info("model %s v%d uploaded", model, version)
    return jsonify({"name": model, "version": version, "state": "loading"}), 201, {
        "Location": f"/v1/models/{model}"}


def _config(model_dir: str) -> dict | None:
    raw = request.form.get("config")
    if raw is None and "config" in request.files:
        raw = request.files["config"].read().decode("utf-8", "replace")
    if raw is None:
        if not os.path.exists(os.path.join(model_dir, "config.json")):
            raise ApiError(400, "no_config", "a new model needs its config: send the multipart "
                           "field 'config' (JSON, as config.json in the README)")
        return None
    try:
        config = parse_json(raw, current_app.extensions["inferq"].settings)
    except ApiError as exc:
        code = "invalid_config" if exc.code == "invalid_json" else exc.code
        raise ApiError(exc.status, code, f"config: {exc.message}") from None
    if not isinstance(config, dict):
        raise ApiError(400, "invalid_config", "config must be a JSON object")
    return config


def _check(model, version, model_dir, incoming):
    """Refuse a config the workers could not serve, before it reaches the repository."""
    try:
        model_config = repository._read_json(os.path.join(model_dir, "config.json"))
        model_config.update(repository._read_json(os.path.join(incoming, "config.json")))
        repository._spec(model, version, repository._model_path(incoming), model_config,
                         model_dir, 32, "")
    except repository.ModelConfigError as exc:
        raise ApiError(400, "invalid_config", str(exc)) from None


def _unzip_saved_model(upload_file, dest: str, max_bytes: int):
    try:
        with zipfile.ZipFile(upload_file.stream) as archive:
            files = [i for i in archive.infolist() if not i.is_dir()]
            # A zip bomb is refused from its directory, before anything is written.
            if len(files) > MAX_ZIP_FILES or sum(i.file_size for i in files) > max_bytes:
                raise ApiError(413, "model_too_large", f"the archive holds more than "
                               f"{MAX_ZIP_FILES} files or unpacks to more than {max_bytes} bytes")
            names = [i.filename for i in files]
            root = os.path.commonpath(names) if len(names) > 1 else ""
            if "saved_model.pb" not in {os.path.relpath(n, root) for n in names}:
                root = os.path.dirname(root)
            for name in names:
                rel = os.path.relpath(name, root) if root else name
                path = os.path.normpath(os.path.join(dest, rel))
                if not path.startswith(dest + os.sep):  # no "../" escapes from the archive
                    raise ApiError(400, "invalid_model", f"unsafe path in archive: {name}")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with archive.open(name) as src, open(path, "wb") as out:
                    shutil.copyfileobj(src, out)
    except zipfile.BadZipFile as exc:
        raise ApiError(400, "invalid_model", f"not a zip archive: {exc}") from None
    if not os.path.exists(os.path.join(dest, "saved_model.pb")):
        raise ApiError(400, "invalid_model", "the archive holds no saved_model.pb")


@bp.delete("/v1/models/<model>/versions/<int:version>")
def remove_version(model, version):
    ctx = _ctx()
    path = os.path.join(_model_dir(ctx, model), str(version))
    if not os.path.isdir(path):
        raise ApiError(404, "unknown_version", f"model {model!r} has no version {version}")
    _trash(ctx, path)
    if not repository.versions(os.path.dirname(path)):
        routing.forget_model(ctx.redis, model)
    ctx.catalog.forget(model)
    log.info("model %s v%d removed", model, version)
    return jsonify({"name": model, "version": version, "state": "unloading"}), 202


@bp.delete("/v1/models/<model>")
def remove_model(model):
    ctx = _ctx()
    path = _model_dir(ctx, model)
    if not os.path.isdir(path):
        raise ApiError(404, "unknown_model", f"no model named {model!r}")
    _trash(ctx, path)
    routing.forget_model(ctx.redis, model)  # new submits get 404 from now on
    ctx.catalog.forget(model)
    log.info("model %s removed", model)
    return jsonify({"name": model, "state": "unloading"}), 202


def _trash(ctx, path: str):
    # Rename first (atomic), so workers see the version gone at once, then delete.
    trash = os.path.join(ctx.settings.model_repository, f".removed-{secrets.token_hex(6)}")
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)
