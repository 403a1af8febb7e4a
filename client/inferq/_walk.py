"""The files under the paths a user names: each file as given, each directory walked (hidden
files and folders skipped, and Python's __pycache__), in a stable order."""
import os
from pathlib import Path


def walk(directory: Path):
    """(path, its name relative to `directory` with `/` separators) of each regular file
    under `directory`, sorted; names starting with "." are skipped, and __pycache__."""
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for name in sorted(files):
            path = Path(root) / name
            if not name.startswith(".") and path.is_file():
                yield path, path.relative_to(directory).as_posix()


def files(paths) -> list[Path]:
    """Every file the paths name: files as they are, directories walked. A path that does not
    exist raises FileNotFoundError."""
    found = []
    for given in map(Path, paths):
        if given.is_dir():
            found.extend(path for path, _ in walk(given))
        elif given.is_file():
            found.append(given)
        else:
            raise FileNotFoundError(f"no such file or directory: {given}")
    return found
