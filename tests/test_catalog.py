"""The model catalog (api/catalog.py): what GET /v1/models reports, from the repository on disk
and the live workers' heartbeats on a real Redis: each version's state and reason, the workers
serving it, its backlog, and the model's default version."""
import json

import pytest

from api.catalog import NO_WORKER, Catalog
from jobs import keys
from jobs.producer import Producer
from jobs.registry import heartbeat, remove_worker
from jobs.routing import set_default
from jobs.settings import load_settings
from stack.processes import wait_for

CONFIG = {"input": {"kind": "image", "size": [8, 8]}, "labels": ["cat", "dog"],
          "max_batch_size": 4}


def add_version(repo, name: str, version: int, config: dict | None = None):
    (repo / name / str(version)).mkdir(parents=True, exist_ok=True)
    (repo / name / str(version) / "model.keras").write_bytes(b"not read by the catalog")
    (repo / name / "config.json").write_text(json.dumps(config or CONFIG))


@pytest.fixture
def repo(tmp_path):
    return tmp_path


@pytest.fixture
def states(r, redis_url, repo):
    """The catalog's states as the API reads them now (a new Catalog: no cached reads)."""
    settings = load_settings({}, redis_url=redis_url, model_repository=str(repo), heartbeat_s=2)
    return lambda: Catalog(settings, r).states()


def beat(r, worker: str, *models: dict, ttl_s: float = 6):
    """A worker's heartbeat, as worker/service.py sends it: what it serves, in which state."""
    records = [{"kind": "image", "max_batch_size": 4, "labels": ["cat", "dog"],
                "input_shape": [8, 8, 3], "device": "CPU", "reason": None, **m} for m in models]
    heartbeat(r, worker, {"name": worker, "pid": 1, "models": records}, ttl_s)


def version_view(model: dict) -> list[tuple]:
    return [(v["version"], v["state"], v.get("reason"), v["workers"], v["backlog"])
            for v in model["versions"]]


def test_a_model_on_disk_that_no_worker_serves_is_unavailable(states, repo):
    add_version(repo, "pets", 1)
    add_version(repo, "pets", 2)  # the default policy serves the latest version only
    [pets] = states().values()
    assert pets["name"] == "pets" and pets["state"] == "unavailable"
    assert version_view(pets) == [(2, "unavailable", NO_WORKER, 0, 0)]
    assert pets["default_version"] is None and pets["workers"] == 0 and pets["backlog"] == 0
    assert pets["model_version_status"] == [{"version": "2", "state": "END", "status": {
        "error_code": "UNKNOWN", "error_message": NO_WORKER}}]
    assert "labels" not in pets  # what a live worker reports is not known yet


def test_live_workers_make_a_version_available_with_its_workers_backlog_and_default(
        states, r, repo):
    add_version(repo, "pets", 1, {**CONFIG, "version_policy": "all"})
    add_version(repo, "pets", 2, {**CONFIG, "version_policy": "all"})
    beat(r, "w1", {"name": "pets", "version": 1, "state": "available"},
         {"name": "pets", "version": 2, "state": "available"})
    beat(r, "w2", {"name": "pets", "version": 2, "state": "loading"})
    set_default(r, "pets", 2)
    producer = Producer(r, 60, 1000, 60)
    for _ in range(3):
        producer.enqueue("pets", [b"x", b"y"])  # to the default version: 6 inputs queued
    producer.enqueue("pets", [b"z"], version="1")
    pets = states()["pets"]
    assert pets["state"] == "available" and pets["default_version"] == 2
    assert version_view(pets) == [(1, "available", None, 1, 1), (2, "available", None, 2, 6)]
    assert pets["workers"] == 1  # w1 serves; w2 is still loading
    assert pets["backlog"] == 7
    assert pets["labels"] == ["cat", "dog"] and pets["input_shape"] == [8, 8, 3]
    assert [s["state"] for s in pets["model_version_status"]] == ["AVAILABLE", "AVAILABLE"]


def test_each_version_shows_its_best_state_and_why_it_is_not_served(states, r, repo):
    add_version(repo, "pets", 1, {**CONFIG, "version_policy": "all"})
    add_version(repo, "pets", 2, {**CONFIG, "version_policy": "all"})
    beat(r, "w1", {"name": "pets", "version": 1, "state": "available"},
         {"name": "pets", "version": 2, "state": "unavailable",
          "reason": "ValueError: not a Keras file"})
    beat(r, "w2", {"name": "pets", "version": 1, "state": "unloading"})
    pets = states()["pets"]
    assert version_view(pets) == [(1, "available", None, 1, 0),
                                  (2, "unavailable", "ValueError: not a Keras file", 0, 0)]
    assert pets["state"] == "available"  # the model's state is its best version's
    assert pets["model_version_status"][0] == {"version": "2", "state": "END", "status": {
        "error_code": "UNKNOWN", "error_message": "ValueError: not a Keras file"}}


def test_a_config_the_repository_cannot_serve_is_reported_with_its_error(states, repo):
    add_version(repo, "broken", 1, {"input": {"kind": "image", "size": [0, 8]}})
    [broken] = states().values()
    [(version, state, reason, workers, backlog)] = version_view(broken)
    assert (version, state, workers, backlog) == (1, "unavailable", 0, 0)
    assert "input.size" in reason


def test_a_model_only_a_worker_knows_is_listed(states, r, repo):
    add_version(repo, "pets", 1)
    # A worker on another machine, with a model this API's repository lacks.
    beat(r, "far", {"name": "birds", "version": 3, "state": "available"})
    listed = states()
    assert sorted(listed) == ["birds", "pets"]
    assert version_view(listed["birds"]) == [(3, "available", None, 1, 0)]


def test_a_worker_that_stopped_or_missed_its_heartbeats_no_longer_counts(states, r, repo):
    add_version(repo, "pets", 1)
    beat(r, "gone", {"name": "pets", "version": 1, "state": "available"})
    beat(r, "silent", {"name": "pets", "version": 1, "state": "available"}, ttl_s=0.2)
    assert states()["pets"]["workers"] == 2
    remove_worker(r, "gone")  # a clean stop
    wait_for(lambda: not r.exists(keys.worker("silent")), 10, "the heartbeat to run out")
    pets = states()["pets"]
    assert pets["state"] == "unavailable" and pets["workers"] == 0
    assert version_view(pets) == [(1, "unavailable", NO_WORKER, 0, 0)]
