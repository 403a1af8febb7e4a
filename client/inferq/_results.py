"""The JSONL file `inferq predict --out` writes: a line per path, `{"path", "outputs"}` or
`{"path", "error"}`. Read again on the next run, so that the paths in it are skipped."""
import json
import os
from pathlib import Path


def read(path: Path) -> dict[str, dict]:
    """path -> its last line, for every whole line of the file (none if it does not exist).
    A line cut short by a crash is left out, and so is its path."""
    found = {}
    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError:
        return found
    with f:
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                found[entry["path"]] = entry
    return found


def drop_errors(path: Path, lines: dict[str, dict]) -> set[str]:
    """Rewrite the file without its error lines (one line per path is kept); the paths whose
    lines were dropped."""
    failed = {p for p, entry in lines.items() if "error" in entry}
    if failed:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as out:
            for p, entry in lines.items():
                if p not in failed:
                    out.write(json.dumps(entry) + "\n")
        os.replace(tmp, path)
    return failed


class Writer:
    """Appends lines, each flushed as it is written: what finished is kept if the run stops."""

    def __init__(self, path: Path | None, stream=None):
        self.path = path
        if path is None:
            self.out = stream
        else:
            self.out = open(path, "a+", encoding="utf-8")
            self._end_line()

    def _end_line(self):
        """A line cut short by a crash ends here, so the next line starts on its own."""
        size = self.out.seek(0, os.SEEK_END)
        if size:
            self.out.seek(size - 1)
            if self.out.read(1) != "\n":
                self.out.write("\n")

    def write(self, entry: dict):
        self.out.write(json.dumps(entry) + "\n")
        self.out.flush()

    def close(self):
        if self.path is not None:
            self.out.close()
