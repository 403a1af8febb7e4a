"""Turn encoded image bytes into the uint8 array a model takes. Pillow, simplejpeg, NumPy and
OpenCV (no TF).

Normalisation (scale to [0, 1], [-1, 1], ...) happens inside the compiled model function, so the
decode threads hand over compact uint8 arrays and the model thread does the float work in-graph.
"""
from io import BytesIO

import cv2
import numpy as np
import simplejpeg
from PIL import ExifTags, Image, ImageOps

from jobs.jpeg import SOS, header_segments

# The decode threads already run side by side; OpenCV's own thread pool would take cores from
# the model.
cv2.setNumThreads(1)

# The formats the API accepts; the worker opens nothing else.
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
MODES = {"rgb": ("RGB", 3), "grayscale": ("L", 1)}


class DecodeError(ValueError):
    """The input could not be turned into a model input."""


def decode_image(data: bytes, size: tuple[int, int], color_mode: str = "rgb") -> np.ndarray:
    """Decode `data` and resize it to `size` (width, height); returns HxWxC uint8."""
    pil_mode, channels = MODES[color_mode]
    arr = _plain_jpeg(data, size, channels)
    if arr is not None:
        return arr
    try:
        im = Image.open(BytesIO(data), formats=FORMATS)
        if im.format in ("JPEG", "MPO"):
            # Let the JPEG decoder scale down by 1/2, 1/4 or 1/8 while decoding: much cheaper
            # than decoding full size and resizing. draft() never goes below the requested size
            # of the stored picture, which is turned a quarter for EXIF orientations 5 to 8.
            turned = _orientation(im) in (5, 6, 7, 8)
            im.draft(pil_mode, tuple(reversed(size)) if turned else tuple(size))
        im.load()
        _apply_orientation(im)
        arr = _resize(_to_mode(im, pil_mode), size)
    except Exception as exc:  # Pillow raises many types on hostile bytes; all mean "cannot"
        raise DecodeError(f"cannot decode image: {exc}") from exc
    if channels == 1:
        arr = arr[..., None]
    return arr


def _plain_jpeg(data: bytes, size: tuple[int, int], channels: int) -> np.ndarray | None:
    """A YCbCr or grayscale JPEG stored upright, decoded in one call to libjpeg-turbo at the
    scale Pillow's draft() picks (so the pixels are the same), or None: then Pillow decodes
    it. Pillow's path runs a page of Python (markers, EXIF, draft) before the decoder starts,
    which costs a third of a photo's decode; every other JPEG, and anything simplejpeg
    refuses, goes that way."""
    if not data.startswith(b"\xff\xd8"):
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        if colorspace not in ("YCbCr", "Gray") or jpeg_orientation(data) != 1:
            return None
        ratio = min(width // size[0], height // size[1])
        scale = next((s for s in (8, 4, 2) if ratio >= s), 1)
        arr = simplejpeg.decode_jpeg(data, colorspace="RGB" if channels == 3 else "GRAY",
                                     min_width=-(-width // scale),
                                     min_height=-(-height // scale))
    except ValueError:  # strict: libjpeg's warnings about damaged data raise too
        return None
    if arr.shape[2] != channels or arr.shape[1::-1] != (-(-width // scale), -(-height // scale)):
        return None
    arr = arr[..., 0] if channels == 1 else arr
    if arr.shape[1] // size[0] > 1 or arr.shape[0] // size[1] > 1:
        arr = _resize(Image.fromarray(arr), size)  # a long side still to reduce (rare)
    elif arr.shape[1::-1] != tuple(size):
        arr = cv2.resize(arr, tuple(size), interpolation=cv2.INTER_LINEAR)
    return arr[..., None] if channels == 1 else arr


def jpeg_orientation(data: bytes) -> int | None:
    """The EXIF orientation of a JPEG (1 when it has none), read from the segments before its
    first scan, as Pillow reads them; None when they are not plain, or when an XMP block may
    hold an orientation (Pillow honours that too)."""
    orientation = 1
    for marker, start, end in header_segments(data):
        if marker == SOS:
            return orientation
        if marker == 0xE1 and data[start:start + 6] == b"Exif\0\0" and orientation == 1:
            orientation = _tiff_orientation(data[start + 6:end])
            if orientation is None:
                return None
        elif marker == 0xE1 and data[start:start + 29] == b"http://ns.adobe.com/xap/1.0/\0":
            return None
    return None


def _tiff_orientation(tiff: bytes) -> int | None:
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return None
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return None
    count = int.from_bytes(tiff[ifd:ifd + 2], order)
    for i in range(count):
        entry = tiff[ifd + 2 + 12 * i:ifd + 14 + 12 * i]
        if len(entry) < 12:
            return None
        if int.from_bytes(entry[:2], order) == 0x0112:  # Orientation, a SHORT
            value = int.from_bytes(entry[8:10], order)
            return value if int.from_bytes(entry[2:4], order) == 3 and 1 <= value <= 8 else None
    return 1


def _resize(im: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """`im` as an array of `size` (width, height). Shrinking by 2 or more is done first by
    whole factors with a box filter (anti-aliased, and cheap); what is left, less than 2, is
    bilinear, as tf.image.resize and Keras' Resizing do. OpenCV's bilinear costs a seventh of
    Pillow's on a 320x240 picture."""
    width, height = size
    factors = (max(1, im.width // width), max(1, im.height // height))
    if factors != (1, 1):
        im = im.reduce(factors)
    arr = np.asarray(im, dtype=np.uint8)
    if im.size != (width, height):
        arr = cv2.resize(arr, (width, height), interpolation=cv2.INTER_LINEAR)
    return arr


def _orientation(im: Image.Image) -> int:
    try:
        return im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a corrupt EXIF block: the picture is served as stored
        return 1


def _apply_orientation(im: Image.Image):
    """Turn `im` upright as its EXIF orientation says (in place: no copy when upright). The API
    never reads EXIF, so a corrupt EXIF block must not fail an input it accepted: then the
    picture is served as stored."""
    try:
        ImageOps.exif_transpose(im, in_place=True)
    except Exception:
        pass


def decode_tensor(data: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """One instance of a tensor model, as the API packed it (raw little-endian values)."""
    arr = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"))
    if arr.size != int(np.prod(shape)):
        raise DecodeError(f"tensor input has {arr.size} values, the model takes {shape}")
    return arr.reshape(shape)


def _to_mode(im: Image.Image, pil_mode: str) -> Image.Image:
    if im.mode == pil_mode:
        return im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Composite transparency on white rather than letting it turn black.
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    elif im.mode.startswith("I;16") or im.mode in ("I", "F"):
        # 16-bit and float images: scale to 8 bits instead of clipping.
        arr = np.asarray(im, dtype=np.float64)
        top = arr.max() or 1.0
        im = Image.fromarray((arr * (255.0 / top)).astype(np.uint8), "L")
    return im.convert(pil_mode)
