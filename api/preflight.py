"""Check the settings once, before anything starts: every INFERQ_* variable and the API keys,
parsed as the API parses them. `python -m api.preflight` prints one line naming the variable
and what is wrong, and exits 2; `make run` and the API's gunicorn master call `check()`."""
import sys

from api.auth import Keyring
from jobs.settings import Settings, SettingsError, load_settings

PROGRAM = "inferq"  # what its lines start with, as `make run`'s do


def check(environ=None) -> Settings:
    """The settings, with the key lists parsed. Raises SettingsError naming the variable."""
    settings = load_settings(environ)
    Keyring(settings.api_keys, settings.admin_keys)
    return settings


def check_or_exit(environ=None) -> Settings:
    """check(), or one line on stderr and exit status 2: a bad setting is the user's to fix, a
    traceback would only hide the line that says how."""
    try:
        return check(environ)
    except SettingsError as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    check_or_exit()
    print(f"{PROGRAM}: settings and API keys are valid")
