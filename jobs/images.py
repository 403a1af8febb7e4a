"""Check an encoded image with Pillow before it is queued (a submit in the API, a batch input in the
feeder), so a worker gets whole images in accepted formats within the pixel limit."""
import re
import warnings
from io import BytesIO

from PIL import Image, UnidentifiedImageError

from jobs.inputs import InputError
from jobs.jpeg import SOS, header_segments

ACCEPTED = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
ACCEPTED_TEXT = "JPEG, PNG, WebP, BMP or GIF"


def check_image(data: bytes, max_pixels: int, where: str) -> str:
    """Raise InputError unless `data` is a whole image in an accepted format within `max_pixels`.
    Returns the format. `where` names the input in messages."""
    if not data:
        raise InputError(400, "empty_input", f"{where} is empty")
    frame = _plain_jpeg_frame(data)
    im = _open(data, where) if frame is None else None
    fmt = "JPEG" if im is None else im.format
    _check_pixels(*(frame[:2] if im is None else im.size), max_pixels, where)
    try:
        if fmt in ("JPEG", "MPO"):  # MPO: a JPEG that carries more pictures
            # Its structure, not its pixels: decoding (even at 1/8 scale) reads every
            # compressed bit, about a millisecond for a photo, on every submit's path. A
            # truncated file cannot reach its end marker; the worker decodes it anyway.
            _check_jpeg_scans(data, frame[2] if im is None else im.fp.tell())
        else:
            im.load()
    except Exception as exc:
        raise InputError(400, "invalid_image", f"{where} is a corrupt or truncated {fmt} image: "
                       f"{exc}") from None
    return fmt


def _open(data: bytes, where: str) -> Image.Image:
    """Pillow's reading of the header, its failures turned into the API's answers."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(BytesIO(data), formats=ACCEPTED)
    except UnidentifiedImageError:
        signed = _signature(data)
        if signed:  # Pillow gave up on its header: a broken file, not another format
            raise InputError(400, "invalid_image", f"{where} starts as a {signed} image but its "
                           "header cannot be read") from None
        other = _other_format(data)
        if other:
            raise InputError(415, "unsupported_format", f"{where} is a {other} image; "
                           f"accepted formats are {ACCEPTED_TEXT}") from None
        raise InputError(415, "unsupported_format", f"{where} is not an image in an accepted "
                       f"format ({ACCEPTED_TEXT})") from None
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(where, str(exc)) from None
    except Exception as exc:  # Pillow raises many types on hostile headers
        raise InputError(400, "invalid_image", f"{where} cannot be read: {exc}") from None


def _check_pixels(width: int, height: int, max_pixels: int, where: str):
    if width < 1 or height < 1:
        raise InputError(400, "invalid_image", f"{where} has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise _too_many_pixels(where, f"{width}x{height} is {width * height} pixels, over the "
                               f"limit of {max_pixels} (INFERQ_MAX_IMAGE_PIXELS)")


# Segments a plain JPEG holds before its first scan: APPn, comments, quantisation and Huffman
# tables, the restart interval; and its frame header, baseline, extended or progressive.
_TABLES = frozenset([*range(0xE0, 0xF0), 0xFE, 0xDB, 0xC4, 0xDD])
_PLAIN_FRAMES = frozenset([0xC0, 0xC1, 0xC2])


def _plain_jpeg_frame(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, where the first scan's data starts) of a plain 8-bit JPEG (1 or 3
    components), read by walking its segments; None for anything else, which Pillow then opens
    and judges. Pillow's JPEG plugin parses every table in Python: about a tenth of a submit's
    CPU for a small photo."""
    if not data.startswith(b"\xff\xd8\xff"):
        return None
    frame = None
    for marker, start, end in header_segments(data):
        if marker == SOS:
            return (*frame, end) if frame else None
        if marker in _PLAIN_FRAMES and frame is None:
            components = data[start + 5] if end - start >= 6 else 0
            if components not in (1, 3) or data[start] != 8 or end - start != 6 + 3 * components:
                return None
            height, width = (int.from_bytes(data[start + i:start + i + 2], "big") for i in (1, 3))
            if not 0 < width * height <= 2 * Image.MAX_IMAGE_PIXELS:
                return None  # no pixels, or Pillow's own refusal (whatever the setting)
            frame = (width, height)
        elif marker not in _TABLES or marker == 0xDB and not _whole_tables(data[start:end]):
            return None
    return None


def _whole_tables(dqt: bytes) -> bool:
    """Whether a DQT segment's quantisation tables are all whole, as Pillow requires."""
    while dqt:
        size = 65 if dqt[0] >> 4 == 0 else 129  # 8- or 16-bit entries
        if len(dqt) < size:
            return False
        dqt = dqt[size:]
    return True


# A marker inside compressed JPEG data: 0xFF followed by anything but 0x00 (a stuffed 0xFF
# byte), a restart marker (0xD0-0xD7) or another 0xFF (fill).
_SCAN_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_EOI, _STANDALONE = 0xD9, (0x01, 0xD8)


def _check_jpeg_scans(data: bytes, pos: int):
    """Raise ValueError unless the compressed data from `pos` (just after the first scan's
    header) runs, through any further tables and scans (progressive files), to the end-of-image
    marker. Entropy-coded data cannot hold that marker, so a truncated file never has it."""
    while True:
        found = _SCAN_MARKER.search(data, pos)
        if found is None:
            raise ValueError("the file ends before its image data does")
        at = found.start()
        marker = data[at + 1]
        if marker == _EOI:
            return
        if marker in _STANDALONE:
            pos = at + 2
            continue
        length = int.from_bytes(data[at + 2:at + 4], "big")
        if length < 2 or at + 2 + length > len(data):
            raise ValueError(f"a segment (marker 0xFF{marker:02X}) runs past the end of the file")
        pos = at + 2 + length


def _too_many_pixels(where: str, detail: str) -> InputError:
    return InputError(413, "too_many_pixels", f"{where} is too large: {detail}")


# How each accepted format's files begin (WebP: "RIFF", a length, then "WEBP").
_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"GIF87a": "GIF",
               b"GIF89a": "GIF", b"BM": "BMP"}


def _signature(data: bytes) -> str | None:
    """The accepted format whose signature `data` starts with, if any."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _SIGNATURES.items() if data.startswith(magic)), None)


def _other_format(data: bytes) -> str | None:
    """The name of a format Pillow knows but inferq does not accept (TIFF, ...), if any."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Image.open(BytesIO(data)).format
    except Exception:
        return None
