"""What the client and CLI tests share: a folder of freshly drawn shapes, the server's counters,
and the environment the `inferq` command reads."""
import os
from pathlib import Path

import requests

from demo.shapes import random_examples
from stack.processes import wait_for

KEY = "iq_client_tests_key_0001"
STACK = {"models": ["shapes"], "feeder": True, "api_keys": f"{KEY}=clients"}


def shape_dir(folder: Path, n: int, seed: int) -> Path:
    """`n` shape images (PNG and JPEG) named `<i>-<label>.<ext>` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (label, data) in enumerate(random_examples(n, seed=seed)):
        ext = "jpg" if data.startswith(b"\xff\xd8") else "png"
        (folder / f"{i:04d}-{label}.{ext}").write_bytes(data)
    return folder


def label_of(path: str) -> str:
    return Path(path).stem.split("-", 1)[1]


def counter(stack, name: str, **labels) -> float:
    """A counter from the server's /metrics, summed over the series that have `labels`."""
    text = requests.get(stack.base + "/metrics", headers={"Authorization": f"Bearer {KEY}"},
                        timeout=10).text
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and all(w in line for w in wanted))


def jobs_made(stack) -> float:
    return counter(stack, "inferq_jobs_submitted_total", model="shapes")


def inputs_run(stack) -> float:
    """Inputs of `shapes` the workers have run, once nothing of it is queued: an input sent
    twice (a retried submit that made a second job) would be run twice."""
    wait_for(lambda: counter(stack, "inferq_backlog_inputs", model="shapes") == 0, 120,
             "the backlog of shapes to drain")
    return counter(stack, "inferq_inputs_total", model="shapes")


def cli_env(stack, key: str | None = KEY) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERQ_")}
    env["INFERQ_URL"] = stack.base
    if key is not None:
        env["INFERQ_API_KEY"] = key
    return env
