"""A corpus of malformed and unusual images, made here (no binary files in the repository), each
with the answer inferq gives it: accepted (and served by a worker), or a 4xx status and code.

The upright picture that the EXIF cases rotate is asymmetric: its four quadrants have four
colours, so a wrong rotation or a missing flip shows."""
import io
import struct
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

ACCEPTED = 202


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], bytes]
    status: int = ACCEPTED
    code: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status == ACCEPTED


# --- helpers ---------------------------------------------------------------------------------

def save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


# Quadrant colours of the upright picture: top-left, top-right, bottom-left, bottom-right.
QUADRANTS = ((220, 30, 30), (30, 200, 30), (30, 30, 220), (240, 240, 240))
UPRIGHT_SIZE = (48, 32)  # width, height: landscape, so a missed 90-degree turn shows too


def upright() -> np.ndarray:
    """The asymmetric picture, H x W x 3."""
    w, h = UPRIGHT_SIZE
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:h // 2, :w // 2], arr[:h // 2, w // 2:] = QUADRANTS[0], QUADRANTS[1]
    arr[h // 2:, :w // 2], arr[h // 2:, w // 2:] = QUADRANTS[2], QUADRANTS[3]
    return arr


def stored_for_orientation(v: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels a camera stores with EXIF `orientation` for the upright picture `v`, from the
    tag's definition (where the stored row 0 and column 0 lie in the upright picture), not from
    Pillow's own table."""
    return {
        1: lambda: v,
        2: lambda: v[:, ::-1],              # row 0 top, column 0 right
        3: lambda: v[::-1, ::-1],           # row 0 bottom, column 0 right
        4: lambda: v[::-1, :],              # row 0 bottom, column 0 left
        5: lambda: v.transpose(1, 0, 2),    # row 0 left, column 0 top
        6: lambda: np.rot90(v, 1),          # row 0 right, column 0 top
        7: lambda: v[::-1, ::-1].transpose(1, 0, 2),  # row 0 right, column 0 bottom
        8: lambda: np.rot90(v, 3),          # row 0 left, column 0 bottom
    }[orientation]()


def with_orientation(orientation: int, fmt: str = "JPEG") -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    pixels = stored_for_orientation(upright(), orientation)
    im = Image.fromarray(np.ascontiguousarray(pixels))
    extra = {"quality": 95} if fmt == "JPEG" else {}
    return save(im, fmt, exif=exif, **extra)


def noise(size=(40, 30), mode="RGB") -> Image.Image:
    return Image.effect_noise(size, 60).convert(mode)


def jpeg(size=(40, 30), **kw) -> bytes:
    return save(noise(size), "JPEG", quality=90, **kw)


def png(size=(40, 30), mode="RGB") -> bytes:
    return save(noise(size, mode), "PNG")


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc & 0xFFFFFFFF)


def raw_png(width: int, height: int, rows: bytes, color_type=2, depth=8, interlace=0,
            before_idat=b"", ihdr_crc=None, idat_crc=None) -> bytes:
    """A PNG written chunk by chunk, for what Pillow will not write (or writes only validly).
    `rows` are the filtered scanlines (each starts with its filter byte)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr, ihdr_crc) + before_idat
            + chunk(b"IDAT", zlib.compress(rows), idat_crc) + chunk(b"IEND", b""))


def scanlines(arr: np.ndarray) -> bytes:
    """Rows of `arr` (H x W x C, already in the PNG sample layout) with filter 0."""
    flat = np.ascontiguousarray(arr).reshape(arr.shape[0], -1).view(np.uint8)
    return b"".join(b"\0" + row.tobytes() for row in flat)


def small_rgb_png(**kw) -> bytes:
    arr = np.asarray(noise((8, 8)))
    return raw_png(8, 8, scanlines(arr), **kw)


def interlaced_png() -> bytes:
    """Adam7: seven passes, each a sub-image of every n-th pixel (Pillow writes none of this)."""
    arr = np.asarray(noise((37, 23)))
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
              (1, 0, 2, 2), (0, 1, 1, 2))
    rows = b"".join(scanlines(arr[y0::dy, x0::dx]) for x0, y0, dx, dy in passes
                    if arr[y0::dy, x0::dx].size)
    return raw_png(37, 23, rows, interlace=1)


def rgb16_png() -> bytes:
    arr = (np.arange(20 * 10 * 3, dtype=">u2").reshape(10, 20, 3) * 200)
    return raw_png(20, 10, scanlines(arr), depth=16)


def header_only_png(width: int, height: int, color_type=0) -> bytes:
    """Declares width x height but holds a few bytes of compressed zeros."""
    return raw_png(width, height, b"\0" * 64, color_type=color_type)


def zero_png(width: int, height: int) -> bytes:
    """A whole grayscale PNG of zeros: compresses about 1000:1."""
    return raw_png(width, height, bytes((width + 1) * height), color_type=0)


def bmp_top_down() -> bytes:
    """A 24-bit BMP with a negative height: rows stored top row first."""
    arr = np.asarray(noise((10, 6)))[:, :, ::-1]  # BGR
    stride = (10 * 3 + 3) // 4 * 4
    pixels = b"".join(row.tobytes().ljust(stride, b"\0") for row in arr)
    info = struct.pack("<IiiHHIIiiII", 40, 10, -6, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + len(pixels), 0, 0, 14 + 40) + info + pixels


def bmp_rle8() -> bytes:
    """An 8-bit run-length-encoded BMP: stripes of four palette colours."""
    width, height = 16, 8
    palette = b"".join(bytes((b, g, r, 0)) for r, g, b in
                       [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)] + [(0, 0, 0)] * 252)
    rows = b"".join(bytes((4, 0, 4, 1, 4, 2, 4, 3, 0, 0)) for _ in range(height)) + b"\0\1"
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(rows), 2835, 2835, 256, 0)
    offset = 14 + 40 + len(palette)
    return (b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + info + palette
            + rows)


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) claims width x height."""
    data = bytearray(jpeg((16, 16)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_declaring(width: int, height: int) -> bytes:
    data = bytearray(save(Image.new("P", (4, 4), 1), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)  # the logical screen
    return bytes(data)


def with_app_segment(data: bytes, marker: int, payload: bytes, times: int = 1) -> bytes:
    """`data` (a JPEG) with APPn segments inserted right after its SOI marker."""
    segment = struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload
    return data[:2] + segment * times + data[2:]


def jpeg_huge_exif() -> bytes:
    """An EXIF block as large as a JPEG segment holds (64 KB), mostly a maker note."""
    exif = Image.Exif()
    exif[0x0112] = 1
    exif[0x927C] = b"\x00" * 65000
    return save(noise((32, 24)), "JPEG", exif=exif)


def jpeg_corrupt_exif() -> bytes:
    """An EXIF block whose IFD claims entries and offsets past its end."""
    tiff = b"II*\0\x08\0\0\0" + b"\x40\x00" + b"\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00" \
        + b"\xff" * 20
    return with_app_segment(jpeg(), 0xE1, b"Exif\0\0" + tiff)


def gif_animated() -> bytes:
    frames = [Image.new("P", (20, 20), i) for i in (1, 2, 3)]
    return save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def gif_transparent() -> bytes:
    im = Image.new("P", (20, 20), 1)
    im.paste(2, (0, 0, 10, 20))
    return save(im, "GIF", transparency=2)


def apng() -> bytes:
    frames = [noise((20, 20)) for _ in range(3)]
    return save(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=50)


def webp_animated() -> bytes:
    frames = [noise((20, 20)) for _ in range(3)]
    return save(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50)


def palette_with_transparency(alpha_table: bool) -> bytes:
    im = Image.new("P", (20, 20), 0)
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    im.paste(1, (0, 0, 10, 10))
    if alpha_table:  # a tRNS entry per palette index, partial alpha included
        return save(im, "PNG", transparency=bytes([0, 128, 255]))
    return save(im, "PNG", transparency=0)


def mpo() -> bytes:
    """A multi-picture JPEG (stereo cameras): a JPEG carrying a second picture."""
    return save(noise((24, 24)), "MPO", save_all=True, append_images=[noise((24, 24))])


def sixteen_bit_gray() -> bytes:
    im = Image.new("I;16", (30, 20), 1000)
    im.paste(60000, (0, 0, 15, 20))
    return save(im, "PNG")


def cut(data: bytes, keep: float) -> bytes:
    return data[:int(len(data) * keep)]


def random_bytes(n=4096, seed=7) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def zip_archive() -> bytes:
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "not an image")
    return buf.getvalue()


SVG = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
       b'<circle cx="32" cy="32" r="20" fill="red"/></svg>\n')
HTML = b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>\n"


def _bad(status, code):
    return {"status": status, "code": code}


INVALID = _bad(400, "invalid_image")
UNSUPPORTED = _bad(415, "unsupported_format")
TOO_MANY_PIXELS = _bad(413, "too_many_pixels")

CASES = [
    # accepted: unusual but valid
    Case("1x1 PNG", lambda: png((1, 1))),
    Case("1x1 GIF", lambda: save(Image.new("P", (1, 1), 3), "GIF")),
    Case("10000x1 PNG (extreme aspect ratio)", lambda: png((10000, 1))),
    Case("1x10000 JPEG (extreme aspect ratio)", lambda: jpeg((1, 10000))),
    Case("progressive JPEG", lambda: jpeg((80, 60), progressive=True)),
    Case("grayscale JPEG", lambda: save(noise(mode="L"), "JPEG")),
    Case("CMYK JPEG", lambda: save(noise(mode="CMYK"), "JPEG")),
    Case("JPEG with 4:4:4 chroma and restart markers",
         lambda: save(noise((50, 40)), "JPEG", subsampling=0, restart_marker_blocks=1)),
    Case("JPEG with trailing garbage", lambda: jpeg() + b"GARBAGE\x00\xff" * 500),
    Case("JPEG with a 64 KB EXIF block", jpeg_huge_exif),
    Case("JPEG with 64 APP15 segments of 64 KB", lambda: with_app_segment(
        jpeg(), 0xEF, b"x" * 65000, times=64)),
    Case("JPEG with a corrupt EXIF block", jpeg_corrupt_exif),
    *[Case(f"JPEG with EXIF orientation {o}", lambda o=o: with_orientation(o))
      for o in range(1, 9)],
    Case("JPEG with EXIF orientation 9 (no such value)", lambda: with_orientation_raw(9)),
    Case("PNG with EXIF orientation 6", lambda: with_orientation(6, "PNG")),
    Case("WebP with EXIF orientation 8", lambda: with_orientation(8, "WEBP")),
    Case("multi-picture JPEG (MPO)", mpo),
    Case("interlaced PNG (Adam7)", interlaced_png),
    Case("16-bit grayscale PNG", sixteen_bit_gray),
    Case("16-bit RGB PNG", rgb16_png),
    Case("1-bit PNG", lambda: png(mode="1")),
    Case("palette PNG with a transparent index", lambda: palette_with_transparency(False)),
    Case("palette PNG with an alpha table", lambda: palette_with_transparency(True)),
    Case("LA PNG (gray and alpha)", lambda: png(mode="LA")),
    Case("RGBA PNG", lambda: png(mode="RGBA")),
    Case("animated PNG", apng),
    Case("PNG with a 2 MB text chunk", lambda: small_rgb_png(
        before_idat=chunk(b"tEXt", b"comment\0" + b"a" * 2_000_000))),
    Case("PNG with a bad CRC on its image data", lambda: small_rgb_png(idat_crc=1)),
    Case("PNG followed by a ZIP archive", lambda: png() + zip_archive()),
    Case("4000x4000 PNG of zeros in 16 KB (within the pixel limit)",
         lambda: zero_png(4000, 4000)),
    Case("animated GIF (first frame served)", gif_animated),
    Case("GIF with a transparent colour", gif_transparent),
    Case("WebP lossy", lambda: save(noise(), "WEBP", quality=80)),
    Case("WebP lossless with alpha", lambda: save(noise(mode="RGBA"), "WEBP", lossless=True)),
    Case("animated WebP", webp_animated),
    Case("BMP 24-bit", lambda: save(noise(), "BMP")),
    Case("BMP 32-bit with alpha", lambda: save(noise(mode="RGBA"), "BMP")),
    Case("BMP 1-bit", lambda: save(noise(mode="1"), "BMP")),
    Case("BMP stored top-down (negative height)", bmp_top_down),
    Case("BMP run-length encoded (RLE8)", bmp_rle8),

    # refused: empty, broken or truncated
    Case("zero-byte file", lambda: b"", 400, "empty_input"),
    Case("truncated JPEG", lambda: cut(jpeg((64, 64)), 0.5), **INVALID),
    Case("truncated progressive JPEG", lambda: cut(jpeg((64, 64), progressive=True), 0.5),
         **INVALID),
    Case("truncated PNG", lambda: cut(png((64, 64)), 0.6), **INVALID),
    Case("truncated GIF", lambda: cut(save(noise((64, 64)).convert("P"), "GIF"), 0.5),
         **INVALID),
    Case("truncated WebP", lambda: cut(save(noise((64, 64)), "WEBP"), 0.5), **INVALID),
    Case("truncated BMP", lambda: cut(save(noise((64, 64)), "BMP"), 0.5), **INVALID),
    Case("PNG signature alone", lambda: b"\x89PNG\r\n\x1a\n", **INVALID),
    Case("JPEG start marker alone", lambda: b"\xff\xd8\xff", **INVALID),
    Case("PNG with width 0", lambda: header_only_png(0, 10), **INVALID),
    Case("PNG with height 0", lambda: header_only_png(10, 0), **INVALID),
    Case("PNG with a bad CRC on its header", lambda: small_rgb_png(ihdr_crc=1), **INVALID),
    Case("PNG whose text chunk inflates to 20 MB", lambda: small_rgb_png(before_idat=chunk(
        b"zTXt", b"comment\0\0" + zlib.compress(b"a" * 20_000_000, 9))), **INVALID),
    Case("BMP with a broken header", lambda: b"BM" + b"\0" * 60, **INVALID),

    # refused: too many pixels, seen from the header before anything is decoded
    Case("PNG declaring 50000x50000 in 100 bytes", lambda: header_only_png(50000, 50000),
         **TOO_MANY_PIXELS),
    Case("decompression bomb: 6000x6000 PNG of zeros", lambda: zero_png(6000, 6000),
         **TOO_MANY_PIXELS),
    Case("JPEG declaring 65000x65000", lambda: jpeg_declaring(65000, 65000), **TOO_MANY_PIXELS),
    Case("GIF declaring 65535x65535", lambda: gif_declaring(65535, 65535), **TOO_MANY_PIXELS),

    # refused: not an accepted format
    Case("plain text named .png", lambda: b"hello, not an image\n" * 5, **UNSUPPORTED),
    Case("HTML page", lambda: HTML, **UNSUPPORTED),
    Case("SVG drawing", lambda: SVG, **UNSUPPORTED),
    Case("TIFF", lambda: save(noise(), "TIFF"), **UNSUPPORTED),
    Case("ICO", lambda: save(noise((16, 16)), "ICO"), **UNSUPPORTED),
    Case("JPEG 2000", lambda: save(noise(), "JPEG2000"), **UNSUPPORTED),
    Case("PDF", lambda: save(noise(), "PDF"), **UNSUPPORTED),
    Case("ZIP archive", zip_archive, **UNSUPPORTED),
    Case("random bytes", random_bytes, **UNSUPPORTED),
]


def with_orientation_raw(value: int) -> bytes:
    """The upright picture with an EXIF orientation value outside 1-8 (to be ignored)."""
    exif = Image.Exif()
    exif[0x0112] = value
    return save(Image.fromarray(upright()), "JPEG", exif=exif, quality=95)


ACCEPTED_CASES = [c for c in CASES if c.accepted]
REFUSED_CASES = [c for c in CASES if not c.accepted]
