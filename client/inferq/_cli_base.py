"""What every `inferq` command shares: the exit statuses, the consoles, the settings from
--url/--api-key, and errors as one line."""
import click
from rich.console import Console

from . import _config
from ._client import Client
from .errors import InferqError, Unauthorized, is_fatal

OK, FAILED, USAGE, UNREACHABLE, INTERRUPTED = 0, 1, 2, 3, 130
# How long one request of a command keeps retrying while the server is away or busy: long
# enough to ride out an API restart, short enough that a server that is not there is said
# soon. `predict` gives each image its --timeout.
RETRY_DEADLINE_S = 15.0
out = Console(highlight=False, soft_wrap=True)
if not out.is_terminal:  # a pipe or a file: tables as wide as they need, never cut
    out.width = 1000
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Settings:
    def __init__(self, url: str, api_key: str | None):
        self.url, self.api_key = url, api_key

    def client(self, **options) -> Client:
        return Client(self.url, self.api_key, **{"retry_deadline_s": RETRY_DEADLINE_S,
                                                 **options})


def fail(message, status: int):
    """One line on stderr, then exit with `status`."""
    ctx = click.get_current_context()
    if isinstance(message, Unauthorized) and not ctx.find_root().obj.api_key:
        message = _config.no_key_hint("--api-key")
    err.print(f"inferq: {message}", markup=False)
    ctx.exit(status)


def fail_on(error: InferqError):
    fail(error, UNREACHABLE if is_fatal(error) else FAILED)
