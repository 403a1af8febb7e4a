"""Every ```sh block of README.md and docs/*.md runs as written, against a stack this test starts.

The convention for the docs: a ```sh block holds commands a reader runs, and this test runs
it; output and illustrations use ```console, ```json, ```text (or another language's name).
Every fence names its language. The only ```sh blocks not run are those that start or install
a whole stack: a block whose every command starts with one of STACK_COMMANDS (after any
`NAME=value` assignments and a `.venv/bin/` prefix). A block that mixes such commands with
others fails here: split it.

The test makes the substitutions a reader makes: `localhost:8000` and `127.0.0.1:8000` become
this test's API; `.run/` (where `make run` keeps `dev_key` and `webhook_secret`) becomes this
test's run directory; the webhook receiver's port 9000 becomes a free port. A file's blocks run
in document order as one `bash -e` script from the repository root, with the virtualenv's
`bin` first on PATH, so a block sees the shell variables of the blocks before it in the same
file (each file sets its own `AUTH`). The script runs in its own process group, which is
killed afterwards: that ends anything a block left running in the background.
"""
import base64
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from stack.processes import (BIN, ROOT, RedisServer, free_port, start_api, start_feeder,
                             start_webhook_worker, start_worker)

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Blocks of these commands are not run here; what covers each instead:
STACK_COMMANDS = {
    "make run": "tests/test_run_script.py runs make run's script as a user does",
    "make test": "the suite itself",
    "make chaos": "the suite itself (pytest -m chaos)",
    "make bench": "make bench-quick, run in CI (bench/README.md)",
    "make train-demo": "tests/test_demo_models.py checks the committed demo models",
    "python -m demo.": "tests/test_export_savedmodel.py and tests/test_demo_models.py run them",
    "docker compose": "tests/test_compose.py checks docker-compose.yml and the images",
    "cp .env.example .env": "tests/test_compose.py checks .env.example against the compose file",
    "pip install": "tests/test_layout.py installs the project and checks what it adds",
    "celery -A worker.app worker": "stack.processes.start_worker runs it (tests/test_e2e.py)",
    "celery -A feeder.app worker": "stack.processes.start_feeder runs it (tests/test_batches_e2e.py)",
    "celery -A webhooks.app worker": "stack.processes.start_webhook_worker runs it "
                                     "(tests/test_webhooks.py)",
    "gunicorn": "stack.processes.start_api runs it (tests/test_e2e.py)",
    "sh docker/flower.sh": "tests/test_flower.py runs it against a stack",
}
SERVED_MODELS = ["shapes", "games"]  # what the examples send jobs to
BLOCK_TIMEOUT_S = 600  # for all of one file's blocks
MARK = "@@docs-block"

_FENCE = re.compile(r"^(\s*)```(.*)$")
_ASSIGNMENTS = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*=(?:\"[^\"]*\"|'[^']*'|\S*)\s+)*")


def fenced_blocks(path: Path) -> list[tuple[int, str, str]]:
    """(line number, language, text) of each fenced block, its indentation removed."""
    blocks, lines, i = [], path.read_text().splitlines(), 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, lang, start = match.group(1), match.group(2).strip(), i + 1
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        blocks.append((start, lang, "\n".join(body) + "\n"))
        i += 1
    return blocks


def commands(text: str) -> list[str]:
    """The block's commands, one per logical line (continuations joined), comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    return [line.strip() for line in joined.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def starts_stack(command: str) -> bool:
    bare = _ASSIGNMENTS.sub("", command)
    bare = bare.removeprefix(".venv/bin/")
    return any(bare == c or bare.startswith(c if c.endswith(".") else c + " ")
               for c in STACK_COMMANDS)


def runnable_blocks(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the ```sh blocks this test runs."""
    found = []
    for line, lang, text in fenced_blocks(path):
        if lang == "sh" and not all(starts_stack(c) for c in commands(text)):
            found.append((line, text))
    return found


def test_every_fence_names_its_language_and_no_sh_block_mixes_stack_commands():
    sh_blocks = 0
    for path in DOCS:
        for line, lang, text in fenced_blocks(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            assert lang, f"{where}: name the fence's language (sh, console, json, text, ...)"
            assert lang not in ("bash", "shell", "zsh"), (
                f"{where}: commands go in ```sh blocks (which this test runs), output in "
                "```console")
            if lang == "sh":
                sh_blocks += 1
                cmds = commands(text)
                stack = [starts_stack(c) for c in cmds]
                assert cmds, f"{where}: an empty sh block"
                assert all(stack) or not any(stack), (
                    f"{where}: a block either starts a stack or is run by this test; split "
                    f"it:\n{text}")
    assert sh_blocks and runnable_blocks(ROOT / "README.md")


def anchors(path: Path) -> set[str]:
    """The anchors GitHub makes of a Markdown file's headings."""
    found = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_links_point_to_files_in_the_repository_and_their_headings():
    outside_fences = re.compile(r"```.*?```", re.S)
    for path in [*DOCS, ROOT / "bench" / "README.md"]:
        text = outside_fences.sub("", path.read_text())
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            where = f"{path.relative_to(ROOT)} links to {target}"
            assert linked.is_relative_to(ROOT) and linked.exists(), where
            if anchor:
                assert anchor in anchors(linked), f"{where}: no such heading"


@pytest.fixture(scope="module")
def docs_stack():
    """Redis, the API, a worker and the webhook worker, set up as `make run` sets them up,
    with webhooks to 127.0.0.1 allowed (the local receiver example)."""
    tmp = Path(tempfile.mkdtemp(prefix="inferq-docs-"))
    run_dir = tmp / "run"
    run_dir.mkdir()
    key = "iq_docs_" + secrets.token_urlsafe(24)
    (run_dir / "dev_key").write_text(key + "\n")
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    (run_dir / "webhook_secret").write_text(secret + "\n")
    models = tmp / "models"
    shutil.copytree(ROOT / "models", models)
    redis = RedisServer()
    settings = {"model_repository": str(models), "webhook_secret": secret,
                "webhook_allow_networks": "127.0.0.1/32", "batch_dir": str(tmp / "batches")}
    procs = []
    try:
        api, base = start_api(redis.url, admin_keys=f"{key}=dev", **settings)
        procs.append(api)
        procs.append(start_webhook_worker(redis.url, public_url=base, **settings))
        procs.append(start_worker(redis.url, models=SERVED_MODELS, **settings))
        procs.append(start_feeder(redis.url, **settings))
        yield {"base": base, "run_dir": run_dir, "procs": procs}
    finally:
        for proc in reversed(procs):
            proc.stop()
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def as_run_here(text: str, stack: dict, receiver_port: int) -> str:
    """The block with the reader's substitutions made."""
    host = stack["base"].removeprefix("http://")
    text = re.sub(r"\b(?:localhost|127\.0\.0\.1):8000\b", host, text)
    text = text.replace(".run/", f"{stack['run_dir']}/")
    text = re.sub(r"\b127\.0\.0\.1:9000\b", f"127.0.0.1:{receiver_port}", text)
    return re.sub(r"(webhook_receiver\.py) 9000\b", rf"\g<1> {receiver_port}", text)


def run_script(script: str, log: Path) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERQ_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    # Output to a file, not a pipe: a process left in the background would hold a pipe open.
    with open(log, "w") as out:
        proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            return proc.wait(BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return -1
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)


@pytest.mark.parametrize("doc", [d for d in DOCS if runnable_blocks(d)],
                         ids=lambda d: str(d.relative_to(ROOT)))
def test_sh_blocks_run(doc, docs_stack, tmp_path):
    blocks = runnable_blocks(doc)
    receiver_port = free_port()
    parts = []
    for n, (_, text) in enumerate(blocks):
        parts.append(f"printf '\\n{MARK} {n}@@\\n'\n{as_run_here(text, docs_stack, receiver_port)}")
    parts.append(f"printf '\\n{MARK} end@@\\n'\n")
    log = tmp_path / "blocks.log"
    rc = run_script("\n".join(parts), log)
    output = log.read_text(errors="replace")
    if rc == 0 and f"{MARK} end@@" in output:
        return
    pieces = re.split(rf"\n{MARK} (\d+|end)@@\n", "\n" + output)
    failed = int(pieces[-2]) if len(pieces) > 1 and pieces[-2] != "end" else 0
    line, text = blocks[failed]
    why = "timed out" if rc == -1 else f"exited {rc}"
    pytest.fail(f"{doc.relative_to(ROOT)}:{line}: this sh block {why}:\n{text}\n"
                f"--- its output ---\n{pieces[-1][-6000:]}")
