"""`inferq predict MODEL PATH...`: a table for a few images; for more, a progress display and
JSONL lines, on stdout or appended to --out (whose paths a later run skips)."""
import asyncio
import contextlib
import importlib.util
import json
import sys
from pathlib import Path

import click
from rich.table import Table

from . import _predict, _results
from ._cli_base import FAILED, INTERRUPTED, RETRY_DEADLINE_S, UNREACHABLE, err, fail, out
from ._client import AsyncClient
from ._progress import Meter
from ._walk import files

FEW = 20  # up to this many images: a table at the end, and no progress display
# Connections per AsyncClient: httpcore's pool looks at each of its connections for every
# request it starts and ends, so many images in flight go through several small pools.
PER_CLIENT = 8


def _no_sniffio_lookups():
    """httpcore imports `sniffio` on every request, and where it is not installed each try is
    a search of sys.path; a None entry in sys.modules makes the import fail at once. Done in
    this process only (the command's own), and only where sniffio is absent."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None


@click.command()
@click.argument("model")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--top-k", type=click.IntRange(1), metavar="K",
              help="keep the K best labels per image")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="append JSONL lines to this file; paths already in it are skipped")
@click.option("--concurrency", "-c", type=click.IntRange(1, 1024), default=32,
              show_default=True, help="images in flight at once")
@click.option("--json", "as_json", is_flag=True, help="JSONL lines on stdout, never a table")
@click.option("--version", "model_version", type=click.IntRange(0), metavar="V",
              help="pin a model version")
@click.option("--timeout", type=click.FloatRange(min=1), default=300, show_default=True,
              help="seconds one image may take, retries included")
@click.option("--retry-failed", is_flag=True,
              help="with --out: send again the paths whose line is an error (their old lines "
                   "are removed)")
@click.pass_obj
def predict(settings, model, paths, top_k, out_path, concurrency, as_json, model_version,
            timeout, retry_failed):
    """Run MODEL on image files, or on every file in directories.

    A few images: a table. More: a progress bar on stderr and a JSONL line per image,
    {"path", "outputs"} or {"path", "error"}, on stdout or in --out. Ctrl-C stops
    submitting and keeps what finished: the same command with the same --out goes on from
    there."""
    if retry_failed and out_path is None:
        raise click.UsageError("--retry-failed needs --out")
    _no_sniffio_lookups()
    todo = _todo(paths, out_path, retry_failed)
    table = out_path is None and not as_json and len(todo) <= FEW
    meter = Meter("predict", len(todo)) if len(todo) > FEW else None
    # Lines for a terminal go above the bar; to a file or a pipe, as they are.
    stdout = meter if meter is not None and meter.bar and sys.stdout.isatty() else sys.stdout
    writer = None if table else _results.Writer(out_path, stdout)
    kept = []

    def record(entry):
        (writer.write if writer else kept.append)(entry)
        if meter is not None:
            meter.advance(failed="error" in entry)

    async def go():
        # The model, the key and the server, checked once before any image goes: a server
        # that is not there is said within seconds, not after --timeout.
        async with AsyncClient(settings.url, settings.api_key,
                               retry_deadline_s=RETRY_DEADLINE_S) as probe:
            await probe.model(model)
        async with contextlib.AsyncExitStack() as opened:
            clients = [await opened.enter_async_context(AsyncClient(
                settings.url, settings.api_key, max_connections=PER_CLIENT,
                retry_deadline_s=timeout)) for _ in range(-(-concurrency // PER_CLIENT))]
            with meter or _Quiet():
                return await _predict.predict_all(
                    clients, model, todo, record, concurrency=concurrency,
                    version=model_version, timeout_s=timeout, top_k=top_k, on_stop=stopping)

    def stopping():
        err.print("predict: stopping; the images in flight finish (Ctrl-C again: now)")

    try:
        run = asyncio.run(go())
    finally:
        if writer is not None:
            writer.close()
    if table:
        _table(kept, todo)
    _ended(run, len(todo), out_path)


def _todo(paths, out_path, retry_failed) -> list[str]:
    todo = [str(p) for p in files(paths)]
    if out_path is None:
        return todo
    todo = [p for p in todo if Path(p).resolve() != out_path.resolve()]  # a folder holding it
    lines = _results.read(out_path)
    if retry_failed:
        for path in _results.drop_errors(out_path, lines):
            del lines[path]
    left = [p for p in todo if p not in lines]
    if len(left) < len(todo):
        failed = sum("error" in lines[p] for p in todo if p in lines)
        again = f" ({failed} failed: --retry-failed sends those again)" if failed else ""
        err.print(f"predict: {len(todo) - len(left)} of {len(todo)} already in {out_path}"
                  f"{again}; {len(left)} to go")
    return left


class _Quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def _table(entries, order):
    rank = {p: i for i, p in enumerate(order)}
    table = Table("path", "outputs")
    for entry in sorted(entries, key=lambda e: rank[e["path"]]):
        if "error" in entry:
            e = entry["error"]
            table.add_row(entry["path"], f"[red]error {e['code']}: {e['message']}[/red]")
            continue
        outputs = entry["outputs"]
        if isinstance(outputs, list) and outputs and isinstance(outputs[0], dict):
            shown = ", ".join(f"{o['label']} {o['score']:.3f}" for o in outputs)
        else:
            shown = json.dumps(outputs)
        table.add_row(entry["path"], shown)
    out.print(table)


def _ended(run, total: int, out_path):
    if run.fatal is not None:
        kept = f"; {out_path} holds the {run.done} that finished, and the same command goes " \
               "on from there" if out_path and run.done else ""
        fail(f"{run.fatal}{kept}" if kept else run.fatal, UNREACHABLE)
    if run.interrupted:
        again = (f"the same command goes on from there ({out_path} holds what finished)"
                 if out_path else "run it with --out FILE to keep results and go on later")
        fail(f"stopped after {run.done} of {total}; {again}", INTERRUPTED)
    if run.failed:
        fail(f"{run.failed} of {total} images failed", FAILED)
