"""The standard protocols against a live inferq: TF Serving REST and KServe V2 (with Triton's
own client). Their requests go through the same queue and batches as asynchronous jobs."""
import base64
import shutil

import numpy as np
import pytest
import requests
import tritonclient.http as triton

from demo.games import games_rule
from jobs import keys
from stack.processes import ROOT

EXAMPLES = ["circle.png", "square.png", "triangle.png", "triangle.jpg"]
LABELS = ["circle", "square", "triangle", "triangle"]


@pytest.fixture(scope="module")
def stack(module_stack_factory, tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    for name in ("shapes", "games"):
        shutil.copytree(ROOT / "models" / name, repo / name)
    shutil.copytree(ROOT / "models" / "games", repo / "idle")  # no worker serves this one
    return module_stack_factory(models=["shapes", "games"], repository=repo)


def host(stack) -> str:
    return stack.base.removeprefix("http://")


def images() -> list[bytes]:
    return [(ROOT / "examples" / name).read_bytes() for name in EXAMPLES]


def rows(n=12, seed=3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, size=(n, 10)).astype(np.float32)


def async_outputs(stack, model, **request) -> list:
    """What the asynchronous API answers for the same inputs."""
    resp = requests.post(f"{stack.base}/v1/models/{model}/jobs", timeout=10, **request)
    assert resp.status_code == 202, resp.text
    job = requests.get(resp.json()["urls"]["get"], params={"wait": 30}, timeout=40).json()
    assert job["status"] == "succeeded"
    return job["outputs"]


def test_triton_client_health_and_metadata(stack):
    client = triton.InferenceServerClient(url=host(stack))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("shapes") and client.is_model_ready("games")
    assert not client.is_model_ready("idle")
    meta = client.get_model_metadata("games")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 10]}]
    assert meta["outputs"] == [{"name": "output_0", "datatype": "FP32", "shape": [-1, 1]}]
    assert client.get_model_metadata("shapes")["inputs"][0]["datatype"] == "BYTES"
    # games is an .h5 file, shapes a .keras file: neither is a SavedModel.
    assert meta["platform"] == client.get_model_metadata("shapes")["platform"] == \
        "tensorflow_keras"
    assert client.get_server_metadata()["name"] == "inferq"


@pytest.mark.parametrize("binary", [True, False])
def test_triton_infer_on_an_fp32_tensor_model(stack, binary):
    client = triton.InferenceServerClient(url=host(stack))
    x = rows()
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = triton.InferRequestedOutput("output_0", binary_data=binary)
    result = client.infer("games", [inp], outputs=[out], request_id="req-7")
    probabilities = result.as_numpy("output_0")
    assert probabilities.shape == (12, 1)
    assert ((probabilities[:, 0] > 0.5) == games_rule(x).astype(bool)).all()
    assert result.get_response()["id"] == "req-7"
    assert result.get_response()["model_version"] == "1"


@pytest.mark.parametrize("binary", [True, False])
def test_triton_infer_with_encoded_images_in_a_bytes_input(stack, binary):
    client = triton.InferenceServerClient(url=host(stack))
    data = images() if binary else [base64.b64encode(d) for d in images()]
    inp = triton.InferInput("image", [len(data)], "BYTES")
    inp.set_data_from_numpy(np.array(data, dtype=np.object_), binary_data=binary)
    result = client.infer("shapes", [inp],
                          outputs=[triton.InferRequestedOutput("output_0", binary_data=binary)])
    probabilities = result.as_numpy("output_0")
    assert probabilities.shape == (4, 3)
    labels = ["circle", "square", "triangle"]
    assert [labels[i] for i in probabilities.argmax(axis=1)] == LABELS
    # The same numbers as the asynchronous API's scores for these images.
    outputs = async_outputs(stack, "shapes", files=[("image", (n, d)) for n, d in
                                                    zip(EXAMPLES, images())])
    for row, out in zip(probabilities, outputs):
        for entry in out["top_k"]:
            assert row[entry["index"]] == pytest.approx(entry["score"], abs=1e-6)


def test_kserve_errors_are_json(stack):
    base = stack.base
    resp = requests.post(f"{base}/v2/models/nope/infer", json={"inputs": []}, timeout=10)
    assert resp.status_code == 404 and "error" in resp.json()
    resp = requests.post(f"{base}/v2/models/games/infer", json={"inputs": [
        {"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}, timeout=10)
    assert resp.status_code == 400 and "shape" in resp.json()["error"]
    resp = requests.post(f"{base}/v2/models/games/infer", json={"inputs": [
        {"name": "input", "shape": [1, 10], "datatype": "FP32", "data": [0] * 10}],
        "outputs": [{"name": "logits"}]}, timeout=10)
    assert resp.status_code == 400 and "logits" in resp.json()["error"]
    resp = requests.post(f"{base}/v2/models/games/infer", data=b"{nope", timeout=10)
    assert resp.status_code == 400 and "error" in resp.json()


def test_tf_serving_row_and_columnar_formats_match_the_async_api(stack):
    base = stack.base
    b64 = [{"b64": base64.b64encode(d).decode()} for d in images()]
    row = requests.post(f"{base}/v1/models/shapes:predict", json={"instances": b64}, timeout=30)
    columnar = requests.post(f"{base}/v1/models/shapes/versions/1:predict",
                             json={"signature_name": "serving_default",
                                   "inputs": {"image": b64}}, timeout=30)
    keyed = requests.post(f"{base}/v1/models/shapes:predict",
                          json={"instances": [{"image": b} for b in b64]}, timeout=30)
    assert row.status_code == columnar.status_code == keyed.status_code == 200
    predictions = np.array(row.json()["predictions"])
    assert np.allclose(predictions, columnar.json()["outputs"], atol=1e-6)
    assert np.allclose(predictions, keyed.json()["predictions"], atol=1e-6)
    outputs = async_outputs(stack, "shapes", json={"images": b64})
    for prediction, out in zip(predictions, outputs):
        for entry in out["top_k"]:
            assert prediction[entry["index"]] == pytest.approx(entry["score"], abs=1e-6)

    x = rows(6)
    names = [f"g{i}" for i in range(1, 11)]
    lists = requests.post(f"{base}/v1/models/games:predict",
                          json={"instances": x.tolist()}, timeout=30).json()["predictions"]
    objects = requests.post(f"{base}/v1/models/games:predict", json={
        "instances": [dict(zip(names, r)) for r in x.tolist()]}, timeout=30).json()
    assert np.allclose(lists, objects["predictions"], atol=1e-6)
    tensors = async_outputs(stack, "games", json={"instances": x.tolist()})
    assert np.allclose(lists, [o["output"] for o in tensors], atol=1e-6)


def test_tf_serving_status_metadata_and_errors(stack):
    base = stack.base
    status = requests.get(f"{base}/v1/models/shapes", timeout=10).json()
    assert status["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]
    assert requests.get(f"{base}/v1/models/shapes/versions/1", timeout=10).json()[
        "model_version_status"][0]["state"] == "AVAILABLE"
    assert requests.get(f"{base}/v1/models/shapes/versions/9", timeout=10).status_code == 404
    meta = requests.get(f"{base}/v1/models/games/metadata", timeout=10).json()
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert list(sig["inputs"]) == ["input"] and list(sig["outputs"]) == ["output_0"]
    assert meta["model_spec"] == {"name": "games", "signature_name": "", "version": "1"}
    for path, body, code in [("/v1/models/nope:predict", {"instances": [[0] * 10]}, 404),
                             ("/v1/models/games:predict", {"instances": [[0] * 3]}, 400),
                             ("/v1/models/games:predict", {"rows": []}, 400),
                             ("/v1/models/games:predict", {"signature_name": "x",
                                                           "instances": [[0] * 10]}, 400),
                             ("/v1/models/shapes:predict", {"instances": [{"b64": "%%"}]}, 400)]:
        resp = requests.post(base + path, json=body, timeout=10)
        assert resp.status_code == code, (path, resp.text)
        assert isinstance(resp.json()["error"], str)


def test_a_request_past_its_deadline_gets_an_error_and_leaves_nothing_running(stack):
    base = stack.base
    resp = requests.post(f"{base}/v1/models/idle:predict", params={"timeout": 1},
                         json={"instances": [[0] * 10]}, timeout=30)
    assert resp.status_code == 504 and "deadline" in resp.json()["error"]
    resp = requests.post(f"{base}/v2/models/idle/infer", json={
        "inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP32", "data": [0] * 10}],
        "parameters": {"timeout": 1}}, timeout=30)
    assert resp.status_code == 504
    # Both jobs were canceled at their deadline: a worker that comes later skips them.
    client = stack.client
    idle_jobs = [client.hgetall(k) for k in client.scan_iter(keys.job("*"))]
    idle_jobs = [j for j in idle_jobs if j.get(b"model") == b"idle"]
    assert len(idle_jobs) == 2 and {j[b"status"] for j in idle_jobs} == {b"canceled"}


@pytest.mark.parametrize("path,body", [
    ("/v1/models/games:predict", b"[" * 50_000),
    ("/v2/models/games/infer", b"[" * 50_000),
    ("/v2/models/games/infer", b'{"inputs": [{"name": "input", "shape": [1, 10], '
                               b'"datatype": "FP32", "data": [0,0,0,0,0,0,0,0,0,0], '
                               b'"parameters": 5}]}'),
    ("/v2/models/games/infer", b'{"inputs": [{"name": "input", "shape": [1, 10], '
                               b'"datatype": "FP32", "data": [0,0,0,0,0,0,0,0,0,0]}], '
                               b'"outputs": [{"name": "output_0", "parameters": "x"}]}'),
    ("/v2/models/games/infer", b'{"inputs": [{"name": "input", "shape": [1, 10], '
                               b'"datatype": "FP32", "data": [1e400,0,0,0,0,0,0,0,0,0]}]}'),
    ("/v2/models/games/infer", b'{"inputs": [{"name": "input", "shape": [1, 10], '
                               b'"datatype": "FP32", "data": [' + b"9" * 400 + b',0,0,0,0,0,0,0,0,0]}]}'),
    ("/v2/models/games/infer", b'{"id": 7, "inputs": [{"name": "input", "shape": [1, 10], '
                               b'"datatype": "FP32", "data": [0,0,0,0,0,0,0,0,0,0]}]}'),
])
def test_hostile_protocol_bodies_are_400_not_500(stack, path, body):
    resp = requests.post(stack.base + path, data=body,
                         headers={"Content-Type": "application/json"}, timeout=30)
    assert resp.status_code == 400, resp.text
    assert isinstance(resp.json()["error"], str)
