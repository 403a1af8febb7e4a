"""Hostile model uploads: zip bombs, deep config JSON. Against a real redis-server."""
import io
import json
import zipfile

from api.app import create_app
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
