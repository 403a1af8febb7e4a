"""A batch's input file, streamed from the request to a file on disk a chunk at a time, never
held whole in memory: the multipart field `input` (through Werkzeug's sans-IO multipart
decoder, which hands over each part's data as it arrives), or the whole body. Its format is
read from its first bytes as they arrive, so a file of the wrong kind is refused before the
rest is read."""
from dataclasses import dataclass

from flask import request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from api.errors import ApiError
from jobs.batchfile import sniff

CHUNK = 256 * 1024
SNIFF_BYTES = 512
# A body that is the file itself, whatever the subtype says: the content decides the format.
RAW_TYPES = ("application/x-tar", "application/gzip", "application/zip", "application/jsonl",
             "application/x-ndjson", "application/octet-stream")
FORMATS = "a tar (or .tar.gz) or zip archive of images, or a JSONL file"
FIELD = "input"
# The form's other parts are small options: their bytes together, and the parts there may be.
MAX_OPTION_BYTES = 64 * 1024
MAX_PARTS = 64
# Multipart framing (a part's headers, the preamble and epilogue) the decoder may hold.
MAX_FRAMING_BYTES = 64 * 1024
# What a multipart body adds to its file: the limit on the body is the file's plus this.
FORM_SLACK_BYTES = MAX_OPTION_BYTES + MAX_PARTS * 1024


@dataclass
class Received:
    size: int
    format: str  # jobs.batchfile's TAR, TAR_GZ, ZIP or JSONL
    fields: MultiDict  # the form's text fields (none for a raw body)


def receive(out, max_bytes: int) -> Received:
    """Write the request's file to the open binary file `out`, at most `max_bytes` of it.
    Raises ApiError: 400 (no file, empty, a broken form), 413 (too large), 415 (not a format
    a batch takes, or a body type that carries none)."""
    request.max_content_length = max_bytes + FORM_SLACK_BYTES
    sink = _Sink(out, max_bytes)
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        fields = _multipart(_stream(max_bytes), sink, request.mimetype_params.get("boundary"))
    elif mimetype in RAW_TYPES:
        stream, fields = _stream(max_bytes), MultiDict()
        # Never more than one byte past the limit: that byte is what says it is over.
        while chunk := _read(stream, max_bytes, min(CHUNK, max_bytes + 1 - sink.size)):
            sink.write(chunk)
    else:
        raise ApiError(415, "unsupported_media_type", f"send the file ({FORMATS}) as the "
                       f"multipart field '{FIELD}', or as the body with Content-Type "
                       f"{', '.join(RAW_TYPES)}")
    return Received(sink.finish(), sink.format, fields)


class _Sink:
    """Writes the file's chunks, counts them against the limit, and names the format from
    its first bytes."""

    def __init__(self, out, max_bytes: int):
        self.out, self.max_bytes = out, max_bytes
        self.size, self.head, self.format = 0, b"", None

    def write(self, data: bytes):
        if not data:
            return
        self.size += len(data)
        if self.size > self.max_bytes:
            raise _too_large(self.max_bytes)
        if self.format is None:
            self.head += data[:SNIFF_BYTES - len(self.head)]
            if len(self.head) >= SNIFF_BYTES:
                self._sniff()
        self.out.write(data)

    def _sniff(self):
        self.format = sniff(self.head)
        if self.format is None:
            raise ApiError(415, "unsupported_media_type", f"the file is not {FORMATS} (its "
                           "content says so, whatever its name); send one of those")

    def finish(self) -> int:
        if self.size == 0:
            raise ApiError(400, "empty_input", f"the file is empty; send {FORMATS}")
        if self.format is None:  # shorter than SNIFF_BYTES
            self._sniff()
        return self.size


def _stream(max_bytes: int):
    try:
        return request.stream  # a Content-Length over the limit is refused here, unread
    except RequestEntityTooLarge:
        raise _too_large(max_bytes) from None


def _read(stream, max_bytes: int, size: int = CHUNK) -> bytes:
    try:
        return stream.read(size)
    except RequestEntityTooLarge:
        raise _too_large(max_bytes) from None
    except (ClientDisconnected, OSError):
        raise ApiError(400, "incomplete_upload", "the upload ended before the whole body "
                       "came; send it again") from None


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "file_too_large", f"the file is larger than the limit of {max_bytes} "
                    "bytes (INFERQ_BATCH_MAX_BYTES); split it into several batches")


def _broken(why: str) -> ApiError:
    return ApiError(400, "invalid_multipart", f"the multipart body cannot be read: {why}")


def _multipart(stream, sink: _Sink, boundary: str | None) -> MultiDict:
    """Stream the part named `input` into `sink`; the other parts are text options, kept."""
    try:
        decoder = MultipartDecoder(boundary.encode("ascii"))
    except (AttributeError, UnicodeEncodeError):
        raise _broken("its Content-Type has no boundary (or one that is not ASCII)") from None
    fields, option_bytes, parts, found = MultiDict(), 0, 0, False
    name, text = None, None  # the current part: its name, and its bytes when it is an option
    while True:
        chunk = _read(stream, sink.max_bytes)
        decoder.receive_data(chunk or None)
        while True:
            try:
                event = decoder.next_event()
            except ValueError as exc:  # cut short, or a malformed part (a header not UTF-8)
                raise _broken(str(exc)) from None
            if isinstance(event, (NeedData, Epilogue)):
                break
            if isinstance(event, (Field, File)):
                parts += 1
                if parts > MAX_PARTS:
                    raise _broken(f"it has more than {MAX_PARTS} parts")
                name, text = event.name, None if event.name == FIELD else []
                if name == FIELD:
                    if found:
                        raise ApiError(400, "too_many_files", f"send one file in the field "
                                       f"'{FIELD}'; a batch takes one file")
                    found = True
            elif isinstance(event, Data):
                if text is None:
                    sink.write(event.data)
                else:
                    option_bytes += len(event.data)
                    if option_bytes > MAX_OPTION_BYTES:
                        raise _broken(f"the fields other than '{FIELD}' are options and may "
                                      f"have {MAX_OPTION_BYTES} bytes together")
                    text.append(event.data)
                if not event.more_data and text is not None and name:
                    fields.add(name, b"".join(text).decode("utf-8", "replace"))
        # What the decoder holds between chunks is framing: a part's headers, an epilogue.
        if len(decoder.buffer) > MAX_FRAMING_BYTES:
            raise _broken("a part's headers (or the text around the parts) are too long")
        if isinstance(event, Epilogue) or not chunk:
            break
    if not found:
        raise ApiError(400, "no_input", f"send the file ({FORMATS}) in the multipart field "
                       f"'{FIELD}'")
    return fields
