"""The API against a real redis-server (Flask's test client, no worker)."""
import base64
import io
import json
import struct
import time
import zlib

import pytest
from PIL import Image

from api.app import create_app
from jobs import keys
from stack.processes import free_port, queued_inputs


def png_bytes(size=(32, 32), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise(size, 40).convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def tiff_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "TIFF")
    return buf.getvalue()


def huge_png_header(width=50000, height=50000) -> bytes:
    """A tiny PNG file that declares width x height pixels."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def make_repo(root, name="shapes", version=1, config=None):
    """A repository entry the API can route to (it never loads the model file)."""
    (root / name / str(version)).mkdir(parents=True, exist_ok=True)
    (root / name / str(version) / "model.keras").write_bytes(b"not read by the API")
    (root / name / "config.json").write_text(json.dumps(config or {
        "input": {"kind": "image", "size": [64, 64]}, "labels": ["a", "b"]}))
    return root


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path)


@pytest.fixture
def client(redis_url, repo):
    app = create_app({"redis_url": redis_url, "model_repository": str(repo),
                      "max_body_bytes": 200_000, "max_inputs_per_job": 4, "max_backlog": 6})
    return app.test_client()


def submit_files(client, *files, model="shapes", field="image"):
    data = {field: [(io.BytesIO(content), name) for name, content in files]}
    return client.post(f"/v1/models/{model}/jobs", data=data, content_type="multipart/form-data")


def assert_nothing_enqueued(r):
    assert r.keys(keys.job("*")) == []
    assert r.xlen(keys.stream("shapes", 1)) == 0


def test_submit_returns_202_with_the_job_and_its_urls(client, r):
    resp = submit_files(client, ("a.png", png_bytes()), ("b.jpg", jpeg_bytes()))
    assert resp.status_code == 202
    job = resp.get_json()
    assert job["status"] == "queued" and job["model"] == "shapes" and job["inputs"] == 2
    assert resp.headers["Location"] == job["urls"]["get"]
    assert job["urls"]["get"].endswith(f"/v1/jobs/{job['id']}")
    assert job["urls"]["cancel"].endswith(f"/v1/jobs/{job['id']}/cancel")
    assert len(job["id"]) >= 20  # unguessable
    assert r.xlen(keys.stream("shapes", 1)) == 2
    got = client.get(f"/v1/jobs/{job['id']}").get_json()
    assert got["id"] == job["id"] and [o["status"] for o in got["outputs"]] == ["pending"] * 2


def test_submit_json_base64_and_data_urls(client, r):
    b64 = base64.b64encode(png_bytes()).decode()
    resp = client.post("/v1/models/shapes/jobs", json={
        "images": [{"b64": b64}, {"b64": "data:image/png;base64," + b64}]})
    assert resp.status_code == 202 and resp.get_json()["inputs"] == 2
    assert queued_inputs(r, keys.stream("shapes", 1)) == [png_bytes(), png_bytes()]


@pytest.mark.parametrize("name,make,status,code", [
    ("empty file", lambda c: submit_files(c, ("e.png", b"")), 400, "empty_input"),
    ("text file", lambda c: submit_files(c, ("t.txt", b"hello, not an image\n" * 5)), 415,
     "unsupported_format"),
    ("truncated JPEG", lambda c: submit_files(c, ("t.jpg", jpeg_bytes()[:300])), 400,
     "invalid_image"),
    ("PNG declaring 50000x50000", lambda c: submit_files(c, ("h.png", huge_png_header())), 413,
     "too_many_pixels"),
    ("TIFF", lambda c: submit_files(c, ("t.tiff", tiff_bytes())), 415, "unsupported_format"),
    ("body over the limit", lambda c: submit_files(c, ("big.png", b"\0" * 300_000)), 413,
     "request_entity_too_large"),
    ("no file field", lambda c: submit_files(c, ("a.png", png_bytes()), field="file"), 400,
     "no_input"),
    ("too many inputs", lambda c: submit_files(c, *[("a.png", png_bytes())] * 5), 400,
     "too_many_inputs"),
    ("one bad among good", lambda c: submit_files(c, ("a.png", png_bytes()), ("b.png", b"xx")),
     415, "unsupported_format"),
    ("malformed JSON", lambda c: c.post("/v1/models/shapes/jobs", data=b'{"images": [',
                                        content_type="application/json"), 400, "invalid_json"),
    ("JSON nested too deeply", lambda c: c.post("/v1/models/shapes/jobs",
                                                data=b"[" * 50_000 + b"]" * 50_000,
                                                content_type="application/json"), 400,
     "json_too_deep"),
    ("JSON without images", lambda c: c.post("/v1/models/shapes/jobs", json={"img": []}), 400,
     "no_input"),
    ("bad base64", lambda c: c.post("/v1/models/shapes/jobs",
                                    json={"images": [{"b64": "not base64!!"}]}), 400,
     "invalid_base64"),
    ("b64 not a string", lambda c: c.post("/v1/models/shapes/jobs", json={"images": [{"b64": 3}]}),
     400, "invalid_input"),
    ("other content type", lambda c: c.post("/v1/models/shapes/jobs", data=b"x",
                                            content_type="text/plain"), 415,
     "unsupported_media_type"),
])
def test_bad_input_gets_a_json_4xx_and_nothing_is_enqueued(client, r, name, make, status, code):
    resp = make(client)
    assert resp.status_code == status, resp.get_data(as_text=True)
    error = resp.get_json()["error"]
    assert error["code"] == code and error["message"]
    assert_nothing_enqueued(r)


def test_unknown_model_and_unknown_job_are_404(client, r):
    resp = submit_files(client, ("a.png", png_bytes()), model="nope")
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "unknown_model"
    for path in ("/v1/jobs/" + "x" * 22, "/v1/jobs/short", "/v1/jobs/%2e%2e"):
        resp = client.get(path)
        assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "unknown_job"
    assert client.post("/v1/jobs/" + "x" * 22 + "/cancel").status_code == 404
    assert client.get("/v1/models/nope").status_code == 404
    assert client.get("/no/such/route").get_json()["error"]["code"] == "not_found"
    assert_nothing_enqueued(r)


def test_cancel_a_queued_job_then_409(client):
    job = submit_files(client, ("a.png", png_bytes()), ("b.png", png_bytes())).get_json()
    assert [o["status"] for o in job["outputs"]] == ["pending", "pending"]
    resp = client.post(job["urls"]["cancel"])
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "canceled" and resp.get_json()["completed_at"]
    for canceled in (resp.get_json(), client.get(job["urls"]["get"]).get_json()):
        assert canceled["status"] == "canceled" and canceled["finished"]
        # A finished job has no pending output.
        assert [o["status"] for o in canceled["outputs"]] == ["canceled", "canceled"]
    again = client.post(job["urls"]["cancel"])
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "already_finished"


def test_long_poll_of_an_unfinished_job_returns_it_when_the_wait_ends(client):
    job = submit_files(client, ("a.png", png_bytes())).get_json()
    resp = client.get(job["urls"]["get"] + "?wait=0.2")
    assert resp.status_code == 200 and resp.get_json()["status"] == "queued"
    for bad in ("abc", "-1", "nan", "inf"):
        resp = client.get(job["urls"]["get"] + f"?wait={bad}")
        assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_wait"


def test_full_backlog_answers_503_with_retry_after(client, r):
    assert submit_files(client, *[("a.png", png_bytes())] * 4).status_code == 202
    resp = submit_files(client, *[("a.png", png_bytes())] * 3)
    assert resp.status_code == 503 and resp.headers["Retry-After"]
    assert resp.get_json()["error"]["code"] == "backlog_full"
    assert r.xlen(keys.stream("shapes", 1)) == 4


def test_a_job_larger_than_the_whole_backlog_is_400_not_a_503_to_wait_out(redis_url, repo, r):
    client = create_app({"redis_url": redis_url, "model_repository": str(repo),
                         "max_backlog": 2}).test_client()
    resp = submit_files(client, *[("a.png", png_bytes())] * 3)
    assert resp.status_code == 400
    error = resp.get_json()["error"]
    assert error["code"] == "too_many_inputs" and "INFERQ_MAX_BACKLOG" in error["message"]
    assert_nothing_enqueued(r)


def test_models_and_readiness_without_workers(client):
    models = client.get("/v1/models").get_json()["models"]
    assert models == [{"name": "shapes", "state": "unavailable", "default_version": None,
                       "versions": [{"version": 1, "state": "unavailable", "workers": 0,
                                     "reason": "no live worker serves this version",
                                     "backlog": 0}],
                       "workers": 0, "backlog": 0,
                       "model_version_status": [{"version": "1", "state": "END", "status": {
                           "error_code": "UNKNOWN",
                           "error_message": "no live worker serves this version"}}]}]
    assert client.get("/healthz").status_code == 200
    resp = client.get("/readyz")
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "not_ready"


def test_redis_down_is_503_not_500(repo):
    app = create_app({"redis_url": f"redis://127.0.0.1:{free_port()}/0",
                      "model_repository": str(repo)})
    client = app.test_client()
    for resp in (submit_files(client, ("a.png", png_bytes())),
                 client.get("/v1/jobs/" + "x" * 22), client.get("/v1/models"),
                 client.get("/readyz"), client.post("/v1/jobs/" + "x" * 22 + "/cancel")):
        assert resp.status_code == 503, resp.get_data(as_text=True)
        assert resp.get_json()["error"]["code"] == "redis_unavailable"
        assert resp.headers["Retry-After"]
    assert client.get("/healthz").status_code == 200


def test_sentinels_that_cannot_be_reached_are_a_quick_503_not_a_hang(repo):
    app = create_app({"redis_sentinels": f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}",
                      "redis_master": "inferq", "model_repository": str(repo)})
    client = app.test_client()
    t0 = time.monotonic()
    for resp in (submit_files(client, ("a.png", png_bytes())),
                 client.get("/v1/jobs/" + "x" * 22 + "?wait=5")):
        assert resp.status_code == 503, resp.get_data(as_text=True)
        assert resp.get_json()["error"]["code"] == "redis_unavailable"
        assert resp.headers["Retry-After"]
    assert time.monotonic() - t0 < 10


def test_a_submit_no_replica_confirms_is_503_naming_the_job_and_a_retry_gets_it(redis_url,
                                                                                repo, r):
    # This Redis has no replica: WAIT 1 always runs out.
    client = create_app({"redis_url": redis_url, "model_repository": str(repo),
                         "redis_min_replicas_ack": 1,
                         "redis_wait_timeout_ms": 50}).test_client()
    key = {"Idempotency-Key": "k-replica-1"}
    answers = [client.post("/v1/models/shapes/jobs", headers=key,
                           content_type="multipart/form-data",
                           data={"image": [(io.BytesIO(png_bytes()), "a.png")]})
               for _ in range(2)]
    job_ids = set()
    for resp in answers:
        assert resp.status_code == 503 and resp.headers["Retry-After"]
        error = resp.get_json()["error"]
        assert error["code"] == "not_replicated" and "Idempotency-Key" in error["message"]
        job_ids.add(error["message"].split()[1])
    [job_id] = job_ids  # the retry named the same job: no second one
    assert r.hget(keys.job(job_id), "status") == b"queued"
    assert r.xlen(keys.stream("shapes", 1)) == 1


def test_a_double_slash_is_a_json_404_not_an_html_redirect(client):
    for path in ("//v1/models", "/v1//models", "/v1/models/shapes//jobs"):
        resp = client.get(path)
        assert resp.status_code == 404, path
        assert resp.get_json()["error"]["code"] == "not_found"
