"""The `inferq` command line (client/), run as a user runs it (the virtualenv's `inferq`, as a
process, its output a pipe), against a real stack: Redis, the API, a worker serving `shapes`,
and the batch feeder."""
import json
import signal
import subprocess
from pathlib import Path

import pytest

from stack.processes import BIN, wait_for
from tests.client_tools import (KEY, STACK, cli_env, counter, inputs_run, jobs_made, label_of,
                                shape_dir)

INFERQ = str(BIN / "inferq")
N = 300


@pytest.fixture(scope="module")
def stack(module_stack_factory):
    return module_stack_factory(**STACK)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return shape_dir(tmp_path_factory.mktemp("cli") / "shapes", N, seed=20261218)


def inferq(stack, *args, key=KEY, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([INFERQ, *map(str, args)], env=cli_env(stack, key), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def start(stack, *args) -> subprocess.Popen:
    return subprocess.Popen([INFERQ, *map(str, args)], env=cli_env(stack),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def count_lines(out: Path) -> int:
    return out.read_text().count("\n") if out.exists() else 0


def outputs_by_path(lines) -> dict[str, list]:
    found = {}
    for line in lines:
        assert "outputs" in line, line
        assert line["path"] not in found, f"{line['path']} twice"
        found[line["path"]] = line["outputs"]
    return found


def test_predict_a_folder_then_again_with_the_same_out_sends_nothing(stack, shapes, tmp_path):
    out = tmp_path / "results.jsonl"
    before, jobs_before = inputs_run(stack), jobs_made(stack)
    done = inferq(stack, "predict", "shapes", shapes, "--out", out)
    assert done.returncode == 0, done.stderr
    found = outputs_by_path(read(out))
    assert len(found) == N
    correct = sum(outputs[0]["label"] == label_of(p) for p, outputs in found.items())
    assert correct / N >= 0.95, correct
    assert inputs_run(stack) - before == N
    # Several images to a job: one submit and one long-poll carry up to 8 of them.
    assert jobs_made(stack) - jobs_before <= N / 4
    # Not a terminal: no bar, a plain line (the last one at the end).
    assert f"predict: {N}/{N} done, 0 failed" in done.stderr
    assert "\x1b[" not in done.stderr

    again = inferq(stack, "predict", "shapes", shapes, "--out", out)
    assert again.returncode == 0, again.stderr
    assert f"{N} of {N} already in {out}" in again.stderr
    assert count_lines(out) == N
    assert inputs_run(stack) - before == N


def test_the_api_killed_and_started_again_mid_run_costs_no_image_and_no_extra_job(
        stack, shapes, tmp_path):
    out = tmp_path / "results.jsonl"
    before = inputs_run(stack)
    run = start(stack, "predict", "shapes", shapes, "--out", out, "--concurrency", "4")
    try:
        wait_for(lambda: count_lines(out) >= 30, 120, "30 results")
        stack.restart_api(kill=True)  # requests in flight are cut; the port is the same
        at_restart = count_lines(out)
        _, stderr = run.communicate(timeout=300)
    finally:
        run.kill()
    assert at_restart < N  # the run went on after the restart
    assert run.returncode == 0, stderr
    assert len(outputs_by_path(read(out))) == N
    # A submit that was cut was sent again with its Idempotency-Key: the server answered
    # with the job it had made, so each image ran once.
    assert inputs_run(stack) - before == N


def test_a_full_backlog_is_waited_out(stack, shapes, tmp_path):
    images = sorted(shapes.iterdir())[:100]
    out = tmp_path / "results.jsonl"
    before, refused = inputs_run(stack), counter(stack, "inferq_jobs_refused_total",
                                                 reason="backlog_full")
    stack.restart_api(max_backlog=10)  # one job of 8 fits, the next waits
    try:
        done = inferq(stack, "predict", "shapes", *images, "--out", out, "--concurrency", 24)
    finally:
        stack.restart_api()
    assert done.returncode == 0, done.stderr
    assert len(outputs_by_path(read(out))) == 100
    assert counter(stack, "inferq_jobs_refused_total", reason="backlog_full") > refused
    assert inputs_run(stack) - before == 100


def test_ctrl_c_keeps_what_finished_and_the_same_command_goes_on(stack, shapes, tmp_path):
    out = tmp_path / "results.jsonl"
    before = inputs_run(stack)
    run = start(stack, "predict", "shapes", shapes, "--out", out, "--concurrency", "2")
    try:
        wait_for(lambda: count_lines(out) >= 20, 120, "20 results")
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 130, stderr
    assert "the same command goes on from there" in stderr
    assert "Traceback" not in stderr
    first = len(outputs_by_path(read(out)))  # whole lines only, each path once
    assert first < N

    rest = inferq(stack, "predict", "shapes", shapes, "--out", out, "--concurrency", "2")
    assert rest.returncode == 0, rest.stderr
    assert f"{first} of {N} already in" in rest.stderr
    assert len(outputs_by_path(read(out))) == N
    # The images in flight at Ctrl-C finished and were kept: none was sent twice.
    assert inputs_run(stack) - before == N


def test_a_wrong_key_is_exit_3_and_one_line(stack, shapes, tmp_path):
    out = tmp_path / "results.jsonl"
    done = inferq(stack, "predict", "shapes", shapes, "--out", out, key="iq_not_a_key_0000000")
    assert done.returncode == 3
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert "API key is not valid" in done.stderr and "invalid_key" in done.stderr
    assert read(out) == []


def test_no_key_in_a_checkout_says_where_make_run_keeps_one(stack, tmp_path):
    (tmp_path / ".run").mkdir()
    (tmp_path / ".run" / "dev_key").write_text("iq_dev_something\n")
    (tmp_path / "sub").mkdir()
    done = inferq(stack, "models", key=None, cwd=tmp_path / "sub")
    assert done.returncode == 3
    (line,) = done.stderr.splitlines()
    assert line.startswith("inferq: no API key: set INFERQ_API_KEY or pass --api-key")
    assert "../.run/dev_key" in line or str(tmp_path / ".run" / "dev_key") in line


def test_a_file_that_is_no_image_fails_alone(stack, shapes, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for image in sorted(shapes.iterdir())[:5]:
        (folder / image.name).write_bytes(image.read_bytes())
    (folder / "notes.txt").write_text("these are not pixels\n")
    out = tmp_path / "results.jsonl"
    done = inferq(stack, "predict", "shapes", folder, "--out", out)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = {Path(line["path"]).name: line for line in read(out)}
    assert len(lines) == 6
    assert lines.pop("notes.txt")["error"]["code"] == "unsupported_format"
    assert all(label_of(name) == line["outputs"][0]["label"] for name, line in lines.items())
    # A few images and no --out: a table, the error in its row.
    table = inferq(stack, "predict", "shapes", folder)
    assert table.returncode == 1
    assert "unsupported_format" in table.stdout and "0000-" in table.stdout


def test_an_unreachable_server_is_exit_3_within_seconds(stack, shapes, tmp_path):
    env_stack = type("S", (), {"base": "http://127.0.0.1:9"})()  # nothing listens there
    done = inferq(env_stack, "predict", "shapes", shapes, timeout=60)
    assert done.returncode == 3
    (line,) = done.stderr.splitlines()
    assert line.startswith("inferq: cannot reach inferq at http://127.0.0.1:9")


def test_usage_errors_are_exit_2(stack, tmp_path):
    assert inferq(stack, "predict", "shapes").returncode == 2
    assert inferq(stack, "predict", "shapes", tmp_path / "missing.png").returncode == 2
    assert inferq(stack, "predict", "shapes", tmp_path, "--retry-failed").returncode == 2


def test_models_and_jobs(stack, shapes):
    models = inferq(stack, "models")
    assert models.returncode == 0 and "shapes" in models.stdout
    listed = json.loads(inferq(stack, "models", "--json").stdout)
    assert "shapes" in {m["name"] for m in listed}

    from inferq import Client

    with Client(stack.base, KEY) as client:
        job = client.submit("shapes", sorted(shapes.iterdir())[0])
    got = inferq(stack, "jobs", "get", job.id, "--wait", "30")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["status"] == "succeeded"
    canceled = inferq(stack, "jobs", "cancel", job.id)  # it had ended: stays as it was
    assert canceled.returncode == 0 and json.loads(canceled.stdout)["status"] == "succeeded"
    missing = inferq(stack, "jobs", "get", "AAAAAAAAAAAAAAAAAAAAAA")
    assert missing.returncode == 1 and "unknown_job" in missing.stderr


def test_batch_submit_wait_then_download_matches_its_counts(stack, shapes, tmp_path):
    folder = tmp_path / "batch"
    (folder / "more").mkdir(parents=True)
    names = []
    for i, image in enumerate(sorted(shapes.iterdir())[:40]):
        name = f"more/{image.name}" if i % 2 else image.name
        (folder / name).write_bytes(image.read_bytes())
        names.append(name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n and then nothing")

    done = inferq(stack, "batch", "submit", "shapes", folder, "--wait")
    assert done.returncode == 1, done.stderr  # one input failed
    batch_id = done.stdout.strip()
    status = json.loads(inferq(stack, "batch", "status", batch_id, "--json").stdout)
    assert status["status"] == "completed"
    assert status["request_counts"] == {"total": 41, "completed": 40, "failed": 1}

    got = inferq(stack, "batch", "download", batch_id, "-o", tmp_path / "files")
    assert got.returncode == 0, got.stderr
    results = read(tmp_path / "files" / "results.jsonl")
    errors = read(tmp_path / "files" / "errors.jsonl")
    assert len(results) == status["request_counts"]["completed"]
    assert len(errors) == status["request_counts"]["failed"]
    assert sorted(r["custom_id"] for r in results) == sorted(names)
    assert [e["custom_id"] for e in errors] == ["broken.png"]
    correct = sum(r["outputs"][0]["label"] == label_of(r["custom_id"]) for r in results)
    assert correct >= 36, correct

    listed = inferq(stack, "batch", "list")
    assert listed.returncode == 0 and batch_id in listed.stdout
    cancel = inferq(stack, "batch", "cancel", batch_id)  # it has ended: stays completed
    assert cancel.returncode == 0 and "completed" in cancel.stdout
