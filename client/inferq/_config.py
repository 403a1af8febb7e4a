"""Where the server is and which key to use: arguments first, then INFERQ_URL and
INFERQ_API_KEY; and, when no key is given, where `make run` left its development key."""
import os
from pathlib import Path

DEFAULT_URL = "http://localhost:8000"
DEV_KEY = Path(".run") / "dev_key"


def url(given: str | None = None) -> str:
    return (given or os.environ.get("INFERQ_URL") or DEFAULT_URL).rstrip("/")


def api_key(given: str | None = None) -> str | None:
    """`given`; None: INFERQ_API_KEY; "": no key."""
    key = os.environ.get("INFERQ_API_KEY") if given is None else given
    return key or None


def dev_key_file(start: Path | None = None) -> Path | None:
    """`.run/dev_key` in this directory or one above it (a checkout where `make run` ran)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / DEV_KEY).is_file():
            return folder / DEV_KEY
    return None


def no_key_hint(option: str = "api_key=...") -> str:
    """What to tell someone who sent no key and was refused; `option` names the other way
    to give one."""
    found = dev_key_file()
    hint = f"no API key: set INFERQ_API_KEY or pass {option}"
    if found is None:
        return hint
    try:
        shown = found.relative_to(Path.cwd().resolve())
    except ValueError:
        shown = found
    return (f"{hint}; make run's development key is in {shown} "
            f"(export INFERQ_API_KEY=$(cat {shown}))")
