"""End to end: a real redis-server, the API under gunicorn, a Celery worker serving the demo model."""
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from demo.shapes import random_examples
from jobs.producer import Producer
from stack.processes import ROOT, children, model_processes
from tests.test_metrics import parse

EXAMPLES = ROOT / "examples"


def submit(base, files, model="shapes"):
    resp = requests.post(f"{base}/v1/models/{model}/jobs",
                         files=[("image", (name, data)) for name, data in files], timeout=30)
    assert resp.status_code == 202, resp.text
    return resp.json()


def wait_job(job, wait_s=30):
    resp = requests.get(job["urls"]["get"], params={"wait": wait_s}, timeout=wait_s + 10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def metrics(stack) -> dict:
    resp = requests.get(stack.base + "/metrics", timeout=5)
    assert resp.status_code == 200
    return parse(resp.text)


def test_ready_and_models_show_the_live_worker(stack):
    ready = requests.get(stack.base + "/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["models"] == ["shapes"]
    model = requests.get(stack.base + "/v1/models/shapes", timeout=5).json()
    assert model["state"] == "available" and model["workers"] == 1
    assert model["default_version"] == 1
    assert [(v["version"], v["state"]) for v in model["versions"]] == [(1, "available")]
    assert model["labels"] == ["circle", "square", "triangle"]


def test_200_concurrent_images_are_classified_in_micro_batches(stack):
    examples = random_examples(200, seed=20261122)

    def one(i_label_data):
        i, (label, data) = i_label_data
        ext = "jpg" if data[:2] == b"\xff\xd8" else "png"
        job = submit(stack.base, [(f"{i}.{ext}", data)])
        return label, wait_job(job)

    before = metrics(stack)
    started = time.monotonic()
    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(one, enumerate(examples)))
    elapsed = time.monotonic() - started
    after = metrics(stack)
    assert [job["status"] for _, job in results] == ["succeeded"] * 200
    correct = sum(job["outputs"][0]["top_k"][0]["label"] == label for label, job in results)
    batch_sizes = [job["metrics"]["batch_size"] for _, job in results]
    print(f"\n200 jobs over HTTP in {elapsed:.1f} s ({200 / elapsed:.0f} jobs/s); top-1 accuracy "
          f"{correct / 200:.1%}; batch sizes: max {max(batch_sizes)}, "
          f"mean {sum(batch_sizes) / 200:.1f}")
    assert correct / 200 >= 0.95
    assert max(batch_sizes) > 1
    # What GET /metrics counted, as the worker ran them.
    v1 = (("model", "shapes"), ("version", "1"))
    grew = {key: after.get(key, 0) - before.get(key, 0) for key in after}
    assert grew[("inferq_inputs_total", v1 + (("outcome", "succeeded"),))] == 200
    assert grew[("inferq_batched_inputs_total", v1)] == 200
    assert 200 / max(batch_sizes) <= grew[("inferq_batches_total", v1)] < 200
    assert grew[("inferq_jobs_finished_total", (("model", "shapes"), ("status", "succeeded")))] \
        == 200
    for _, job in results:
        top = job["outputs"][0]["top_k"]
        assert [t["label"] for t in top] and sorted(t["index"] for t in top) == [0, 1, 2]
        assert abs(sum(t["score"] for t in top) - 1) < 1e-3
        assert job["created_at"] <= job["started_at"] <= job["completed_at"]
        assert job["metrics"]["queue_ms"] >= 0 and job["metrics"]["predict_ms"] > 0
        assert job["version"] == "1"


def test_a_job_with_several_images_keeps_their_order(stack):
    names = ["circle.png", "square.png", "triangle.png", "triangle.jpg"]
    job = wait_job(submit(stack.base, [(n, (EXAMPLES / n).read_bytes()) for n in names]))
    assert job["status"] == "succeeded"
    assert [o["top_k"][0]["label"] for o in job["outputs"]] == [
        "circle", "square", "triangle", "triangle"]
    assert [o["index"] for o in job["outputs"]] == [0, 1, 2, 3]


def test_json_base64_submit_and_long_poll(stack):
    import base64
    data = base64.b64encode((EXAMPLES / "square.png").read_bytes()).decode()
    resp = requests.post(stack.base + "/v1/models/shapes/jobs",
                         json={"images": [{"b64": data}]}, timeout=10)
    assert resp.status_code == 202
    started = time.monotonic()
    job = wait_job(resp.json(), wait_s=30)
    # The wait ends because the job finished, not because 30 s ran out.
    assert job["status"] == "succeeded" and time.monotonic() - started < 30
    assert job["outputs"][0]["top_k"][0]["label"] == "square"


def test_an_undecodable_input_fails_only_its_own_job(stack):
    # Bypass the API's checks, as a bug or another producer might, to reach the worker's guard.
    store = Producer(stack.client, 600, 10000, 60)
    bad, _ = store.enqueue("shapes", [b"\x89PNG\r\n\x1a\n not really a png"])
    assert bad["version"] == "1"
    good = submit(stack.base, [("c.png", (EXAMPLES / "circle.png").read_bytes())])
    bad_record = store.wait(bad["id"], 30)
    assert bad_record["status"] == "failed" and "cannot decode image" in bad_record["error"]
    assert wait_job(good)["status"] == "succeeded"
    assert stack.worker.alive()


def test_requests_gunicorn_refuses_get_json_errors_too(stack):
    """Requests that never reach the app (gunicorn's limits, an unparsable request line)."""
    base = stack.base
    long_url = requests.get(f"{base}/v1/jobs/{'x' * 5000}", timeout=5)
    many_headers = requests.get(f"{base}/healthz", timeout=5,
                                headers={f"X-Filler-{i}": "1" for i in range(120)})
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"NOT AN HTTP REQUEST\r\n\r\n")
        raw = b""
        while chunk := sock.recv(4096):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *headers = head.decode().split("\r\n")
    assert [(r.status_code, r.headers["Content-Type"], r.json()["error"]["code"])
            for r in (long_url, many_headers)] == [
        (414, "application/json", "uri_too_long"),
        (431, "application/json", "request_header_fields_too_large")]
    assert status_line.startswith("HTTP/1.1 400 ") and "Content-Type: application/json" in headers
    error = json.loads(body)["error"]
    assert error["code"] == "bad_request" and "NOT AN HTTP REQUEST" in error["message"]


def test_api_processes_never_load_tensorflow(stack):
    """After serving all of the above, no API process has TensorFlow mapped in memory."""
    api_pids = [stack.api.pid] + children(stack.api.pid)
    assert len(api_pids) >= 2  # the gunicorn master and its workers
    for pid in api_pids:
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "tensorflow" not in maps and "libtf" not in maps, f"API process {pid}"
    # The check above does see TensorFlow where it is: in the worker's model process.
    model_pids = model_processes(stack.worker.pid)
    assert any("tensorflow" in Path(f"/proc/{pid}/maps").read_text() for pid in model_pids)
    # The worker's own process (the supervisor beside Celery) does not load it either.
    assert "tensorflow" not in Path(f"/proc/{stack.worker.pid}/maps").read_text()


def test_api_module_imports_no_tensorflow_after_serving_requests(stack):
    code = f"""
import sys
from api.app import create_app
client = create_app({{"redis_url": {stack.url!r}}}).test_client()
with open({str(EXAMPLES / 'circle.png')!r}, 'rb') as f:
    resp = client.post('/v1/models/shapes/jobs', data={{'image': (f, 'c.png')}})
assert resp.status_code == 202, resp.get_data()
job = client.get('/v1/jobs/' + resp.get_json()['id'] + '?wait=30').get_json()
assert job['status'] == 'succeeded', job
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'celery'))
print(heavy)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
