"""The `inferq` command line. Exit status: 0 all succeeded, 1 some inputs failed (or what was
asked for failed), 2 a usage error, 3 the server cannot be reached or refuses the key. Errors
are one line on stderr, never a traceback."""
import json

import click
from rich.table import Table

from . import _config
from ._cli_base import FAILED, INTERRUPTED, USAGE, Settings, err, fail, fail_on, out
from ._cli_batch import batch
from ._cli_predict import predict
from .errors import InferqError, WaitTimeout


class _Group(click.Group):
    """Every command's errors as one line and an exit status."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except InferqError as exc:
            fail_on(exc)
        except OSError as exc:  # a path that is not there, not readable, not writable
            fail(f"{exc.strerror}: {exc.filename}" if exc.filename else exc, USAGE)
        except KeyboardInterrupt:
            err.print()
            fail("interrupted", INTERRUPTED)
        except Exception as exc:  # a bug of ours: still one line
            fail(f"unexpected error ({type(exc).__name__}): {exc}", FAILED)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", metavar="URL",
              help=f"the API (default: INFERQ_URL, else {_config.DEFAULT_URL})")
@click.option("--api-key", metavar="KEY", help="the API key (default: INFERQ_API_KEY)")
@click.version_option(package_name="inferq-client", prog_name="inferq")
@click.pass_context
def main(ctx, url, api_key):
    """inferq's command line: predict images, run batches, look at jobs.

    Exit status: 0 all succeeded, 1 some inputs failed, 2 a usage error, 3 the server
    cannot be reached or refuses the key."""
    ctx.obj = Settings(_config.url(url), _config.api_key(api_key))


main.add_command(predict)
main.add_command(batch)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="the API's JSON")
@click.pass_obj
def models(settings, as_json):
    """The models, their versions and the workers serving them."""
    with settings.client() as client:
        found = client.models()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    table = Table("model", "state", "default", "versions", "kind", "workers", "backlog")
    for m in found:
        versions = ", ".join(f"{v['version']} {v['state']}" for v in m.get("versions", []))
        default = m.get("default_version")
        table.add_row(m["name"], m["state"], "-" if default is None else str(default), versions,
                      str(m.get("kind", "")), str(m.get("workers", "")),
                      str(m.get("backlog", "")))
    out.print(table)


@main.group()
def jobs():
    """Look at or cancel a job."""


@jobs.command("get")
@click.argument("job_id")
@click.option("--wait", type=click.FloatRange(min=0), metavar="S",
              help="wait up to S seconds for it to end")
@click.pass_obj
def jobs_get(settings, job_id, wait):
    """A job's JSON."""
    with settings.client() as client:
        job = client.get_job(job_id)
        if wait:
            try:
                job.wait(wait)
            except WaitTimeout:
                job.refresh()
    click.echo(json.dumps(job.data, indent=2))


@jobs.command("cancel")
@click.argument("job_id")
@click.pass_obj
def jobs_cancel(settings, job_id):
    """Cancel a job (one that already ended stays as it is); its JSON."""
    with settings.client() as client:
        job = client.get_job(job_id).cancel()
    click.echo(json.dumps(job.data, indent=2))
