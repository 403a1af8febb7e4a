"""Synthetic images of one filled shape (circle, square or triangle) for the `shapes` demo model.

These are the plain pictures (filled, nearly upright, on a flat background) the tests send;
training draws mostly from the wider demo/varied.py, which says what each label covers.

Pillow and NumPy only: no TensorFlow here, so tests and API-side code can import it cheaply.
Everything is deterministic given a seed (or a `numpy.random.Generator`).
"""
from __future__ import annotations

import math
from io import BytesIO

import numpy as np
from PIL import Image, ImageDraw

LABELS = ["circle", "square", "triangle"]
FORMATS = ("PNG", "JPEG")

# Shapes are drawn this many times larger, then scaled down: smooth (anti-aliased) edges.
_SUPERSAMPLE = 2
# Minimum Euclidean RGB distance between fill and background colours.
_MIN_CONTRAST = 120.0
# The shape's extent (bounding box side before rotation) as a share of the image side.
_EXTENT = (0.30, 0.80)
# Squares are turned by at most this many degrees either way (beyond that a square reads as a diamond).
_MAX_SQUARE_TILT = 20.0
# Triangles: every interior angle at least this many degrees (no slivers).
_MIN_TRIANGLE_ANGLE = 35.0
# Triangles: bounding box at least this wide for its height (and the other way round).
_MIN_TRIANGLE_ASPECT = 0.6


def _colours(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """A background and a fill colour at least _MIN_CONTRAST apart."""
    background = rng.integers(0, 256, size=3)
    while True:
        fill = rng.integers(0, 256, size=3)
        if np.linalg.norm((fill - background).astype(np.float64)) >= _MIN_CONTRAST:
            return tuple(int(v) for v in background), tuple(int(v) for v in fill)


def _triangle_unit(rng: np.random.Generator) -> np.ndarray:
    """Three vertices of a non-degenerate triangle of varied form, as a 3x2 array (any scale)."""
    while True:
        # Inscribed in a unit circle: interior angle at a vertex = half the opposite arc.
        angles = np.sort(rng.uniform(0.0, 2.0 * math.pi, size=3))
        arcs = np.diff(np.append(angles, angles[0] + 2.0 * math.pi))
        if np.degrees(arcs.min()) / 2.0 < _MIN_TRIANGLE_ANGLE:
            continue
        points = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        span = points.max(axis=0) - points.min(axis=0)
        if span.min() / span.max() >= _MIN_TRIANGLE_ASPECT:
            return points


def _square_unit(rng: np.random.Generator) -> np.ndarray:
    """The four corners of a unit-side square centred on 0, tilted a little at random."""
    tilt = math.radians(rng.uniform(-_MAX_SQUARE_TILT, _MAX_SQUARE_TILT))
    corners = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    c, s = math.cos(tilt), math.sin(tilt)
    return corners @ np.array([[c, s], [-s, c]])


def _place(points: np.ndarray, extent: float, canvas: float, rng: np.random.Generator) -> np.ndarray:
    """Scale `points` so their larger bounding-box side is `extent`, then move them to a random
    position with the whole shape inside a `canvas`-sided square."""
    low, high = points.min(axis=0), points.max(axis=0)
    points = (points - low) * (extent / float((high - low).max()))
    span = points.max(axis=0)
    margin = canvas * 0.02
    offset = np.array([rng.uniform(margin, max(margin, canvas - margin - span[i])) for i in range(2)])
    return points + offset


def draw_shape(label: str, rng: np.random.Generator, size: int = 96) -> Image.Image:
    """One filled `label` shape on a plain background, with per-pixel noise; `size`x`size` RGB.

    The shape spans 30-80% of the side, sits at a random position inside the image, and its fill
    colour differs clearly from the background colour.
    """
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; expected one of {LABELS}")
    if size < 16:
        raise ValueError("size must be at least 16")
    background, fill = _colours(rng)
    canvas = size * _SUPERSAMPLE
    extent = rng.uniform(*_EXTENT) * canvas
    im = Image.new("RGB", (canvas, canvas), background)
    draw = ImageDraw.Draw(im)
    if label == "circle":
        box = _place(np.array([[0.0, 0.0], [1.0, 1.0]]), extent, canvas, rng)
        draw.ellipse([float(v) for v in box.ravel()], fill=fill)
    else:
        unit = _square_unit(rng) if label == "square" else _triangle_unit(rng)
        points = _place(unit, extent, canvas, rng)
        draw.polygon([(float(x), float(y)) for x, y in points], fill=fill)
    # Averaging each 2x2 block: anti-aliased edges.
    im = im.resize((size, size), Image.BOX)
    # Per-pixel Gaussian noise of a random strength.
    sigma = np.float32(rng.uniform(0.0, 12.0))
    arr = np.asarray(im, dtype=np.float32)
    arr = arr + sigma * rng.standard_normal(size=arr.shape, dtype=np.float32)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


def encode_image(im: Image.Image, fmt: str = "PNG", quality: int = 90, compress_level: int = 6) -> bytes:
    """`im` encoded as PNG (zlib `compress_level` 0-9) or JPEG (at `quality`) bytes."""
    fmt = fmt.upper()
    if fmt == "JPG":
        fmt = "JPEG"
    if fmt not in FORMATS:
        raise ValueError(f"unsupported format {fmt!r}; expected one of {FORMATS}")
    buf = BytesIO()
    if fmt == "JPEG":
        im.save(buf, "JPEG", quality=int(quality))
    else:
        im.save(buf, "PNG", compress_level=int(compress_level))
    return buf.getvalue()


def make_image_bytes(label: str, seed: int, size: int = 96, fmt: str = "PNG") -> bytes:
    """A `label` image drawn from `seed` (same seed, label and size: same picture), encoded as
    PNG, or JPEG at quality 90."""
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; expected one of {LABELS}")
    rng = np.random.default_rng([int(seed), LABELS.index(label)])
    return encode_image(draw_shape(label, rng, size), fmt, quality=90)


def random_examples(
    n: int,
    seed: int,
    sizes: tuple[int, int] = (64, 160),
    formats: tuple[str, ...] = FORMATS,
    jpeg_quality: tuple[int, int] = (70, 95),
) -> list[tuple[str, bytes]]:
    """`n` (label, encoded bytes) pairs, deterministic from `seed`.

    Labels are balanced (as far as `n` allows) and shuffled; each image has a random side in
    `sizes` (inclusive) and a random format from `formats`, JPEG at a random quality in
    `jpeg_quality` (inclusive). PNGs use fast, light compression (these are throwaway bytes).
    """
    rng = np.random.default_rng(int(seed))
    labels = [LABELS[i % len(LABELS)] for i in range(n)]
    order = rng.permutation(n)
    out = []
    for i in order:
        label = labels[i]
        side = int(rng.integers(sizes[0], sizes[1] + 1))
        fmt = formats[int(rng.integers(len(formats)))]
        quality = int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1))
        im = draw_shape(label, rng, side)
        out.append((label, encode_image(im, fmt, quality, compress_level=1)))
    return out
