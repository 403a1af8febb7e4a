"""Check an uploaded image with Pillow before anything is enqueued, so a worker only ever gets
inputs it can decode."""
import warnings
from io import BytesIO

from PIL import Image, UnidentifiedImageError

from api.errors import ApiError

ACCEPTED = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
ACCEPTED_TEXT = "JPEG, PNG, WebP, BMP or GIF"


def check_image(data: bytes, max_pixels: int, where: str) -> str:
    """Raise ApiError unless `data` is a whole image in an accepted format within `max_pixels`.
    Returns the format. `where` names the input in messages."""
    if not data:
        raise ApiError(400, "empty_input", f"{where} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(BytesIO(data), formats=ACCEPTED)
    except UnidentifiedImageError:
        signed = _signature(data)
        if signed:  # Pillow gave up on its header: a broken file, not another format
            raise ApiError(400, "invalid_image", f"{where} starts as a {signed} image but its "
                           "header cannot be read") from None
        other = _other_format(data)
        if other:
            raise ApiError(415, "unsupported_format", f"{where} is a {other} image; "
                           f"accepted formats are {ACCEPTED_TEXT}") from None
        raise ApiError(415, "unsupported_format", f"{where} is not an image in an accepted "
                       f"format ({ACCEPTED_TEXT})") from None
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(where, str(exc)) from None
    except Exception as exc:  # Pillow raises many types on hostile headers
        raise ApiError(400, "invalid_image", f"{where} cannot be read: {exc}") from None
    width, height = im.size
    if width < 1 or height < 1:
        raise ApiError(400, "invalid_image", f"{where} has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise _too_many_pixels(where, f"{width}x{height} is {width * height} pixels, over the "
                               f"limit of {max_pixels} (INFERQ_MAX_IMAGE_PIXELS)")
    try:
        if im.format in ("JPEG", "MPO"):  # MPO: a JPEG that carries more pictures
            # Decode at 1/8 scale: still reads every byte (a truncated file fails) at a
            # fraction of the cost of a full decode.
            im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
        im.load()
    except Exception as exc:
        raise ApiError(400, "invalid_image", f"{where} is a corrupt or truncated "
                       f"{im.format} image: {exc}") from None
    return im.format


def _too_many_pixels(where: str, detail: str) -> ApiError:
    return ApiError(413, "too_many_pixels", f"{where} is too large: {detail}")


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
