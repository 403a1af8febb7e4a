"""A batch's upload: the file's bytes as a stream, and its options as query parameters.

A directory is sent as a tar stream made on the fly, a member per file named by its path in
the directory (its `custom_id`); nothing is copied to disk first. A tar, zip or JSONL file is
streamed as it is."""
import json
import tarfile
from pathlib import Path

from ._walk import walk

CHUNK = 256 * 1024
_TYPES = {".tar": "application/x-tar", ".tgz": "application/gzip", ".gz": "application/gzip",
          ".zip": "application/zip", ".jsonl": "application/jsonl",
          ".ndjson": "application/x-ndjson"}


class _Pipe:
    """A write-only file that keeps what tarfile writes until it is taken."""

    def __init__(self):
        self.chunks = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def take(self):
        chunks, self.chunks = self.chunks, []
        return chunks


def tar_stream(directory: Path):
    """The bytes of a tar of `directory`'s files, a member at a time."""
    pipe = _Pipe()
    with tarfile.open(fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path, name in walk(directory):
            with open(path, "rb") as f:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = path.stat().st_size, 0, 0o644
                tar.addfile(info, f)
            yield from pipe.take()
    yield from pipe.take()


def file_stream(path: Path):
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def upload(path) -> tuple[dict, object]:
    """(headers, a generator of the body's bytes) for a batch made of `path`."""
    path = Path(path)
    if path.is_dir():
        return {"Content-Type": "application/x-tar"}, tar_stream(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file or directory: {path}")
    kind = _TYPES.get(path.suffix.lower(), "application/octet-stream")
    return {"Content-Type": kind}, file_stream(path)


def options(version=None, webhook=None, webhook_events_filter=None, metadata=None,
            expires_after_s=None) -> dict:
    """The batch's options, as query parameters (the body is the file itself). `metadata` goes
    in the URL: keep it to a few hundred bytes."""
    events = webhook_events_filter
    if isinstance(events, (list, tuple, set)):
        events = ",".join(events)
    given = {"version": version, "webhook": webhook, "webhook_events_filter": events,
             "metadata": None if metadata is None else json.dumps(metadata),
             "expires_after_s": expires_after_s}
    return {k: v for k, v in given.items() if v is not None}
