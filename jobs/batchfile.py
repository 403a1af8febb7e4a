"""A batch's input file on disk: its format (read from its content, never its name), and its
inputs one by one from a cursor, within limits. No Redis here: the API sniffs an upload with
it, the feeder reads the file a window at a time and resumes from a saved cursor.

Archive member names are only ids: nothing is ever written to a path taken from an upload."""
import gzip
import json
import tarfile
import zipfile
from dataclasses import dataclass

TAR, TAR_GZ, ZIP, JSONL = "tar", "tar.gz", "zip", "jsonl"
MAX_CUSTOM_ID = 512  # characters


class FileProblem(ValueError):
    """The file as a whole cannot be used; `problems` are [{code, message, line}]."""

    def __init__(self, problems: list[dict]):
        super().__init__("; ".join(p["message"] for p in problems[:3]))
        self.problems = problems


@dataclass(frozen=True)
class Limits:
    max_inputs: int
    max_input_bytes: int  # one input's bytes (an archive member, a JSONL line)
    max_total_bytes: int  # the archive's members together, uncompressed


@dataclass
class Item:
    """One input. `data`: an archive member's bytes; `fields`: a JSONL line's object (the
    feeder turns it into the model's input); `error` (code, message): this input fails alone."""
    index: int
    custom_id: str
    data: bytes | None = None
    fields: dict | None = None
    error: tuple[str, str] | None = None
    line: int | None = None  # JSONL: its line number; archives: the member's position


def sniff(head: bytes) -> str | None:
    """The format of a file that starts with `head` (its first 512 bytes or more)."""
    if head[:2] == b"\x1f\x8b":
        return TAR_GZ
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return ZIP
    if head[257:262] == b"ustar":
        return TAR
    if head.lstrip(b" \t\r\n").removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")[:1] == b"{":
        return JSONL
    return None


def prepare(path: str, fmt: str, out_path: str, limits: Limits) -> tuple[str, str]:
    """A form of the file that can be read from any cursor: a .tar.gz is unpacked to a plain
    tar at `out_path` (at most `max_total_bytes` of it). Returns (path, format)."""
    if fmt != TAR_GZ:
        return path, fmt
    budget = limits.max_total_bytes + 1024 * 1024  # tar headers and padding
    try:
        with gzip.open(path, "rb") as src, open(out_path, "wb") as dst:
            copied = 0
            while chunk := src.read(1024 * 1024):
                copied += len(chunk)
                if copied > budget:
                    raise FileProblem([{"code": "too_large", "line": None, "message":
                                        f"the archive unpacks to more than "
                                        f"{limits.max_total_bytes} bytes"}])
                dst.write(chunk)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise FileProblem([{"code": "invalid_file", "line": None,
                            "message": f"the gzip stream cannot be read: {exc}"}]) from None
    with open(out_path, "rb") as f:
        if sniff(f.read(512)) != TAR:
            raise FileProblem([{"code": "unsupported_media_type", "line": None,
                                "message": "a gzip file must hold a tar archive"}])
    return out_path, TAR


START = (0, 0, 0)


def items(path: str, fmt: str, limits: Limits, cursor: tuple[int, int, int] = START):
    """(Item, cursor after it) for each input from `cursor` on. A cursor is (where in the
    file, the next input's index, lines or members read so far). Raises FileProblem when the
    file itself cannot be read on."""
    reader = {TAR: _tar_items, ZIP: _zip_items, JSONL: _jsonl_items}[fmt]
    return reader(path, limits, *cursor)


def scan(path: str, fmt: str, limits: Limits) -> int:
    """Read the whole file once: the number of inputs. Raises FileProblem for a file that is
    not to be run at all: unreadable, over the limits, or with a custom_id used twice."""
    seen: dict[str, int] = {}
    problems, total, size = [], 0, 0
    for item, _ in items(path, fmt, limits):
        total += 1
        size += len(item.data or b"")
        if item.custom_id in seen:
            problems.append({"code": "duplicate_custom_id", "line": item.line,
                             "message": f"custom_id {item.custom_id!r} is used again (first at "
                                        f"{_where(fmt, seen[item.custom_id])})"})
        else:
            seen[item.custom_id] = item.line
        if len(problems) >= 100:
            break
    if total > limits.max_inputs:
        problems.insert(0, {"code": "too_many_inputs", "line": None, "message":
                            f"the file holds {total} inputs; the limit is {limits.max_inputs} "
                            f"(INFERQ_BATCH_MAX_INPUTS)"})
    if size > limits.max_total_bytes:
        problems.insert(0, {"code": "too_large", "line": None, "message":
                            f"the archive's files add up to {size} bytes; the limit is "
                            f"{limits.max_total_bytes}"})
    if total == 0:
        problems.append({"code": "no_input", "line": None, "message": "the file holds no input"})
    if problems:
        raise FileProblem(problems)
    return total


def _where(fmt: str, line) -> str:
    return f"line {line}" if fmt == JSONL else f"member {line}"


def _member_id(name: str) -> str:
    # tarfile and zipfile decode names; bytes that are not UTF-8 come back as surrogates.
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _member_item(index: int, position: int, name: str, read, size: int, limits) -> Item:
    custom_id = _member_id(name)
    item = Item(index, custom_id[:MAX_CUSTOM_ID], line=position)
    if len(custom_id) > MAX_CUSTOM_ID:
        item.error = ("invalid_custom_id", f"the member's name is longer than {MAX_CUSTOM_ID} "
                      "characters")
    elif size > limits.max_input_bytes:
        item.error = ("too_large", f"the file is {size} bytes; one input may have at most "
                      f"{limits.max_input_bytes}")
    else:
        item.data = read()
        if len(item.data) > limits.max_input_bytes:  # a size the header understated
            item.data, item.error = None, ("too_large", "the file is larger than its header says")
    return item


def _tar_items(path: str, limits: Limits, offset: int, index: int, position: int):
    with open(path, "rb") as f:
        f.seek(offset)
        try:
            # TarFile reads members from the file's position, so a saved offset resumes.
            archive = tarfile.TarFile(fileobj=f, mode="r")
        except tarfile.ReadError as exc:
            if offset and "empty file" in str(exc):
                return  # the end of the archive
            raise FileProblem([{"code": "invalid_file", "line": None,
                                "message": f"the tar archive cannot be read: {exc}"}]) from None
        while True:
            try:
                member = archive.next()
            except tarfile.TarError as exc:
                raise FileProblem([{"code": "invalid_file", "line": index, "message":
                                    f"the tar archive is broken after input {index}: {exc}"}]
                                  ) from None
            if member is None:
                _check_end(f, offset)
                return
            position += 1
            offset = member.offset_data + -(-member.size // 512) * 512
            if member.isdir():
                continue
            if not member.isfile():
                item = Item(index, _member_id(member.name)[:MAX_CUSTOM_ID], line=position,
                            error=("invalid_input", "the member is a link or device, not a "
                                                    "file"))
            else:
                item = _member_item(index, position, member.name,
                                    lambda m=member: _tar_read(archive, m, limits),
                                    member.size, limits)
            index += 1
            archive.members.clear()  # keep memory flat over a large archive
            yield item, (offset, index, position)


def _tar_read(archive, member, limits) -> bytes:
    try:
        return archive.extractfile(member).read(limits.max_input_bytes + 1)
    except tarfile.TarError as exc:
        raise FileProblem([{"code": "invalid_file", "line": None, "message":
                            f"the tar archive is cut short in {member.name!r}: {exc}"}]) from None


def _check_end(f, offset: int):
    """tarfile takes a header cut short for the archive's end: a file cut mid-header fails."""
    f.seek(offset)
    rest = f.read(512)
    if 0 < len(rest) < 512 and rest.strip(b"\0"):
        raise FileProblem([{"code": "invalid_file", "line": None,
                            "message": "the tar archive is cut short"}])


def _zip_items(path: str, limits: Limits, position: int, index: int, _members: int):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FileProblem([{"code": "invalid_file", "line": None,
                            "message": f"the zip archive cannot be read: {exc}"}]) from None
    with archive:
        members = archive.infolist()
        for position in range(position, len(members)):
            member = members[position]
            if member.is_dir():
                continue

            def read(m=member):
                try:
                    with archive.open(m) as f:
                        return f.read(limits.max_input_bytes + 1)
                except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError,
                        EOFError) as exc:
                    raise _Unreadable(str(exc)) from None

            try:
                item = _member_item(index, position + 1, member.filename, read,
                                    member.file_size, limits)
            except _Unreadable as exc:
                item = Item(index, _member_id(member.filename)[:MAX_CUSTOM_ID],
                            line=position + 1,
                            error=("invalid_input", f"the member cannot be unpacked: {exc}"))
            index += 1
            yield item, (position + 1, index, position + 1)


class _Unreadable(Exception):
    pass


def _jsonl_items(path: str, limits: Limits, offset: int, index: int, line_no: int):
    with open(path, "rb") as f:
        f.seek(offset)
        while True:
            raw = f.readline(limits.max_input_bytes + 1)
            if not raw:
                return
            line_no += 1
            if len(raw) > limits.max_input_bytes and not raw.endswith(b"\n"):
                while (rest := f.readline(1024 * 1024)) and not rest.endswith(b"\n"):
                    pass
                item = Item(index, f"line-{line_no}", line=line_no, error=(
                    "too_large", f"the line is longer than {limits.max_input_bytes} bytes"))
            elif not raw.strip():
                continue
            else:
                item = _jsonl_item(index, line_no, raw)
            index += 1
            yield item, (f.tell(), index, line_no)



def _jsonl_item(index: int, line_no: int, raw: bytes) -> Item:
    item = Item(index, f"line-{line_no}", line=line_no)
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        item.error = ("invalid_json", f"line {line_no} is not JSON: {exc}")
        return item
    if not isinstance(obj, dict):
        item.error = ("invalid_input", f"line {line_no} must be a JSON object")
        return item
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID:
        item.error = ("invalid_custom_id", f"line {line_no} needs a \"custom_id\": a string of "
                      f"1 to {MAX_CUSTOM_ID} characters")
        return item
    item.custom_id, item.fields = custom_id, obj
    return item

