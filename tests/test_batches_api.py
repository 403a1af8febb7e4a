"""The batch API against a real redis-server (Flask's test client, no worker, no feeder): uploads
streamed to the batch store, their checks, tenants, listing, cancel, delete, the files as they
stand, long-polls; and a real API process whose memory stays flat while a large file arrives."""
import gzip
import io
import json
import os
import subprocess
import tarfile
import threading
import time
import zipfile

import pytest
import requests
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from api.app import create_app
from jobs import keys, routing
from jobs.batch import (CANCELLED, CANCELLING, COMPLETED, IN_PROGRESS, VALIDATING, Batches, Files,
                        new_batch_id)
from stack.processes import RedisServer, children, start_api, wait_for
from tests.test_api import make_repo, png_bytes

KEY_A = "key-a-0123456789abcdef"
KEY_B = "key-b-0123456789abcdef"
AUTH_A = {"Authorization": f"Bearer {KEY_A}"}
AUTH_B = {"Authorization": f"Bearer {KEY_B}"}
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def tar_bytes(members: dict[str, bytes], mode="w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


PHOTOS = {"cats/1.png": png_bytes(), "cats/2.png": png_bytes(color=(0, 90, 200))}
JSONL = b"".join(json.dumps({"custom_id": f"r{i}", "b64": "aGk="}).encode() + b"\n"
                 for i in range(3))
FILES = {"tar": tar_bytes(PHOTOS), "tar.gz": gzip.compress(tar_bytes(PHOTOS)),
         "zip": zip_bytes(PHOTOS), "jsonl": JSONL}


def make_app(redis_url, repo, batch_dir, **settings):
    config = {"redis_url": redis_url, "model_repository": str(repo), "batch_dir": str(batch_dir),
              "api_keys": f"{KEY_A}=alpha,{KEY_B}=beta", "max_long_poll_s": 5}
    config.update(settings)
    return create_app(config)


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "models")


@pytest.fixture
def batch_dir(tmp_path):
    return tmp_path / "batches"


@pytest.fixture
def client(redis_url, repo, batch_dir):
    return make_app(redis_url, repo, batch_dir).test_client()


@pytest.fixture
def store(r):
    return Batches(r, 3600, 3600)


def upload(client, data: bytes, name="photos.tar", model="shapes", headers=AUTH_A, query="",
           **fields):
    form = {"input": (io.BytesIO(data), name), **fields}
    return client.post(f"/v1/models/{model}/batches{query}", data=form, headers=headers,
                       content_type="multipart/form-data")


def created(client, data=FILES["jsonl"], headers=AUTH_A, **fields) -> str:
    resp = upload(client, data, headers=headers, **fields)
    assert resp.status_code == 202, resp.json
    return resp.json["id"]


def error(resp, status: int) -> str:
    assert resp.status_code == status, resp.get_data(as_text=True)[:500]
    assert resp.is_json and set(resp.json["error"]) == {"code", "message"}
    return resp.json["error"]["code"]


def batch_dirs(batch_dir) -> list[str]:
    return sorted(os.listdir(batch_dir)) if batch_dir.exists() else []


# --- creating a batch ---------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["tar", "tar.gz", "zip", "jsonl"])
def test_a_file_becomes_a_batch_stored_byte_for_byte(client, store, batch_dir, fmt):
    data = FILES[fmt]
    resp = upload(client, data, name="whatever.bin")
    assert resp.status_code == 202, resp.json
    batch = resp.json
    assert resp.headers["Location"] == batch["urls"]["get"]
    assert batch["urls"]["get"].endswith(f"/v1/batches/{batch['id']}")
    assert batch["status"] == VALIDATING and batch["model"] == "shapes" and batch["version"] == 1
    assert batch["input_format"] == fmt
    assert batch["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    record = store.get(batch["id"])
    assert record["tenant"] == "alpha" and record["format"] == fmt
    assert record["input_bytes"] == str(len(data)) and json.loads(record["input"]) == {
        "kind": "image"}
    assert "webhook" not in record and "metadata" not in record and "expires_at" not in record
    with open(Files(str(batch_dir), batch["id"]).input, "rb") as f:
        assert f.read() == data
    assert store.active() == [batch["id"]]


@pytest.mark.parametrize("content_type", ["application/x-tar", "application/octet-stream",
                                          "application/gzip"])
def test_the_file_may_be_the_whole_body_with_options_in_the_query(client, store, batch_dir,
                                                                   content_type):
    data = FILES["tar"]
    resp = client.post("/v1/models/shapes/batches?metadata=%7B%22a%22%3A1%7D", data=data,
                       content_type=content_type, headers=AUTH_A)
    assert resp.status_code == 202, resp.json
    assert resp.json["input_format"] == "tar" and resp.json["metadata"] == {"a": 1}
    with open(Files(str(batch_dir), resp.json["id"]).input, "rb") as f:
        assert f.read() == data


def test_a_jsonl_file_sent_as_a_form_field_rather_than_a_file(client):
    resp = client.post("/v1/models/shapes/batches", data={"input": JSONL.decode()},
                       content_type="multipart/form-data", headers=AUTH_A)
    assert resp.status_code == 202 and resp.json["input_format"] == "jsonl"


def test_a_tensor_models_input_is_kept_on_the_batch(client, repo, store):
    make_repo(repo, "tab", config={"input": {"kind": "tensor", "dtype": "float32", "shape": [3],
                                             "names": ["a", "b", "c"]}})
    batch_id = upload(client, JSONL, model="tab").json["id"]
    assert json.loads(store.get(batch_id)["input"]) == {
        "kind": "tensor", "shape": [3], "dtype": "float32", "names": ["a", "b", "c"]}


@pytest.mark.parametrize("name,data", [
    ("a PNG", png_bytes()),
    ("a text file named .jsonl", b"custom_id,b64\nr1,aGk=\n" * 40),
    ("a short text file", b"hello"),
    ("a PDF named .tar", b"%PDF-1.4\n" + b"\0" * 600),
])
def test_a_file_that_is_not_a_batch_format_is_415_by_content(client, batch_dir, name, data):
    for filename in ("photos.tar", "requests.jsonl", "x.zip"):
        resp = upload(client, data, name=filename)
        assert error(resp, 415) == "unsupported_media_type"
        assert "tar" in resp.json["error"]["message"] and "JSONL" in resp.json["error"]["message"]
    assert batch_dirs(batch_dir) == []


def test_a_body_type_that_carries_no_file_is_415(client):
    resp = client.post("/v1/models/shapes/batches", json={"input": "x"}, headers=AUTH_A)
    assert error(resp, 415) == "unsupported_media_type"


@pytest.mark.parametrize("make", [
    lambda c: upload(c, b""),
    lambda c: c.post("/v1/models/shapes/batches", data=b"", content_type="application/x-tar",
                     headers=AUTH_A),
])
def test_an_empty_file_is_400(client, batch_dir, make):
    assert error(make(client), 400) == "empty_input"
    assert batch_dirs(batch_dir) == []


def test_a_form_without_the_input_field_is_400(client, batch_dir):
    resp = client.post("/v1/models/shapes/batches", content_type="multipart/form-data",
                       data={"file": (io.BytesIO(JSONL), "r.jsonl")}, headers=AUTH_A)
    assert error(resp, 400) == "no_input"
    assert "'input'" in resp.json["error"]["message"]
    two = client.post("/v1/models/shapes/batches", content_type="multipart/form-data",
                      data={"input": [(io.BytesIO(JSONL), "a"), (io.BytesIO(JSONL), "b")]},
                      headers=AUTH_A)
    assert error(two, 400) == "too_many_files"
    assert batch_dirs(batch_dir) == []


@pytest.mark.parametrize("body", [
    b"--xyz\r\nContent-Disposition: form-data; name=\"input\"\r\n\r\n{\"custom_id\"",  # cut short
    b"no boundary anywhere " * 10_000,
    b"--xyz\r\nContent-Disposition: form-data; name=\"input\"\r\nX-Junk: " + b"a" * 200_000,
])
def test_a_broken_multipart_body_is_400(client, batch_dir, body):
    resp = client.post("/v1/models/shapes/batches", data=body, headers=AUTH_A,
                       content_type="multipart/form-data; boundary=xyz")
    assert error(resp, 400) == "invalid_multipart"
    assert batch_dirs(batch_dir) == []


class CountingStream(io.RawIOBase):
    """A body of `size` bytes that counts how much of it the server reads; `on_read` is
    called at its first read."""

    def __init__(self, head: bytes, size: int, on_read=None):
        self.head, self.size, self.read_bytes, self.on_read = head, size, 0, on_read

    def readable(self):
        return True

    def readinto(self, buf):
        if self.on_read is not None:
            self.on_read, on_read = None, self.on_read
            on_read()
        n = min(len(buf), self.size - self.read_bytes)
        chunk = (self.head[self.read_bytes:] + b"\0" * n)[:n]
        buf[:n] = chunk
        self.read_bytes += n
        return n


def post_stream(client, url: str, body, content_type: str, declared=True):
    """POST `body` (read as the server reads it), with its length declared, or not (as a
    chunked upload comes through a server that frames the body itself, as gunicorn does)."""
    environ = EnvironBuilder(path=url, method="POST", headers=AUTH_A,
                             content_type=content_type).get_environ()
    environ["wsgi.input"] = body
    environ.pop("CONTENT_LENGTH", None)
    if declared:
        environ["CONTENT_LENGTH"] = str(body.size)
    else:
        environ["wsgi.input_terminated"] = True
    return client.open(Request(environ))


@pytest.mark.parametrize("declared", [True, False])
def test_a_file_over_the_limit_is_413_and_the_rest_is_not_read(redis_url, repo, batch_dir,
                                                               declared):
    limit = 100_000
    client = make_app(redis_url, repo, batch_dir, batch_max_bytes=limit).test_client()
    body = CountingStream(FILES["tar"], 50 * limit)
    resp = post_stream(client, "/v1/models/shapes/batches", body, "application/x-tar", declared)
    assert error(resp, 413) == "file_too_large"
    assert "INFERQ_BATCH_MAX_BYTES" in resp.json["error"]["message"]
    # A declared length is refused unread; an undeclared one once just past the limit.
    assert body.read_bytes == (0 if declared else limit + 1)
    assert batch_dirs(batch_dir) == []


def test_a_file_of_exactly_the_limit_is_taken(redis_url, repo, batch_dir):
    data = FILES["tar"]
    client = make_app(redis_url, repo, batch_dir, batch_max_bytes=len(data)).test_client()
    assert upload(client, data).status_code == 202
    assert error(upload(client, data + b"\0"), 413) == "file_too_large"


def test_an_unknown_model_is_404_before_the_file_is_read(client, batch_dir):
    body = CountingStream(FILES["tar"], 10_000)
    resp = post_stream(client, "/v1/models/nope/batches", body, "application/x-tar")
    assert error(resp, 404) == "unknown_model"
    assert body.read_bytes == 0 and batch_dirs(batch_dir) == []


def test_past_the_tenants_active_batches_429_and_the_file_is_removed(redis_url, repo, batch_dir,
                                                                      store):
    client = make_app(redis_url, repo, batch_dir, batch_max_active=2).test_client()
    first, second = created(client), created(client)
    resp = upload(client, JSONL)
    assert error(resp, 429) == "too_many_batches" and int(resp.headers["Retry-After"]) > 0
    assert batch_dirs(batch_dir) == sorted([first, second])
    # Another tenant has its own count; an ended batch no longer counts.
    assert upload(client, JSONL, headers=AUTH_B).status_code == 202
    store.set_status(first, COMPLETED)
    assert upload(client, JSONL).status_code == 202


def test_the_limit_holds_for_a_batch_made_while_the_file_arrives(redis_url, repo, batch_dir,
                                                                  store):
    """Another request makes the tenant's last allowed batch while this upload streams: this
    one is refused once its file is in, and the file removed."""
    client = make_app(redis_url, repo, batch_dir, batch_max_active=1).test_client()
    other = new_batch_id()
    body = CountingStream(JSONL, len(JSONL), on_read=lambda: store.create(
        other, "alpha", 1, {"model": "shapes", "version": "1"}))
    resp = post_stream(client, "/v1/models/shapes/batches", body, "application/jsonl")
    assert error(resp, 429) == "too_many_batches"
    assert body.read_bytes == len(JSONL) and batch_dirs(batch_dir) == []
    assert [b["id"] for b in client.get("/v1/batches", headers=AUTH_A).json["data"]] == [other]


def test_creating_batches_counts_against_the_submit_rate_limit(redis_url, repo, batch_dir):
    client = make_app(redis_url, repo, batch_dir, rate_limit_submit="2/minute").test_client()
    assert [upload(client, JSONL).status_code for _ in range(2)] == [202, 202]
    limited = upload(client, JSONL)
    assert error(limited, 429) == "rate_limited" and int(limited.headers["Retry-After"]) > 0
    assert len(batch_dirs(batch_dir)) == 2
    assert client.get("/v1/batches", headers=AUTH_A).status_code == 200


# --- options ------------------------------------------------------------------------------------

def test_options_are_kept_on_the_batch(redis_url, repo, batch_dir, store):
    client = make_app(redis_url, repo, batch_dir, webhook_secret=SECRET,
                      webhook_allow_networks="127.0.0.0/8").test_client()
    before = time.time()
    resp = upload(client, JSONL, webhook="http://127.0.0.1:9/hook",
                  webhook_events_filter=["completed,batch.failed", "expired"],
                  metadata=json.dumps({"project": "p", "n": [1, 2]}), expires_after_s="3600")
    assert resp.status_code == 202, resp.json
    batch = resp.json
    assert batch["metadata"] == {"project": "p", "n": [1, 2]}
    record = store.get(batch["id"])
    assert record["webhook"] == "http://127.0.0.1:9/hook"
    assert record["webhook_events"] == "batch.completed,batch.failed,batch.expired"
    assert before + 3600 <= float(record["expires_at"]) <= time.time() + 3600
    assert batch["expires_at"] is not None
    every = upload(client, JSONL, webhook="http://127.0.0.1:9/hook").json["id"]
    assert store.get(every)["webhook_events"] == ("batch.completed,batch.failed,"
                                                  "batch.cancelled,batch.expired")
    query = upload(client, JSONL, query="?webhook=http://127.0.0.1:9/q&webhook_events_filter="
                   "cancelled").json["id"]
    assert store.get(query)["webhook_events"] == "batch.cancelled"


def test_the_version_is_pinned_or_the_default_or_the_highest(client, repo, r, store):
    make_repo(repo, version=2)
    assert upload(client, JSONL).json["version"] == 2  # no default yet: the highest
    routing.set_default(r, "shapes", 1)
    assert upload(client, JSONL).json["version"] == 1
    pinned = upload(client, JSONL, version="2").json
    assert pinned["version"] == 2 and store.get(pinned["id"])["version"] == "2"


@pytest.mark.parametrize("fields,code,says", [
    ({"version": "7"}, "unknown_version", "no version 7"),
    ({"version": "one"}, "invalid_version", "version must be"),
    ({"version": ["1", "2"]}, "invalid_version", "given 2 times"),
    ({"metadata": "[1, 2]"}, "invalid_metadata", "JSON object"),
    ({"metadata": "{nope"}, "invalid_metadata", "not valid JSON"),
    ({"metadata": json.dumps({"k": "x" * 17_000})}, "invalid_metadata", "16384 bytes"),
    ({"metadata": "[" * 100 + "]" * 100}, "invalid_metadata", "deeper"),
    ({"expires_after_s": "0"}, "invalid_expires_after", "greater than 0"),
    ({"expires_after_s": "-5"}, "invalid_expires_after", "greater than 0"),
    ({"expires_after_s": "soon"}, "invalid_expires_after", "number of seconds"),
    ({"expires_after_s": "inf"}, "invalid_expires_after", "number of seconds"),
    ({"expires_after_s": "1e300"}, "invalid_expires_after", "at most"),
    ({"webhook": "http://127.0.0.1:9/hook"}, "webhooks_disabled", "INFERQ_WEBHOOK_SECRET"),
    ({"webhook_events_filter": "completed"}, "invalid_webhook", "needs a webhook"),
])
def test_bad_options_are_400_that_say_what_is_wrong(client, batch_dir, fields, code, says):
    resp = upload(client, JSONL, **fields)
    assert error(resp, 400) == code
    assert says in resp.json["error"]["message"]
    assert batch_dirs(batch_dir) == []


@pytest.mark.parametrize("fields,says", [
    ({"webhook": "http://10.0.0.1/hook"}, "webhook refused"),
    ({"webhook": "ftp://example.com/hook"}, "webhook refused"),
    ({"webhook": "http://127.0.0.1:9/h", "webhook_events_filter": "started"}, "'started'"),
    ({"webhook": "http://127.0.0.1:9/h", "webhook_events_filter": ","}, "is empty"),
])
def test_bad_webhooks_are_400(redis_url, repo, batch_dir, fields, says):
    client = make_app(redis_url, repo, batch_dir, webhook_secret=SECRET).test_client()
    resp = upload(client, JSONL, **fields)
    assert error(resp, 400) == "invalid_webhook"
    assert says in resp.json["error"]["message"]


def test_a_raw_bodys_bad_options_are_refused_before_it_is_read(client, batch_dir):
    body = CountingStream(JSONL, 10_000)
    resp = post_stream(client, "/v1/models/shapes/batches?version=9", body, "application/jsonl")
    assert error(resp, 400) == "unknown_version"
    assert body.read_bytes == 0 and batch_dirs(batch_dir) == []
    body = CountingStream(b"--b\r\n", 10_000)
    resp = post_stream(client, "/v1/models/shapes/batches?expires_after_s=never", body,
                       "multipart/form-data; boundary=b")
    assert error(resp, 400) == "invalid_expires_after"
    assert body.read_bytes == 0 and batch_dirs(batch_dir) == []


# --- tenants and ids ----------------------------------------------------------------------------

def every_endpoint(client, batch_id, headers):
    return {
        "get": client.get(f"/v1/batches/{batch_id}", headers=headers),
        "wait": client.get(f"/v1/batches/{batch_id}?wait=1", headers=headers),
        "cancel": client.post(f"/v1/batches/{batch_id}/cancel", headers=headers),
        "delete": client.delete(f"/v1/batches/{batch_id}", headers=headers),
        "results": client.get(f"/v1/batches/{batch_id}/results", headers=headers),
        "errors": client.get(f"/v1/batches/{batch_id}/errors", headers=headers),
    }


@pytest.mark.parametrize("batch_id", ["batch_" + "A" * 22, "not-a-batch", "batch_x",
                                      "0123456789abcdefghij", "batch_" + "é" * 20])
def test_an_unknown_or_malformed_batch_id_is_404_on_every_endpoint(client, batch_id):
    for name, resp in every_endpoint(client, batch_id, AUTH_A).items():
        assert error(resp, 404) == "unknown_batch", name


def test_another_tenants_batch_is_404_on_every_endpoint(client, store, batch_dir):
    batch_id = created(client)
    store.set_status(batch_id, COMPLETED, results_bytes="0")
    for name, resp in every_endpoint(client, batch_id, AUTH_B).items():
        assert error(resp, 404) == "unknown_batch", name
    assert store.get(batch_id)["status"] == COMPLETED and batch_dirs(batch_dir) == [batch_id]
    assert client.get("/v1/batches", headers=AUTH_B).json["data"] == []
    assert client.get(f"/v1/batches/{batch_id}", headers=AUTH_A).status_code == 200


def test_without_a_key_batches_are_401(client):
    assert error(client.get("/v1/batches"), 401) == "unauthorized"
    assert error(upload(client, JSONL, headers={}), 401) == "unauthorized"


# --- listing ------------------------------------------------------------------------------------

def test_the_list_is_newest_first_and_pages_with_after(redis_url, repo, batch_dir, store):
    client = make_app(redis_url, repo, batch_dir, batch_max_active=10).test_client()
    ids = [created(client) for _ in range(5)]
    created(client, headers=AUTH_B)
    page = client.get("/v1/batches", headers=AUTH_A).json
    assert [b["id"] for b in page["data"]] == ids[::-1]
    assert page["object"] == "list" and page["has_more"] is False
    assert (page["first_id"], page["last_id"]) == (ids[-1], ids[0])
    seen, after = [], None
    while True:
        query = "?limit=2" + (f"&after={after}" if after else "")
        page = client.get(f"/v1/batches{query}", headers=AUTH_A).json
        assert len(page["data"]) <= 2
        seen += [b["id"] for b in page["data"]]
        after = page["last_id"]
        if not page["has_more"]:
            break
    assert seen == ids[::-1]
    assert client.get("/v1/batches?after=", headers=AUTH_A).json["first_id"] == ids[-1]


@pytest.mark.parametrize("query,code", [("?limit=0", "invalid_limit"),
                                        ("?limit=101", "invalid_limit"),
                                        ("?limit=ten", "invalid_limit"),
                                        ("?after=nope", "invalid_after"),
                                        ("?after=batch_" + "Z" * 22, "invalid_after")])
def test_bad_list_parameters_are_400(client, query, code):
    created(client)
    assert error(client.get(f"/v1/batches{query}", headers=AUTH_A), 400) == code


def test_an_empty_list(client):
    page = client.get("/v1/batches", headers=AUTH_A).json
    assert page == {"object": "list", "data": [], "first_id": None, "last_id": None,
                    "has_more": False}


# --- cancel and delete --------------------------------------------------------------------------

def test_cancel_answers_cancelling_and_an_ended_batch_keeps_its_status(client, store):
    batch_id = created(client)
    resp = client.post(f"/v1/batches/{batch_id}/cancel", headers=AUTH_A)
    assert resp.status_code == 200 and resp.json["status"] == CANCELLING
    assert resp.json["cancelling_at"] is not None
    assert store.get(batch_id)["status"] == CANCELLING
    store.set_status(batch_id, CANCELLED)
    again = client.post(f"/v1/batches/{batch_id}/cancel", headers=AUTH_A)
    assert again.status_code == 200 and again.json["status"] == CANCELLED


def test_a_running_batch_is_not_deleted_an_ended_one_is_with_its_files(client, store, r,
                                                                       batch_dir):
    batch_id = created(client)
    store.set_status(batch_id, IN_PROGRESS, total="3")
    resp = client.delete(f"/v1/batches/{batch_id}", headers=AUTH_A)
    assert error(resp, 409) == "batch_running"
    assert "cancel it first" in resp.json["error"]["message"]
    assert batch_dirs(batch_dir) == [batch_id]
    store.set_status(batch_id, COMPLETED)
    resp = client.delete(f"/v1/batches/{batch_id}", headers=AUTH_A)
    assert resp.status_code == 204 and resp.get_data() == b""
    assert batch_dirs(batch_dir) == [] and store.get(batch_id) is None
    assert r.zscore(keys.tenant_batches("alpha"), batch_id) is None
    assert error(client.get(f"/v1/batches/{batch_id}", headers=AUTH_A), 404) == "unknown_batch"


# --- results and errors -------------------------------------------------------------------------

def test_the_files_are_streamed_up_to_their_committed_size(client, store, batch_dir):
    batch_id = created(client)
    files = Files(str(batch_dir), batch_id)
    for which in ("results", "errors"):  # nothing written yet: empty
        resp = client.get(f"/v1/batches/{batch_id}/{which}", headers=AUTH_A)
        assert resp.status_code == 200 and resp.get_data() == b""
        assert resp.mimetype == "application/x-ndjson"
    good = b"".join(json.dumps({"custom_id": f"r{i}", "index": i, "outputs": [],
                                "model_version": 1}).encode() + b"\n" for i in range(2000))
    bad = json.dumps({"custom_id": "r9", "index": 9, "error": {
        "code": "invalid_image", "message": "m"}}).encode() + b"\n"
    # The feeder has written a line past what it committed: not shown yet.
    with open(files.results, "wb") as f:
        f.write(good + b'{"custom_id": "half')
    with open(files.errors, "wb") as f:
        f.write(bad)
    store.set_status(batch_id, IN_PROGRESS, total="2001", results_bytes=str(len(good)))
    results = client.get(f"/v1/batches/{batch_id}/results", headers=AUTH_A)
    assert results.status_code == 200 and results.get_data() == good
    assert int(results.headers["Content-Length"]) == len(good)
    assert client.get(f"/v1/batches/{batch_id}/errors", headers=AUTH_A).get_data() == b""
    store.set_status(batch_id, COMPLETED, errors_bytes=str(len(bad)))
    assert client.get(f"/v1/batches/{batch_id}/errors", headers=AUTH_A).get_data() == bad
    lines = client.get(f"/v1/batches/{batch_id}/results", headers=AUTH_A).get_data().splitlines()
    assert [json.loads(line)["index"] for line in lines] == list(range(2000))


def test_a_committed_size_without_its_file_is_an_empty_body(client, store, batch_dir):
    batch_id = created(client)
    store.set_status(batch_id, IN_PROGRESS, results_bytes="500")
    resp = client.get(f"/v1/batches/{batch_id}/results", headers=AUTH_A)
    assert resp.status_code == 200 and resp.get_data() == b""


# --- long-poll ----------------------------------------------------------------------------------

def test_wait_returns_when_the_status_changes(client, store):
    batch_id = created(client)

    def reads() -> int:
        return store.redis.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0)

    before = reads()

    def move():
        # Once the request has read the batch (its status then is what it waits to change).
        wait_for(lambda: reads() > before, 5, "the request to read the batch", interval_s=0.01)
        store.set_status(batch_id, IN_PROGRESS, total="3")

    threading.Thread(target=move, daemon=True).start()
    start = time.monotonic()
    resp = client.get(f"/v1/batches/{batch_id}?wait=5", headers=AUTH_A)
    took = time.monotonic() - start
    assert resp.status_code == 200 and resp.json["status"] == IN_PROGRESS
    assert took < 3
    progress = resp.json["progress"]
    assert progress == {"inputs_per_s": 0.0, "eta_s": None}


def test_wait_returns_at_the_timeout_when_nothing_changes(client, store):
    batch_id = created(client)
    start = time.monotonic()
    resp = client.get(f"/v1/batches/{batch_id}?wait=0.6", headers=AUTH_A)
    took = time.monotonic() - start
    assert resp.status_code == 200 and resp.json["status"] == VALIDATING
    assert 0.55 <= took < 3
    # An ended batch's status changes no more: it answers at once.
    store.set_status(batch_id, COMPLETED)
    start = time.monotonic()
    assert client.get(f"/v1/batches/{batch_id}?wait=30", headers=AUTH_A).json["status"] == \
        COMPLETED
    assert time.monotonic() - start < 1


def test_wait_is_capped_by_the_long_poll_limit(redis_url, repo, batch_dir):
    client = make_app(redis_url, repo, batch_dir, max_long_poll_s=0.3).test_client()
    batch_id = created(client)
    start = time.monotonic()
    resp = client.get(f"/v1/batches/{batch_id}?wait=30", headers=AUTH_A)
    assert resp.json["status"] == VALIDATING and 0.25 <= time.monotonic() - start < 3


@pytest.mark.parametrize("wait", ["soon", "-1", "nan"])
def test_a_bad_wait_is_400(client, wait):
    batch_id = created(client)
    assert error(client.get(f"/v1/batches/{batch_id}?wait={wait}", headers=AUTH_A),
                 400) == "invalid_wait"


def test_progress_shows_the_rate_and_eta_while_in_progress(client, store, r):
    batch_id = created(client)
    store.set_status(batch_id, IN_PROGRESS, total="100")
    r.hset(keys.batch(batch_id), mapping={"in_progress_at": repr(time.time() - 10),
                                          "completed": "18", "failed": "2"})
    batch = client.get(f"/v1/batches/{batch_id}", headers=AUTH_A).json
    assert batch["request_counts"] == {"total": 100, "completed": 18, "failed": 2}
    assert 1.5 < batch["progress"]["inputs_per_s"] < 2.5
    assert 30 < batch["progress"]["eta_s"] < 50


# --- the store and Redis failing ----------------------------------------------------------------

def test_a_full_batch_store_is_a_507_and_leaves_nothing(redis_url, repo, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        client = make_app(redis_url, repo, mount).test_client()
        resp = upload(client, tar_bytes({"big.png": os.urandom(256 * 1024)}))
        assert error(resp, 507) == "insufficient_storage"
        assert resp.json["error"]["message"] == (
            f"the batch store {mount} (INFERQ_BATCH_DIR) has no space left: free some space "
            "there, or give it a larger volume")
        assert os.listdir(mount) == []
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_with_redis_down_a_batch_is_503_with_retry_after(repo, batch_dir):
    from stack.processes import free_port
    client = make_app(f"redis://127.0.0.1:{free_port()}/0", repo, batch_dir).test_client()
    for resp in (upload(client, JSONL), client.get("/v1/batches", headers=AUTH_A),
                 client.get("/v1/batches/batch_" + "A" * 22, headers=AUTH_A)):
        assert error(resp, 503) == "redis_unavailable" and resp.headers["Retry-After"]
    assert batch_dirs(batch_dir) == []


# --- a real API process: memory while a large file arrives --------------------------------------

MB = 1024 * 1024


def generated_tar(total_bytes: int, member_bytes: int = MB):
    """A tar of `total_bytes` of members, produced a member at a time (never whole)."""
    block = os.urandom(member_bytes)
    for i in range(total_bytes // member_bytes):
        info = tarfile.TarInfo(f"photos/{i:06d}.png")
        info.size = member_bytes
        yield info.tobuf(format=tarfile.USTAR_FORMAT)
        yield block
    yield b"\0" * 1024


class MultipartBody:
    """A multipart body around a generated file, read by requests a piece at a time; its
    length is known, so it goes with a Content-Length, as curl -F sends it."""

    def __init__(self, parts, length: int, boundary="inferq-test-boundary"):
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"input\"; "
                f"filename=\"photos.tar\"\r\nContent-Type: application/x-tar\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        self.content_type = f"multipart/form-data; boundary={boundary}"
        self.len = len(head) + length + len(tail)
        self._pieces = iter([head, *parts, tail])
        self._piece, self._at = memoryview(b""), 0

    def read(self, n=-1):
        """Up to `n` bytes of the current piece (fewer is fine for a reader)."""
        while self._at >= len(self._piece):
            piece = next(self._pieces, None)
            if piece is None:
                return b""
            self._piece, self._at = memoryview(piece), 0
        end = len(self._piece) if n is None or n < 0 else self._at + n
        out = self._piece[self._at:end]
        self._at += len(out)
        return bytes(out)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_the_api_memory_stays_flat_while_a_large_file_arrives(tmp_path):
    size = 300 * MB
    repo = make_repo(tmp_path / "models")
    redis = RedisServer()
    api = None
    try:
        api, base = start_api(redis.url, model_repository=repo, batch_dir=tmp_path / "batches",
                              api_keys=f"{KEY_A}=alpha")
        workers = wait_for(lambda: children(api.pid), 10, "the API's workers")
        peak, done = {}, threading.Event()

        def watch():
            while not done.is_set():
                for pid in workers:
                    try:
                        peak[pid] = max(peak.get(pid, 0), rss_mb(pid))
                    except OSError:
                        pass
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        tar_length = (size // MB) * (MB + 512) + 1024
        body = MultipartBody(generated_tar(size), tar_length)
        resp = requests.post(f"{base}/v1/models/shapes/batches", data=body, timeout=300,
                             headers={**AUTH_A, "Content-Type": body.content_type,
                                      "Content-Length": str(body.len)})
        done.set()
        watcher.join()
        assert resp.status_code == 202, resp.text
        batch = resp.json()
        assert batch["input_format"] == "tar"
        stored = Files(str(tmp_path / "batches"), batch["id"]).input
        assert os.path.getsize(stored) == tar_length
        assert peak and max(peak.values()) < 150, peak
    finally:
        if api is not None:
            api.stop()
        redis.stop()
