"""scripts/install.sh (what `make install`, `make run` and `make test` run first): one line
while it installs, nothing when all is in place, pip's own output only when pip fails. Run
against a stand-in virtualenv whose `python -m pip` prints what pip prints."""
import os
import subprocess
from pathlib import Path

import pytest

from stack.processes import ROOT

FAKE_PYTHON = """#!/bin/sh
# A stand-in for the virtualenv's python: `-m pip ...` talks as pip does.
echo "Collecting flask"
echo "  Building wheel for inferq-server (pyproject.toml) ... done"
echo "[notice] A new release of pip is available"
echo "pip was asked: $*"
case "$*" in
  *"$FAIL_ON"*) echo "ERROR: No matching distribution found for tensorflow-cpu" >&2; exit 1;;
esac
"""


@pytest.fixture
def venv(tmp_path) -> Path:
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return python.parent.parent


def install(tmp_path, venv, fail_on="never-matches"):
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERQ_")}
    env.update({"VENV": str(venv), "INFERQ_RUN_DIR": str(tmp_path / "run"),
                "FAIL_ON": fail_on, "PATH": f"{tmp_path / 'nobin'}:{env['PATH']}"})
    # No nvidia-smi: the CPU extras, whatever this machine has.
    (tmp_path / "nobin").mkdir(exist_ok=True)
    (tmp_path / "nobin" / "nvidia-smi").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "nobin" / "nvidia-smi").chmod(0o755)
    return subprocess.run(["bash", "scripts/install.sh"], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=60)


def test_install_says_one_line_and_then_nothing(tmp_path, venv):
    first = install(tmp_path, venv)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    lines = first.stdout.splitlines()
    assert lines[0].startswith("install.sh: installing Python packages "
                               f"(api,worker,webhooks,feeder,monitoring,dev,cpu) into {venv}")
    assert lines[1:] == [f"install.sh: installing the client (the inferq command) into {venv}",
                         "install.sh: done"]
    log = (tmp_path / "run" / "install.log").read_text()
    assert "Building wheel" in log and "pip was asked: -m pip install -q ./client" in log
    again = install(tmp_path, venv)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


def test_a_changed_client_is_installed_again_alone(tmp_path, venv):
    assert install(tmp_path, venv).returncode == 0
    # What a change to a file under client/ does: the stamp no longer matches.
    (venv / ".inferq-client-installed").write_text("an older client\n")
    again = install(tmp_path, venv)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        f"install.sh: installing the client (the inferq command) into {venv}",
        "install.sh: done"]
    log = (tmp_path / "run" / "install.log").read_text()
    assert log.count("pip install -q .[") == 1 and log.count("pip install -q ./client") == 2


def test_a_failing_pip_shows_its_output(tmp_path, venv):
    done = install(tmp_path, venv, fail_on=".[api")
    assert done.returncode == 1
    assert ("install.sh: 'pip install -q .[api,worker,webhooks,feeder,monitoring,dev,cpu]' failed"
            in done.stderr)
    assert "  ERROR: No matching distribution found for tensorflow-cpu" in done.stderr
    assert not (venv / ".inferq-installed").exists()  # tried again next time
