"""Bulk batches end to end: a real Redis, the API, a worker serving the demo model `shapes`, the
feeder and the webhook worker. A file of inputs in, a results file and an errors file out."""
import io
import json
import random
import threading

import pytest
import requests
from PIL import Image

from demo.shapes import random_examples
from jobs import keys
from stack.processes import wait_for
from tests.batch_tools import each_once, lines, shape_jsonl, shape_tar, submit, wait_final
from tests.receiver import Receiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WINDOW = 64
MAX_BYTES = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture(scope="module")
def stack(module_stack_factory):
    return module_stack_factory(models=["shapes"], webhooks=True, feeder=True,
                                webhook_secret=SECRET, webhook_allow_networks="127.0.0.1/32",
                                batch_window=WINDOW, batch_max_bytes=MAX_BYTES)


def top1(line) -> str:
    return line["outputs"][0]["label"]


def test_a_tar_of_500_shapes_is_classified_each_once_with_its_webhook(stack, receiver):
    data, labels = shape_tar(500, seed=20261204)
    resp = submit(stack.base, data, name="photos.tar", webhook=receiver.url("/batch"),
                  metadata=json.dumps({"run": "nightly"}))
    assert resp.status_code == 202, resp.text
    batch = resp.json()
    assert resp.headers["Location"].endswith(f"/v1/batches/{batch['id']}")
    assert batch["status"] == "validating" and batch["metadata"] == {"run": "nightly"}
    final = wait_final(stack.base, batch["id"])
    assert final["status"] == "completed", final
    assert final["request_counts"] == {"total": 500, "completed": 500, "failed": 0}
    ok, bad = each_once(stack.base, batch["id"], labels)
    assert bad == []
    assert all(x["model_version"] == 1 for x in ok)
    correct = sum(top1(x) == labels[x["custom_id"]] for x in ok)
    assert correct / 500 >= 0.95, correct
    # Its webhook: batch.completed, with the batch as it ended.
    wait_for(lambda: receiver.to("/batch"), 30, "the batch.completed webhook")
    (hook,) = receiver.to("/batch")
    body = json.loads(hook["body"])
    assert body["type"] == "batch.completed"
    assert body["data"]["id"] == batch["id"]
    assert body["data"]["request_counts"]["completed"] == 500


def test_jsonl_with_bad_lines_names_exactly_them_in_the_errors_file(stack):
    bad = ["{this is not json", json.dumps({"b64": "AAAA"}),
           json.dumps({"custom_id": "bad-b64", "b64": "%%%"}),
           json.dumps({"custom_id": "not-image", "b64": "aGVsbG8gd29ybGQ="}),
           json.dumps({"custom_id": "no-b64", "inputs": [1, 2, 3]})]
    data, labels = shape_jsonl(500, seed=7, bad=bad)
    resp = submit(stack.base, data, name="requests.jsonl")
    assert resp.status_code == 202, resp.text
    final = wait_final(stack.base, resp.json()["id"])
    assert final["status"] == "completed"
    assert final["request_counts"] == {"total": 505, "completed": 500, "failed": 5}
    ok, errors = each_once(stack.base, final["id"],
                           [*labels, "line-501", "line-502", "bad-b64", "not-image", "no-b64"])
    assert {x["custom_id"]: x["error"]["code"] for x in errors} == {
        "line-501": "invalid_json", "line-502": "invalid_custom_id", "bad-b64": "invalid_base64",
        "not-image": "unsupported_format", "no-b64": "invalid_input"}
    assert sum(top1(x) == labels[x["custom_id"]] for x in ok) / 500 >= 0.95


def test_cancel_half_way_keeps_what_finished_and_the_workers_go_idle(stack):
    data, labels = shape_tar(2000, seed=11)
    batch = submit(stack.base, data).json()
    url = f"{stack.base}/v1/batches/{batch['id']}"
    wait_for(lambda: requests.get(url, timeout=10).json()["request_counts"]["completed"] >= 300,
             120, "a tenth of the batch to finish")
    resp = requests.post(url + "/cancel", timeout=10)
    assert resp.status_code == 200 and resp.json()["status"] in ("cancelling", "cancelled")
    final = wait_final(stack.base, batch["id"])
    assert final["status"] == "cancelled"
    done = final["request_counts"]["completed"] + final["request_counts"]["failed"]
    assert 300 <= done < 2000
    ok, bad = lines(stack.base, batch["id"], "results"), lines(stack.base, batch["id"], "errors")
    assert len(ok) + len(bad) == done and len({x["custom_id"] for x in ok + bad}) == done
    bulk = keys.bulk_stream("shapes", 1)
    wait_for(lambda: stack.client.xlen(bulk) == 0, 60, "the bulk lane to empty")
    assert not list(stack.client.scan_iter(keys.batch_input(batch["id"], "*")))


def test_a_job_submitted_during_a_batch_finishes_while_the_batch_runs(stack):
    data, _ = shape_tar(2000, seed=12)
    batch = submit(stack.base, data).json()
    url = f"{stack.base}/v1/batches/{batch['id']}"
    wait_for(lambda: requests.get(url, timeout=10).json()["request_counts"]["completed"] >= 100,
             120, "the batch to be well under way")
    _, image = random_examples(1, seed=5)[0]
    job = requests.post(f"{stack.base}/v1/models/shapes/jobs", files={"image": ("a.png", image)},
                        headers={"Prefer": "wait=30"}, timeout=60).json()
    assert job["status"] == "succeeded"
    during = requests.get(url, timeout=10).json()
    assert during["status"] == "in_progress", during
    assert during["request_counts"]["completed"] < 2000
    assert wait_final(stack.base, batch["id"])["status"] == "completed"


def test_redis_holds_a_window_of_a_5000_input_batch_not_the_batch(stack):
    def noise(i: int) -> bytes:  # ~3 KB each, incompressible: the file dwarfs the window
        out = io.BytesIO()
        Image.frombytes("RGB", (32, 32), random.Random(i).randbytes(32 * 32 * 3)).save(out, "PNG")
        return out.getvalue()

    members = [(f"n/{i}.png", noise(i)) for i in range(5000)]
    data, _ = shape_tar(0, seed=0, extra=members)
    biggest = max(len(m[1]) for m in members)
    base_memory = stack.client.info("memory")["used_memory"]
    peak = [0]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], stack.client.info("memory")["used_memory"])
            stop.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        batch = submit(stack.base, data).json()
        final = wait_final(stack.base, batch["id"], timeout_s=600)
    finally:
        stop.set()
        watcher.join()
    assert final["status"] == "completed" and final["request_counts"]["completed"] == 5000
    # The window's inputs (and their result lines), with room for Redis's own overheads.
    bound = WINDOW * biggest * 2 + 2 * 1024 * 1024
    print(f"\nfile {len(data) / 2**20:.1f} MiB; redis grew {(peak[0] - base_memory) / 2**20:.2f} "
          f"MiB at most (bound {bound / 2**20:.2f} MiB)")
    assert peak[0] - base_memory < bound
    assert len(data) > 4 * bound  # the bound says something: the file would not fit in it


@pytest.mark.parametrize("name,data,status,code", [
    ("photo.tar", b"\x89PNG\r\n\x1a\n" + b"\0" * 2000, 415, "unsupported_media_type"),
    ("notes.jsonl", b"plain text, not json lines\n" * 40, 415, "unsupported_media_type"),
    ("empty.tar", b"", 400, "empty_input"),
    ("huge.tar", b"\0" * (MAX_BYTES + 1024 * 1024), 413, None),
])
def test_a_file_that_is_not_a_batch_is_refused_at_upload(stack, name, data, status, code):
    resp = submit(stack.base, data, name=name)
    assert resp.status_code == status, resp.text
    if code:
        assert resp.json()["error"]["code"] == code


def test_bad_members_fail_alone_and_a_bad_file_fails_whole(stack):
    _, good = random_examples(1, seed=3)[0]
    huge = Image.new("L", (6000, 6000))
    out = io.BytesIO()
    huge.save(out, "PNG")
    extra = [("../../etc/passwd", b"root:x:0:0"), ("/abs/cut.png", good[:40]),
             ("bomb.png", out.getvalue())]
    data, labels = shape_tar(20, seed=4, extra=extra)
    final = wait_final(stack.base, submit(stack.base, data).json()["id"])
    assert final["status"] == "completed"
    _, bad = each_once(stack.base, final["id"], [*labels, *(n for n, _ in extra)])
    assert {x["custom_id"]: x["error"]["code"] for x in bad} == {
        "../../etc/passwd": "unsupported_format", "/abs/cut.png": "invalid_image",
        "bomb.png": "too_many_pixels"}
    # Duplicate custom_ids: the whole file fails, naming the lines, and nothing runs.
    twice = b"".join(json.dumps({"custom_id": c, "b64": "AAAA"}).encode() + b"\n"
                     for c in ("a", "b", "a"))
    failed = wait_final(stack.base, submit(stack.base, twice).json()["id"])
    assert failed["status"] == "failed"
    assert [(e["code"], e["line"]) for e in failed["errors"]] == [("duplicate_custom_id", 3)]
    assert lines(stack.base, failed["id"], "results") == []
    # The stack keeps serving.
    job = requests.post(f"{stack.base}/v1/models/shapes/jobs", files={"image": ("g.png", good)},
                        headers={"Prefer": "wait=30"}, timeout=60).json()
    assert job["status"] == "succeeded"
