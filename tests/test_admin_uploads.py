"""Model uploads: hostile ones (zip bombs, deep config JSON), files that are not models, a
missing config, a repository the API cannot write. Against a real redis-server."""
import io
import json
import os
import subprocess
import zipfile

import pytest
import requests

from api.app import create_app
from stack.processes import RedisServer, start_api
from tests.test_api import make_repo


def client_for(redis_url, tmp_path, **settings):
    repo = make_repo(tmp_path / "models")
    app = create_app({"redis_url": redis_url, "model_repository": str(repo), "model_admin": 1,
                      **settings})
    return app.test_client(), repo


def upload(client, archive: bytes, config=None):
    data = {"model": (io.BytesIO(archive), "model.zip")}
    if config is not None:
        data["config"] = config
    return client.put("/v1/models/bomb/versions/1", data=data, content_type="multipart/form-data")


def zipped(files: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


CONFIG = json.dumps({"input": {"kind": "image", "size": [8, 8]}, "labels": ["a", "b"]})


def test_a_zip_bomb_is_refused_before_anything_is_written(redis_url, tmp_path):
    client, repo = client_for(redis_url, tmp_path, max_model_bytes=1_000_000)
    bomb = zipped({"saved_model.pb": b"x", "variables/variables.data-00000-of-00001":
                   b"\0" * 20_000_000})
    assert len(bomb) < 1_000_000  # the upload itself is small
    resp = upload(client, bomb, CONFIG)
    assert (resp.status_code, resp.json["error"]["code"]) == (413, "model_too_large")
    assert not (repo / "bomb").exists()
    assert [p.name for p in repo.iterdir()] == ["shapes"]  # no half-unpacked leftovers


def test_an_archive_of_very_many_files_is_refused(redis_url, tmp_path):
    client, repo = client_for(redis_url, tmp_path)
    many = zipped({"saved_model.pb": b"x", **{f"assets/{i}": b"" for i in range(10_001)}})
    resp = upload(client, many, CONFIG)
    assert (resp.status_code, resp.json["error"]["code"]) == (413, "model_too_large")
    assert not (repo / "bomb").exists()


def test_a_deeply_nested_or_huge_config_is_a_400_or_413(redis_url, tmp_path):
    client, repo = client_for(redis_url, tmp_path, max_json_bytes=10_000)
    archive = zipped({"saved_model.pb": b"x"})
    deep = upload(client, archive, "[" * 100_000 + "]" * 100_000)
    assert (deep.status_code, deep.json["error"]["code"]) == (413, "json_too_large")
    nested = upload(client, archive, "[" * 50 + "]" * 50)
    assert (nested.status_code, nested.json["error"]["code"]) == (400, "json_too_deep")
    assert "INFERQ_MAX_JSON_DEPTH" in nested.json["error"]["message"]
    assert not (repo / "bomb").exists()
    broken = upload(client, archive, "{not json")
    assert (broken.status_code, broken.json["error"]["code"]) == (400, "invalid_config")
    assert not (repo / "bomb").exists()


KERAS = b"PK\x03\x04" + b"\0" * 64  # a zip's start: what a .keras file is (never loaded here)


def put(client, filename, content, model="shapes", version=2, **fields):
    return client.put(f"/v1/models/{model}/versions/{version}", content_type="multipart/form-data",
                      data={"model": (io.BytesIO(content), filename), **fields})


@pytest.mark.parametrize("filename,content,says", [
    ("notes.txt", b"hello", "'notes.txt' is not a model file inferq takes"),
    ("model", b"hello", "'model' is not a model file inferq takes"),
    ("model.keras", b"hello", "'model.keras' is not a Keras file"),
    ("model.zip", b"hello", "'model.zip' is not a zip archive"),
    ("model.h5", KERAS, "'model.h5' is not an HDF5 file"),
])
def test_a_file_that_is_not_a_model_is_told_which_files_are(redis_url, tmp_path, filename,
                                                            content, says):
    client, repo = client_for(redis_url, tmp_path)
    resp = put(client, filename, content, config=CONFIG)
    assert (resp.status_code, resp.json["error"]["code"]) == (400, "unsupported_model_file")
    message = resp.json["error"]["message"]
    assert message.startswith(says)
    assert message.endswith("upload a .keras or .h5 file, or a .zip of a SavedModel directory")
    assert not (repo / "shapes" / "2").exists()


def test_no_model_field_is_told_which_field(redis_url, tmp_path):
    client, _ = client_for(redis_url, tmp_path)
    resp = client.put("/v1/models/shapes/versions/2", content_type="multipart/form-data",
                      data={"config": CONFIG})
    assert (resp.status_code, resp.json["error"]["code"]) == (400, "no_model_file")
    assert "multipart file 'model'" in resp.json["error"]["message"]


def test_a_new_version_without_a_config_takes_its_models(redis_url, tmp_path):
    client, repo = client_for(redis_url, tmp_path)
    # The config beside the versions serves the new one as it is.
    assert put(client, "model.keras", KERAS).status_code == 201
    assert (repo / "shapes" / "2" / "model.keras").read_bytes() == KERAS
    assert not (repo / "shapes" / "2" / "config.json").exists()
    # A model whose versions each hold their config: the new one takes the latest's.
    (repo / "solo" / "3").mkdir(parents=True)
    (repo / "solo" / "3" / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    (repo / "solo" / "3" / "config.json").write_text(CONFIG)
    h5 = b"\x89HDF\r\n\x1a\n" + b"\0" * 64
    resp = put(client, "model.h5", h5, model="solo", version=4)
    assert resp.status_code == 201, resp.json
    assert json.loads((repo / "solo" / "4" / "config.json").read_text()) == json.loads(CONFIG)


def test_a_config_is_asked_for_with_the_reason(redis_url, tmp_path):
    client, repo = client_for(redis_url, tmp_path)
    resp = put(client, "model.keras", KERAS, model="fresh", version=1)
    assert (resp.status_code, resp.json["error"]["code"]) == (400, "no_config")
    assert resp.json["error"]["message"].startswith("model 'fresh' is new: send its config")
    # Versions, but no config anywhere to take.
    (repo / "bare" / "1").mkdir(parents=True)
    (repo / "bare" / "1" / "model.keras").write_bytes(KERAS)
    resp = put(client, "model.keras", KERAS, model="bare", version=2)
    assert (resp.status_code, resp.json["error"]["code"]) == (400, "no_config")
    message = resp.json["error"]["message"]
    assert "has no config.json to take for version 2" in message and "new model" not in message
    assert not (repo / "fresh").exists() and not (repo / "bare" / "2").exists()


# --- a repository the API cannot write ---------------------------------------------------------

NOBODY = 65534


def test_an_unwritable_repository_is_a_507_that_says_what_to_do(tmp_path):
    """The repository belongs to another user (mode 0755), and the API runs without the
    capabilities that let root write anywhere: its writes really fail, as in a container
    whose user does not own the mounted directory."""
    repo = make_repo(tmp_path / "models")
    for path in (repo, *repo.rglob("*")):
        os.chown(path, NOBODY, NOBODY)
    redis = RedisServer()
    api = None
    try:
        api, base = start_api(redis.url, capabilities=False, model_repository=repo,
                              model_admin=1, api_workers=1)
        resp = requests.put(f"{base}/v1/models/shapes/versions/2", timeout=10,
                            files={"model": ("model.keras", KERAS)}, data={"config": CONFIG})
        assert resp.status_code == 507, resp.text
        error = resp.json()["error"]
        assert error["code"] == "insufficient_storage"
        assert error["message"].startswith(f"the model repository {repo} "
                                           "(INFERQ_MODEL_REPOSITORY) is not writable by the "
                                           "API process (uid 0): Permission denied")
        assert "make it writable by that user (chown or chmod)" in error["message"]
        resp = requests.delete(f"{base}/v1/models/shapes/versions/1", timeout=10)
        assert resp.status_code == 507 and "is not writable" in resp.json()["error"]["message"]
        assert sorted(p.name for p in repo.iterdir()) == ["shapes"]
        assert sorted(p.name for p in (repo / "shapes").iterdir()) == ["1", "config.json"]
        # The API still reads the repository.
        assert requests.get(f"{base}/v1/models/shapes", timeout=10).status_code == 200
        assert "Traceback" not in api.output()
    finally:
        if api is not None:
            api.stop()
        redis.stop()


def test_a_full_repository_is_a_507_that_says_so(redis_url, tmp_path):
    """A repository on a small tmpfs: the upload runs out of space for real."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        repo = make_repo(mount)
        app = create_app({"redis_url": redis_url, "model_repository": str(repo),
                          "model_admin": 1})
        resp = put(app.test_client(), "model.keras", KERAS + os.urandom(256 * 1024))
        assert resp.status_code == 507
        assert resp.json["error"] == {"code": "insufficient_storage", "message": (
            f"the model repository {repo} (INFERQ_MODEL_REPOSITORY) has no space left: free "
            "some space there, or give it a larger volume")}
        assert sorted(p.name for p in repo.iterdir()) == ["shapes"]  # the partial upload is gone
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_model_uploaded_through_one_api_process_is_found_at_once_through_another(
        redis_url, tmp_path):
    first, repo = client_for(redis_url, tmp_path)
    second = create_app({"redis_url": redis_url, "model_repository": str(repo),
                         "model_admin": 1}).test_client()
    assert second.get("/v1/models").status_code == 200  # its listing of the repository, now
    resp = first.put("/v1/models/fresh/versions/1", data={
        "model": (io.BytesIO(KERAS), "model.keras"), "config": CONFIG},
        content_type="multipart/form-data")
    assert resp.status_code == 201, resp.json
    assert second.get("/v1/models/fresh").status_code == 200
