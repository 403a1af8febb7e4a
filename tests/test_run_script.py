"""`make run` as a user runs it (scripts/run.py): it checks the settings before it starts
anything, starts the stack quietly, prints its banner once the demo model serves, listens on
this machine only, names a process that dies, and stops every process it started on Ctrl-C,
SIGTERM or SIGINT, sent to it or to `make`, however it was started."""
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from stack.processes import ROOT, free_port, wait_for
from tests.receiver import Receiver

VENV = Path(sys.executable).parent.parent


def processes_with(marker: str) -> list[int]:
    """Pids of the processes whose environment holds `marker` (everything run.py started)."""
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


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a socket listening on TCP `port` (/proc/net/tcp{,6})."""
    found = set()
    for name, size in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                raw = bytes.fromhex(addr)
                # /proc writes each 32-bit word in host (little-endian) order
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, size, 4))
                found.add(str(ipaddress.ip_address(raw)))
    return found


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # sends nothing: picks the interface a packet would use
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if ipaddress.ip_address(address).is_loopback else address


class Run:
    """`make run` or scripts/run.py started as a user would, its output in a file."""

    def __init__(self, tmp_path: Path, command=("scripts/run.py",), ignore_sigint=False,
                 venv=VENV, **settings):
        self.port = free_port()
        self.run_dir = tmp_path / "run"
        self.marker = f"INFERQ_RUN_DIR={self.run_dir}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFERQ_")}
        env.update({"INFERQ_API_PORT": str(self.port), "INFERQ_RUN_DIR": str(self.run_dir),
                    "VENV": str(venv)})
        env.update({f"INFERQ_{k.upper()}": str(v) for k, v in settings.items()})
        args = list(command)
        if args[0].endswith(".py"):
            args.insert(0, sys.executable)
        self.log_path = tmp_path / "run.log"
        self.log = open(self.log_path, "w")
        # SIG_DFL: a terminal's shell; SIG_IGN: `make run &` in a script, without job control.
        disposition = signal.SIG_IGN if ignore_sigint else signal.SIG_DFL
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, disposition))

    def output(self) -> str:
        return self.log_path.read_text()

    def wait_output(self, pattern: str, timeout_s: float, what: str) -> str:
        wait_for(lambda: re.search(pattern, self.output()) or self.proc.poll() is not None,
                 timeout_s, what, 0.2)
        output = self.output()
        assert re.search(pattern, output), output[-4000:]
        return output

    def wait_started(self):
        """Every process up: the API listens, the three workers said they are ready."""
        self.wait_output(r"(?s)(?=.*API listening)(?=.*inferq-worker@\S+ ready)"
                         r"(?=.*inferq-webhooks@\S+ ready)(?=.*inferq-feeder@\S+ ready)", 90,
                         "every process to start")
        assert len(processes_with(self.marker)) >= 6  # run.py, redis, gunicorn, 3 workers

    def wait_all_stopped(self):
        self.proc.wait(90)
        wait_for(lambda: not processes_with(self.marker), 30,
                 "every process make run started to exit")

    def close(self):
        for pid in processes_with(self.marker):
            os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


@pytest.fixture
def repository(tmp_path):
    """A model repository with `games`, and `shapes` without a version yet."""
    repo = tmp_path / "models"
    shutil.copytree(ROOT / "models" / "games", repo / "games")
    (repo / "shapes").mkdir()
    shutil.copy(ROOT / "models" / "shapes" / "config.json", repo / "shapes")
    return repo


def test_run_starts_quietly_waits_for_the_demo_model_and_ctrl_c_stops_all_of_it(
        tmp_path, repository):
    receiver = Receiver()
    run = Run(tmp_path, model_repository=repository,
              webhook_allow_networks="127.0.0.1/32")
    base = f"http://127.0.0.1:{run.port}"
    try:
        # Another model serves first: no banner until the demo model itself does.
        output = run.wait_output("inferq: serving games; waiting for shapes", 120,
                                 "run.py to see the games model served")
        assert "is ready" not in output
        assert "waiting for the worker to load and warm the demo model shapes" in output
        staged = tmp_path / "staged"
        shutil.copytree(ROOT / "models" / "shapes" / "1", staged)
        staged.rename(repository / "shapes" / "1")  # one step: the worker never sees half of it
        output = run.wait_output("is ready", 120, "the banner")
        assert "shapes" in requests.get(f"{base}/readyz", timeout=2).json()["models"]

        # Quiet: one line per event, none of the libraries' start-up notes.
        before_banner = output[:output.index("is ready")]
        for noise in ("SecurityWarning", "superuser", "retracing", "oneDNN", "cpu_feature",
                      "absl::InitializeLog", "[config]", "mingle", "Booting worker"):
            assert noise not in before_banner, noise
        assert len(before_banner.splitlines()) < 25, before_banner
        assert "Traceback" not in output

        # This machine only: the API listens on loopback, not on the machine's other address.
        assert listening_addresses(run.port) == {"127.0.0.1"}
        address = non_loopback_address()
        if address:
            with pytest.raises(requests.ConnectionError):
                requests.get(f"http://{address}:{run.port}/healthz", timeout=2)
        assert "this machine only; INFERQ_API_HOST=0.0.0.0 opens it to others" in output

        # It made a development key, printed it, and the API asks for it.
        key = (run.run_dir / "dev_key").read_text().strip()
        assert len(key) >= 16 and key in output
        console = f"http://localhost:{run.port}/console"
        assert f"Console: {console} (sign in with the development key below)" in output
        assert requests.get(console, timeout=5).status_code == 200
        assert (f"curl -H 'Authorization: Bearer {key}' -F image=@examples/circle.png "
                f"localhost:{run.port}/v1/models/shapes/jobs") in output
        with open(ROOT / "examples" / "circle.png", "rb") as f:
            assert requests.post(f"{base}/v1/models/shapes/jobs", files={"image": f},
                                 timeout=10).status_code == 401
        auth = {"Authorization": f"Bearer {key}"}
        with open(ROOT / "examples" / "circle.png", "rb") as f:
            resp = requests.post(f"{base}/v1/models/shapes/jobs", files={"image": f},
                                 headers=auth, data={"webhook": receiver.url("/done")},
                                 timeout=10)
        assert resp.status_code == 202
        job = requests.get(resp.json()["urls"]["get"], params={"wait": 20}, headers=auth,
                           timeout=30).json()
        assert job["status"] == "succeeded"
        assert job["outputs"][0]["top_k"][0]["label"] == "circle"
        # Its webhook worker delivers, signed with the development secret it printed.
        wait_for(lambda: receiver.to("/done"), 30, "the webhook")
        secret = (run.run_dir / "webhook_secret").read_text().strip()
        assert f"INFERQ_WEBHOOK_SECRET={secret}" in output
        [hook] = receiver.to("/done")
        from svix.webhooks import Webhook
        Webhook(secret).verify(hook["body"], hook["headers"])
        # Its private Redis keeps its data in the run directory; each process has a log there.
        assert (run.run_dir / "redis").is_dir()
        assert "model shapes v1 warm" in (run.run_dir / "worker.log").read_text()

        os.killpg(run.proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the foreground group
        run.wait_all_stopped()
        assert run.proc.returncode == 0
    finally:
        run.close()
        receiver.close()
    assert "inferq: stopping (SIGINT)" in run.output()


@pytest.mark.parametrize("command,sig,ignore_sigint", [
    (["scripts/run.py"], signal.SIGTERM, False),
    # `scripts/run.py &` from a script: SIGINT ignored on entry, and still it stops on one.
    (["scripts/run.py"], signal.SIGINT, True),
    # make catches SIGINT, passes it to no one and waits for its child: run.py notices.
    (["make", "run"], signal.SIGINT, False),
    (["make", "run"], signal.SIGTERM, True),
], ids=["run.py-SIGTERM", "run.py-SIGINT-ignored-on-entry", "make-SIGINT", "make-SIGTERM"])
def test_a_signal_to_its_pid_stops_every_process_it_started(tmp_path, command, sig,
                                                            ignore_sigint):
    # No models: nothing to load, the processes are all up in seconds.
    (tmp_path / "empty").mkdir()
    run = Run(tmp_path, command, ignore_sigint, model_repository=tmp_path / "empty")
    try:
        run.wait_started()
        os.kill(run.proc.pid, sig)  # to its pid alone, not to its process group
        run.wait_all_stopped()
    finally:
        run.close()
    output = run.output()
    assert "inferq: stopped" in output, output[-3000:]
    assert "Traceback" not in output
    # The workers stop before Redis (the inference worker needs it to finish its batch).
    for log in ("worker.log", "webhooks.log", "feeder.log"):
        text = (run.run_dir / log).read_text()
        assert "Warm shutdown" in text and "Connection refused" not in text, text[-2000:]


@pytest.mark.parametrize("env,message", [
    ({"INFERQ_MAX_BATCH_SIZE": "x"}, "INFERQ_MAX_BATCH_SIZE must be a whole number, got 'x'"),
    ({"INFERQ_API_KEYS": "short=tenant-a"}, "INFERQ_API_KEYS entry 1: keys must be at least"),
    ({"INFERQ_LOG_LEVEL": "loud"}, "INFERQ_LOG_LEVEL must be one of DEBUG, INFO"),
])
def test_a_bad_setting_is_one_line_and_nothing_starts(tmp_path, env, message):
    run = Run(tmp_path, **{k.removeprefix("INFERQ_").lower(): v for k, v in env.items()})
    try:
        assert run.proc.wait(30) == 2
    finally:
        run.close()
    [line] = run.output().splitlines()
    assert line.startswith("inferq: ") and message in line
    assert not (run.run_dir / "redis.log").exists()  # nothing was started


def test_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = Run(tmp_path, api_port=port)
        try:
            assert run.proc.wait(30) == 2
        finally:
            run.close()
    assert run.output().splitlines() == [
        f"inferq: port {port} on 127.0.0.1 is in use (another inferq?): "
        "set INFERQ_API_PORT to a free port"]


def test_a_process_that_dies_at_start_up_is_named_with_its_log(tmp_path):
    # A virtualenv whose webhook worker cannot start; everything else is the real one.
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "gunicorn").symlink_to(VENV / "bin" / "gunicorn")
    celery = venv / "bin" / "celery"
    celery.write_text(f"""#!/bin/sh
case "$*" in *webhooks.app*) echo "webhooks: cannot start: no such broker" >&2; exit 3;; esac
exec {VENV}/bin/celery "$@"
""")
    celery.chmod(0o755)
    (tmp_path / "empty").mkdir()
    run = Run(tmp_path, venv=venv, model_repository=tmp_path / "empty")
    try:
        assert run.proc.wait(60) == 1
        run.wait_all_stopped()
    finally:
        run.close()
    assert ("inferq: the webhook worker exited during start-up (exit status 3); the last "
            f"lines of {run.run_dir / 'webhooks.log'}:\n"
            "  webhooks: cannot start: no such broker") in run.output()
