"""The model repository end to end: several models in one worker, hot reload of a new version,
a broken version, config changes, tensor and SavedModel models, upload and removal through the
API with the memory given back."""
import json
import os
import shutil
import threading

import numpy as np
import pytest
import requests

from demo.games import games_rule
from stack.processes import ROOT, children, model_processes, wait_for

EXAMPLES = ROOT / "examples"
MODELS = ROOT / "models"
FAST = {"repository_poll_s": 0.5, "heartbeat_s": 0.5}


@pytest.fixture
def stack(stack_factory, tmp_path):
    """Redis and the API over a repository of this test's own; workers started by the test."""
    repo = tmp_path / "repo"
    repo.mkdir()
    return stack_factory(models=None, repository=repo, model_admin=1, **FAST)


def copy_model(src: str, repo, name: str, version: int = 1, config: dict | None = None):
    """Put `models/<src>` version 1 into `repo` as `name`/`version`, atomically."""
    staging = repo / f".staging-{name}-{version}"
    shutil.copytree(MODELS / src / "1", staging)
    if config is not None:
        (staging / "config.json").write_text(json.dumps(config))
    (repo / name).mkdir(exist_ok=True)
    if not (repo / name / "config.json").exists():
        shutil.copy(MODELS / src / "config.json", repo / name / "config.json")
    os.rename(staging, repo / name / str(version))


def model(stack, name):
    return requests.get(f"{stack.base}/v1/models/{name}", timeout=10).json()


def version_state(stack, name, version):
    for v in model(stack, name).get("versions", []):
        if v["version"] == version:
            return v
    return None


def run_job(stack, name, files=None, json_body=None, version=None, wait_s=30):
    path = f"/v1/models/{name}" + (f"/versions/{version}" if version else "") + "/jobs"
    resp = requests.post(stack.base + path, files=files, json=json_body, timeout=30)
    assert resp.status_code == 202, resp.text
    return requests.get(resp.json()["urls"]["get"], params={"wait": wait_s},
                        timeout=wait_s + 10).json()


def image(name):
    return [("image", (name, (EXAMPLES / name).read_bytes()))]


def test_one_worker_serves_an_image_model_a_tensor_h5_and_a_savedmodel(stack):
    for name in ("shapes", "games", "shapes-sm"):
        copy_model(name, stack.repository, name)
    worker = stack.start_worker(["shapes", "games", "shapes-sm"])
    assert len(model_processes(worker.pid)) == 3  # one process per model version
    # Each job gets its own model's outputs.
    for name in ("shapes", "shapes-sm"):
        for example, label in [("circle.png", "circle"), ("triangle.jpg", "triangle")]:
            job = run_job(stack, name, files=image(example))
            assert job["status"] == "succeeded" and job["model"] == name
            assert job["outputs"][0]["top_k"][0]["label"] == label
    # The legacy .h5 with its custom training metric loads (compile=False) and answers.
    rng = np.random.default_rng(5)
    rows = rng.integers(0, 2, size=(40, 10))
    names = [f"g{i}" for i in range(1, 11)]
    instances = [r.tolist() for r in rows[:20]] + [dict(zip(names, map(int, r)))
                                                   for r in rows[20:]]
    job = run_job(stack, "games", json_body={"instances": instances})
    assert job["status"] == "succeeded" and job["version"] == "1"
    probabilities = np.array([o["output"][0] for o in job["outputs"]])
    assert ((probabilities > 0.5) == games_rule(rows).astype(bool)).mean() >= 0.95
    # Inputs the model cannot take are refused before they are queued.
    for bad in ({"instances": [[1, 0, 1]]}, {"instances": [{"g1": 1}]}, {"images": []},
                {"instances": [["a"] * 10]}):
        resp = requests.post(f"{stack.base}/v1/models/games/jobs", json=bad, timeout=10)
        assert resp.status_code == 400, bad
    resp = requests.post(f"{stack.base}/v1/models/games/jobs", files=image("circle.png"),
                         timeout=10)
    assert resp.status_code == 415
    listing = {m["name"]: m for m in requests.get(f"{stack.base}/v1/models",
                                                  timeout=10).json()["models"]}
    assert {n: m["state"] for n, m in listing.items()} == {
        "games": "available", "shapes": "available", "shapes-sm": "available"}
    assert listing["games"]["kind"] == "tensor" and listing["games"]["input_shape"] == [10]


def test_new_version_takes_over_while_jobs_flow_and_a_broken_one_changes_nothing(stack):
    copy_model("shapes", stack.repository, "hot")
    worker = stack.start_worker(["hot"])
    results, stop = [], threading.Event()

    def client():
        while not stop.is_set():
            results.append(run_job(stack, "hot", files=image("square.png")))

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    wait_for(lambda: len(results) >= 10, 60, "jobs on v1")
    copy_model("shapes", stack.repository, "hot", version=2)
    wait_for(lambda: sum(r["version"] == "2" for r in results) >= 10, 90, "jobs to move to v2")
    stop.set()
    for t in threads:
        t.join()
    assert all(r["status"] == "succeeded" for r in results), [
        r for r in results if r["status"] != "succeeded"][:2]
    versions = [int(r["version"]) for r in results]
    assert versions[0] == 1 and versions[-1] == 2
    assert all(r["outputs"][0]["top_k"][0]["label"] == "square" for r in results)
    # v1 served what it held, then its process went away.
    wait_for(lambda: version_state(stack, "hot", 1) is None, 60, "v1 to unload")
    assert model(stack, "hot")["default_version"] == 2
    assert len(model_processes(worker.pid)) == 1

    # A corrupt version 3: it is reported with its error, and v2 keeps serving.
    (stack.repository / ".v3").mkdir()
    (stack.repository / ".v3" / "model.keras").write_bytes(b"this is not a keras file")
    os.rename(stack.repository / ".v3", stack.repository / "hot" / "3")
    v3 = wait_for(lambda: (s := version_state(stack, "hot", 3)) and s.get("reason")
                  and s["state"] == "unavailable" and s["reason"] != "no live worker serves "
                  "this version" and s, 60, "v3's load to fail")
    assert "v3" in v3["reason"] or "Error" in v3["reason"] or "error" in v3["reason"]
    state = model(stack, "hot")
    assert state["default_version"] == 2 and state["state"] == "available"
    assert version_state(stack, "hot", 2)["state"] == "available"
    job = run_job(stack, "hot", files=image("circle.png"))
    assert job["status"] == "succeeded" and job["version"] == "2"
    # A pinned job goes to the version it names, and a version that is not served is 404.
    assert run_job(stack, "hot", files=image("circle.png"), version=2)["version"] == "2"
    resp = requests.post(f"{stack.base}/v1/models/hot/versions/7/jobs",
                         files=image("circle.png"), timeout=10)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "unknown_version"


def test_a_changed_config_is_picked_up_without_a_restart(stack):
    copy_model("shapes", stack.repository, "cfg")
    worker = stack.start_worker(["cfg"])
    assert len(run_job(stack, "cfg", files=image("circle.png"))["outputs"][0]["top_k"]) == 3
    config = json.loads((MODELS / "shapes" / "config.json").read_text())
    (stack.repository / "cfg" / "config.json").write_text(json.dumps({**config, "top_k": 1}))

    def top_k_is_one():
        job = run_job(stack, "cfg", files=image("circle.png"))
        assert job["status"] == "succeeded"
        return len(job["outputs"][0]["top_k"]) == 1
    wait_for(top_k_is_one, 60, "the new config to serve", interval_s=0.5)
    wait_for(lambda: len(model_processes(worker.pid)) == 1, 30, "the old load to exit")


def rss_kib(pids) -> int:
    """Resident memory of these processes together (an exited, unreaped one holds none)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except FileNotFoundError:
            pass
    return total


def test_load_and_unload_twenty_times_through_the_api_gives_memory_back(stack):
    worker = stack.start_worker(None, wait_ready=False)
    config = {**json.loads((MODELS / "shapes" / "config.json").read_text()),
              "max_batch_size": 1}
    loaded, unloaded = [], []
    for cycle in range(20):
        with open(MODELS / "shapes" / "1" / "model.keras", "rb") as f:
            resp = requests.put(f"{stack.base}/v1/models/cycle/versions/1",
                                files={"model": ("model.keras", f)},
                                data={"config": json.dumps(config)}, timeout=30)
        assert resp.status_code == 201, resp.text
        wait_for(lambda: model(stack, "cycle").get("state") == "available", 60, "the load")
        assert run_job(stack, "cycle", files=image("square.png"))["status"] == "succeeded"
        loaded.append(rss_kib([worker.pid] + children(worker.pid)))  # tracker included
        resp = requests.delete(f"{stack.base}/v1/models/cycle", timeout=10)
        assert resp.status_code == 202
        wait_for(lambda: not model_processes(worker.pid), 60, "the model process to exit")
        assert requests.post(f"{stack.base}/v1/models/cycle/jobs", files=image("square.png"),
                             timeout=10).status_code == 404
        unloaded.append(rss_kib([worker.pid] + children(worker.pid)))
    print(f"\nworker memory with the model loaded: cycle 1 {loaded[0] / 1024:.0f} MiB, "
          f"cycle 20 {loaded[-1] / 1024:.0f} MiB; unloaded: cycle 1 {unloaded[0] / 1024:.0f} "
          f"MiB, cycle 20 {unloaded[-1] / 1024:.0f} MiB")
    assert loaded[-1] <= loaded[0] * 1.10
    assert unloaded[-1] <= unloaded[0] * 1.10
    assert loaded[0] > unloaded[0] * 2  # the model's memory really was in the child


def test_model_admin_refuses_bad_uploads_and_is_off_by_default(stack, stack_factory):
    base = stack.base
    resp = requests.put(f"{base}/v1/models/new/versions/1",
                        files={"model": ("model.bin", b"x")}, timeout=10)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "unsupported_model_file"
    keras = (MODELS / "shapes" / "1" / "model.keras").read_bytes()
    resp = requests.put(f"{base}/v1/models/new/versions/1",
                        files={"model": ("model.keras", keras)}, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "no_config"
    resp = requests.put(f"{base}/v1/models/new/versions/1", files={"model": ("model.keras", keras)},
                        data={"config": json.dumps({"input": {"size": [0, 1]}})}, timeout=10)
    assert resp.status_code == 400 and "input.size" in resp.json()["error"]["message"]
    assert not (stack.repository / "new").exists() or not os.listdir(stack.repository / "new")
    assert requests.delete(f"{base}/v1/models/nope", timeout=10).status_code == 404
    off = stack_factory(models=None, repository=stack.repository)
    resp = requests.delete(f"{off.base}/v1/models/whatever", timeout=10)
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "admin_disabled"
