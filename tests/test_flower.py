"""Flower, as the `flower` service of docker-compose.yml starts it (docker/flower.sh): against a
running stack it lists every Celery worker (the inference worker, the webhook worker, the
feeder) through its HTTP API, behind basic auth; without that auth the script refuses to start."""
import os
import secrets
import socket
import subprocess
from pathlib import Path

import pytest
import requests

from stack.processes import BIN, ROOT, Proc, free_port, service_env, wait_for

SCRIPT = ROOT / "docker" / "flower.sh"
USER = "ops"


def node_name(proc: Proc) -> str:
    """The Celery node name a stack process was started with (`--hostname name@%h`)."""
    args = proc.proc.args
    return args[args.index("--hostname") + 1].replace("%h", socket.gethostname())


def flower_env(redis_url: str, **flower) -> dict:
    env = service_env(redis_url)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # `celery` of the virtualenv
    env.update({f"FLOWER_{k.upper()}": v for k, v in flower.items()})
    return env


@pytest.fixture(scope="module")
def celery_stack(module_stack_factory):
    """A stack with one Celery worker of each kind."""
    return module_stack_factory(models=["shapes"], webhooks=True, feeder=True)


@pytest.fixture(scope="module")
def flower(celery_stack):
    password = secrets.token_urlsafe(16)
    port = free_port()
    proc = Proc(["sh", str(SCRIPT)], flower_env(celery_stack.url, basic_auth=f"{USER}:{password}",
                                                 port=str(port), address="127.0.0.1"), "flower")
    try:
        yield {"proc": proc, "base": f"http://127.0.0.1:{port}", "auth": (USER, password)}
    finally:
        proc.stop()


def test_flower_lists_the_running_celery_workers(celery_stack, flower):
    workers = {node_name(p): p for p in (celery_stack.worker, celery_stack.hooks,
                                         celery_stack.feeder)}

    def listed():
        if not flower["proc"].alive():
            raise RuntimeError("flower exited:\n" + flower["proc"].output()[-5000:])
        try:
            # refresh: Flower asks the workers now (a broadcast on the broker) instead of
            # answering from what it has seen so far.
            answer = requests.get(flower["base"] + "/api/workers", params={"refresh": 1},
                                  auth=flower["auth"], timeout=10)
        except requests.RequestException:  # not listening yet
            return None
        assert answer.status_code == 200, answer.text
        found = answer.json()
        return found if set(found) == set(workers) and all(
            "stats" in info for info in found.values()) else None

    found = wait_for(listed, 60, f"Flower to list {sorted(workers)}", 0.5)
    # The processes themselves answered: each entry is the pid the stack started.
    assert {name: info["stats"]["pid"] for name, info in found.items()} == \
        {name: proc.pid for name, proc in workers.items()}
    # The password stays off the command line (Flower reads it from the environment).
    cmdline = Path(f"/proc/{flower['proc'].pid}/cmdline").read_bytes()
    assert flower["auth"][1].encode() not in cmdline


def test_flower_refuses_requests_without_the_password(flower):
    wait_for(lambda: _answers(flower["base"] + "/healthcheck"), 30, "Flower to answer", 0.2)
    for auth in (None, (USER, "wrong"), ("someone", flower["auth"][1])):
        for path in ("/api/workers", "/"):
            answer = requests.get(flower["base"] + path, auth=auth, timeout=10)
            assert answer.status_code == 401, (path, auth, answer.status_code)
    assert requests.get(flower["base"] + "/", auth=flower["auth"], timeout=10).ok


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


@pytest.mark.parametrize("auth", [None, "", "admin", "admin:", ":secret", "ops:pw,,dev:pw2"])
def test_the_start_script_refuses_to_start_without_basic_auth(redis_url, auth):
    env = flower_env(redis_url, port=str(free_port()), address="127.0.0.1")
    env.pop("FLOWER_BASIC_AUTH", None)
    if auth is not None:
        env["FLOWER_BASIC_AUTH"] = auth
    done = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2
    assert done.stdout == ""  # Flower itself never started
    [line] = done.stderr.splitlines()
    assert line.startswith("flower: FLOWER_BASIC_AUTH ")
    assert "FLOWER_BASIC_AUTH=user:password" in line and "no default" in line
