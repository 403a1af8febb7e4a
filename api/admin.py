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

from api import auth, storage
from api.errors import ApiError
from api.jsonbody import parse_json
from jobs import repository, routing

bp = Blueprint("admin", __name__)
log = logging.getLogger("inferq.api")
MODEL_FILES = {".keras": "model.keras", ".h5": "model.h5"}
ACCEPTED = "a .keras or .h5 file, or a .zip of a SavedModel directory"
MAX_ZIP_FILES = 10_000
# An HDF5 file's signature, at offset 0 or (after a user block) 512, 1024, 2048, ...
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


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
    if upload_file is None:
        raise ApiError(400, "no_model_file", f"send the model as the multipart file 'model': "
                       f"{ACCEPTED}")
    ext = _model_type(upload_file)
    config = _config(model, version, model_dir)
    incoming = os.path.join(ctx.settings.model_repository, f".incoming-{secrets.token_hex(6)}")
    with _writing(ctx):
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


def _model_type(upload_file) -> str:
    """The uploaded model's extension, once its name and first bytes say it is a model."""
    name = upload_file.filename or ""
    ext = os.path.splitext(name)[1].lower()
    if ext not in (*MODEL_FILES, ".zip"):
        raise ApiError(400, "unsupported_model_file", f"{name or 'the file'!r} is not a model "
                       f"file inferq takes: upload {ACCEPTED}")
    stream = upload_file.stream
    head = stream.read(2048 + len(HDF5_SIGNATURE))
    stream.seek(0)
    if ext in (".keras", ".zip") and not head.startswith(b"PK"):  # both are zip archives
        kind = "a Keras file" if ext == ".keras" else "a zip archive"
        raise ApiError(400, "unsupported_model_file", f"{name!r} is not {kind}: upload "
                       f"{ACCEPTED}")
    if ext == ".h5" and not any(head[at:].startswith(HDF5_SIGNATURE)
                                for at in (0, 512, 1024, 2048)):
        raise ApiError(400, "unsupported_model_file", f"{name!r} is not an HDF5 file: "
                       f"upload {ACCEPTED}")
    return ext


def _config(model: str, version: int, model_dir: str) -> dict | None:
    """The config the upload sends, or what the new version takes from its model: None when
    the model's config.json (beside its versions) serves it."""
    raw = request.form.get("config")
    if raw is None and "config" in request.files:
        raw = request.files["config"].read().decode("utf-8", "replace")
    if raw is None:
        return _existing_config(model, version, model_dir)
    try:
        config = parse_json(raw, current_app.extensions["inferq"].settings)
    except ApiError as exc:
        code = "invalid_config" if exc.code == "invalid_json" else exc.code
        raise ApiError(exc.status, code, f"config: {exc.message}") from None
    if not isinstance(config, dict):
        raise ApiError(400, "invalid_config", "config must be a JSON object")
    return config


def _existing_config(model: str, version: int, model_dir: str) -> dict | None:
    """A new version sent without a config takes its model's: the config.json beside the
    versions (None: it already applies), or else the latest version's own."""
    if os.path.exists(os.path.join(model_dir, "config.json")):
        return None
    existing = repository.versions(model_dir)
    for v in reversed(existing):
        path = os.path.join(model_dir, str(v), "config.json")
        if os.path.exists(path):
            try:
                return repository._read_json(path)
            except repository.ModelConfigError as exc:
                raise ApiError(400, "invalid_config", f"version {version} would take version "
                               f"{v}'s config, which is broken: {exc}; send the multipart "
                               "field 'config'") from None
    if existing:
        raise ApiError(400, "no_config", f"model {model!r} has no config.json to take for "
                       f"version {version} (neither beside its versions nor in one): send the "
                       "multipart field 'config' (JSON, as config.json in the README)")
    raise ApiError(400, "no_config", f"model {model!r} is new: send its config as the "
                   "multipart field 'config' (JSON, as config.json in the README)")


def _writing(ctx):
    return storage.writing("the model repository", ctx.settings.model_repository,
                           "INFERQ_MODEL_REPOSITORY")


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
    with _writing(ctx):
        os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)
