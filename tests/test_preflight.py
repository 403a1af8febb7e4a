"""Settings are checked once, before anything serves: `python -m api.preflight` and the API's
gunicorn master say what is wrong in one line and exit 2; the API listens where
INFERQ_API_HOST says (this machine only by default)."""
import os
import subprocess
import sys

import pytest

from jobs.settings import SettingsError, load_settings
from stack.processes import BIN, ROOT, start_api
from tests.test_run_script import listening_addresses


def run_env(**variables) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERQ_")}
    env.update(variables)
    return env


def test_host_and_log_level_settings():
    assert load_settings({}).api_host == "127.0.0.1"
    assert load_settings({"INFERQ_API_HOST": "0.0.0.0"}).api_host == "0.0.0.0"
    assert load_settings({"INFERQ_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    with pytest.raises(SettingsError, match="INFERQ_API_HOST must be an IP address or a host "
                                            "name .*got 'every where'"):
        load_settings({"INFERQ_API_HOST": "every where"})
    with pytest.raises(SettingsError, match="INFERQ_LOG_LEVEL must be one of DEBUG, INFO, "
                                            "WARNING, ERROR .*got 'loud'"):
        load_settings({"INFERQ_LOG_LEVEL": "loud"})


@pytest.mark.parametrize("variables,message", [
    ({"INFERQ_MAX_BATCH_SIZE": "x"}, "inferq: INFERQ_MAX_BATCH_SIZE must be a whole number, "
                                     "got 'x'"),
    ({"INFERQ_ADMIN_KEYS": "a-key-long-enough-0001"},
     "inferq: INFERQ_ADMIN_KEYS entry 1: expected a key and a tenant"),
])
def test_preflight_is_one_line_and_exit_status_2(variables, message):
    done = subprocess.run([sys.executable, "-m", "api.preflight"], cwd=ROOT, text=True,
                          capture_output=True, env=run_env(**variables), timeout=60)
    assert done.returncode == 2
    assert done.stdout == "" and done.stderr.startswith(message)
    assert len(done.stderr.splitlines()) == 1


def test_preflight_passes_good_settings():
    done = subprocess.run([sys.executable, "-m", "api.preflight"], cwd=ROOT, text=True,
                          capture_output=True, timeout=60,
                          env=run_env(INFERQ_API_KEYS="a-key-long-enough-0001=tenant-a"))
    assert done.returncode == 0, done.stderr


def test_gunicorn_with_a_bad_key_list_says_so_once_and_exits():
    done = subprocess.run([str(BIN / "gunicorn"), "-c", "api/gunicorn_conf.py",
                           "api.app:create_app()"], cwd=ROOT, text=True, capture_output=True,
                          timeout=60, env=run_env(INFERQ_API_KEYS="short=tenant-a",
                                                  INFERQ_API_WORKERS="3"))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "inferq: INFERQ_API_KEYS entry 1: keys must be at least 16 printable characters "
        "without spaces"]


@pytest.mark.parametrize("host,listening", [(None, {"127.0.0.1"}), ("0.0.0.0", {"0.0.0.0"})])
def test_the_api_listens_where_inferq_api_host_says(redis_url, host, listening):
    settings = {"api_host": host} if host else {}
    proc, base = start_api(redis_url, **settings)
    try:
        assert listening_addresses(int(base.rsplit(":", 1)[1])) == listening
        assert "API listening on http://" in proc.output()
        assert "Booting worker" not in proc.output()  # gunicorn's own lines: debug only
    finally:
        proc.stop()
