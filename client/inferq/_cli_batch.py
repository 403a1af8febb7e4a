"""`inferq batch ...`: submit a folder or a file as a batch, follow it, download its files."""
import json

import click
from rich.table import Table

from ._cli_base import FAILED, INTERRUPTED, err, fail, out


@click.group()
def batch():
    """Batch jobs: a folder (or a tar, zip or JSONL file) in, result files out."""


def _summary(b: dict) -> str:
    c = b["request_counts"]
    line = (f"batch {b['id']} ({b['model']} v{b['version']}): {b['status']}, "
            f"{c['completed']} completed, {c['failed']} failed of {c['total']}")
    if b.get("errors"):
        line += "; " + "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e)
                                 for e in b["errors"][:3])
    return line


def _follow(client, batch_id: str):
    """Wait for the batch with a progress display, then end as _ended says."""
    try:
        b = client.batches.wait(batch_id, progress=True)
    except KeyboardInterrupt:
        err.print()
        fail(f"stopped waiting; batch {batch_id} goes on (inferq batch wait {batch_id})",
             INTERRUPTED)
    _ended(b)


def _ended(b: dict):
    """The batch's line; exit 0 when it completed with every input, else 1."""
    if b["status"] != "completed" or b["request_counts"]["failed"]:
        fail(f"{_summary(b)}; inferq batch download {b['id']} writes its files", FAILED)
    err.print(_summary(b))


@batch.command("submit")
@click.argument("model")
@click.argument("path", type=click.Path(exists=True))
@click.option("--wait", is_flag=True, help="follow it until it ends")
@click.option("--version", "model_version", type=click.IntRange(0), metavar="V",
              help="pin a model version")
@click.option("--metadata", metavar="JSON", help="a JSON object kept with the batch")
@click.option("--webhook", metavar="URL", help="a URL for the batch's final event")
@click.pass_obj
def submit(settings, model, path, wait, model_version, metadata, webhook):
    """Start a batch of PATH: a directory (sent as a tar, made on the fly), or a tar, zip or
    JSONL file. Prints the batch's id."""
    try:
        meta = None if metadata is None else json.loads(metadata)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--metadata") from None
    with settings.client() as client:
        b = client.batches.create(model, path, version=model_version, metadata=meta,
                                  webhook=webhook)
        click.echo(b["id"])
        if wait:
            _follow(client, b["id"])


@batch.command("status")
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True, help="the API's JSON")
@click.pass_obj
def status(settings, batch_id, as_json):
    """Where a batch stands: status and counts."""
    with settings.client() as client:
        b = client.batches.get(batch_id)
    click.echo(json.dumps(b, indent=2) if as_json else _summary(b))


@batch.command("wait")
@click.argument("batch_id")
@click.pass_obj
def wait(settings, batch_id):
    """Follow a batch until it ends (a progress bar from its counts)."""
    with settings.client() as client:
        _follow(client, batch_id)


@batch.command("download")
@click.argument("batch_id")
@click.option("-o", "--out", "directory", type=click.Path(file_okay=False), default=".",
              show_default=True, help="the directory for results.jsonl and errors.jsonl")
@click.pass_obj
def download(settings, batch_id, directory):
    """Write a batch's results.jsonl and errors.jsonl (what has finished so far)."""
    with settings.client() as client:
        written = client.batches.download(batch_id, directory)
    for path in written:
        with open(path, "rb") as f:
            n = sum(1 for line in f if line.strip())
        click.echo(f"{path}: {n} lines")


@batch.command("cancel")
@click.argument("batch_id")
@click.pass_obj
def cancel(settings, batch_id):
    """Stop feeding a batch; what finished stays in its files."""
    with settings.client() as client:
        click.echo(_summary(client.batches.cancel(batch_id)))


@batch.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one per batch")
@click.pass_obj
def list_(settings, as_json):
    """Your batches, newest first."""
    table = Table("id", "model", "status", "completed", "failed", "total", "created")
    table.columns[0].no_wrap = True
    with settings.client() as client:
        for b in client.batches.list():
            if as_json:
                click.echo(json.dumps(b))
                continue
            c = b["request_counts"]
            table.add_row(b["id"], b["model"], b["status"], str(c["completed"]),
                          str(c["failed"]), str(c["total"]), (b["created_at"] or "")[:19])
    if not as_json:
        out.print(table)
