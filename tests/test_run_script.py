"""`make run`'s script as a user runs it: it starts the stack, serves a job, and Ctrl-C stops
every process it started."""
import os
import signal
import subprocess
import time
from pathlib import Path

import requests

from stack.processes import ROOT, free_port, wait_for
from tests.receiver import Receiver


def processes_with(marker: str) -> list[int]:
    """Pids of the processes whose environment holds `marker` (everything run.sh started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


def test_run_starts_the_stack_and_ctrl_c_stops_all_of_it(tmp_path):
    port = free_port()
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERQ_")}
    env.update({"INFERQ_API_PORT": str(port), "INFERQ_RUN_DIR": str(run_dir),
                "INFERQ_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32",
                "VENV": str(Path(os.sys.executable).parent.parent)})
    receiver = Receiver()
    log = open(tmp_path / "run.log", "w")
    # A terminal's Ctrl-C: SIGINT to the foreground process group, with SIGINT not ignored.
    proc = subprocess.Popen(["bash", "scripts/run.sh"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for(lambda: "is ready" in (tmp_path / "run.log").read_text() or proc.poll() is not None,
                 180, "run.sh to say the stack is ready", 0.5)
        output = (tmp_path / "run.log").read_text()
        assert "is ready" in output, output[-3000:]
        # It made a development key, printed it, and the API asks for it.
        key = (run_dir / "dev_key").read_text().strip()
        assert len(key) >= 16 and key in output
        assert (f"curl -H 'Authorization: Bearer {key}' -F image=@examples/circle.png "
                f"localhost:{port}/v1/models/shapes/jobs") in output
        base = f"http://127.0.0.1:{port}"
        with open(ROOT / "examples" / "circle.png", "rb") as f:
            assert requests.post(f"{base}/v1/models/shapes/jobs", files={"image": f},
                                 timeout=10).status_code == 401
        auth = {"Authorization": f"Bearer {key}"}
        with open(ROOT / "examples" / "circle.png", "rb") as f:
            resp = requests.post(f"{base}/v1/models/shapes/jobs", files={"image": f}, headers=auth,
                                 data={"webhook": receiver.url("/done")}, timeout=10)
        assert resp.status_code == 202
        job = requests.get(resp.json()["urls"]["get"], params={"wait": 20}, headers=auth,
                           timeout=30).json()
        assert job["status"] == "succeeded"
        assert job["outputs"][0]["top_k"][0]["label"] == "circle"
        # Its webhook worker delivers, signed with the development secret it printed.
        wait_for(lambda: receiver.to("/done"), 30, "the webhook")
        secret = (run_dir / "webhook_secret").read_text().strip()
        assert f"INFERQ_WEBHOOK_SECRET={secret}" in output
        [hook] = receiver.to("/done")
        from svix.webhooks import Webhook
        Webhook(secret).verify(hook["body"], hook["headers"])
        # Its private Redis keeps its data in the run directory, with AOF on.
        assert (run_dir / "redis").is_dir()
        started = processes_with(f"INFERQ_RUN_DIR={run_dir}")
        # the script, redis-server, gunicorn (master + workers), worker, webhook worker
        assert len(started) >= 5

        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
        wait_for(lambda: not processes_with(f"INFERQ_RUN_DIR={run_dir}"), 30,
                 "every process run.sh started to exit")
    finally:
        for pid in processes_with(f"INFERQ_RUN_DIR={run_dir}"):
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        receiver.close()
    assert "run.sh: stopping" in (tmp_path / "run.log").read_text()
