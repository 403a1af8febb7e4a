"""The wide training distribution of the `shapes` demo model: one circle, square or triangle,
filled or outlined, rotated, stretched, large or small, on a plain, gradient or textured
background, blurred, noisy, sometimes low in contrast. Pillow and NumPy only, deterministic
given a `numpy.random.Generator`.

What each label means (the rule every generator of this demo follows):

- circle: a round shape without corners: a circle, or an ellipse up to 2:1 (a stretched circle
  is still a circle; the model has no "ellipse" class and nothing with corners is round).
- square: four right-angled corners: a square, or a rectangle up to 2:1 (a stretched square),
  at any rotation; a square turned 45 degrees (a "diamond") is a square. Shapes with four
  corners that are not right angles (rhombi, parallelograms, trapezoids) belong to no class
  and are never drawn: stretching happens along the shape's own sides, before it is turned.
- triangle: three corners, every interior angle at least 30 degrees (no slivers), any rotation.

Filled or outlined (a line at least about a pixel of the model's 64x64 input wide), the
shape's larger side is 10-90 % of the image side; blur is kept small next to the shape, so
its corners (or their absence) stay visible.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from demo.shapes import LABELS, draw_shape, encode_image

# Drawn this many times larger, then scaled down: anti-aliased edges and thin lines.
_SUPERSAMPLE = 3
# The shape's larger side as a share of the image side.
_EXTENT = (0.10, 0.90)
# Longer side / shorter side of a stretched circle or square, at most.
_MAX_STRETCH = 2.0
_MIN_TRIANGLE_ANGLE = 30.0
# An outline's width as a share of the image side (about 1 px of the 64 px model input and
# up), and at most this share of the distance from its centre to its nearest edge.
_LINE = (0.016, 0.08)
_MAX_LINE_SHARE = 0.5
# Minimum RGB distance between the shape's colour and the background (low contrast included).
_MIN_CONTRAST = 45.0


def _unit(label: str, rng: np.random.Generator) -> np.ndarray | None:
    """The outline of `label` centred on 0, stretched and turned: an (n, 2) polygon (a
    circle: 96 points of an ellipse)."""
    if label == "triangle":
        while True:
            angles = np.sort(rng.uniform(0.0, 2.0 * math.pi, size=3))
            arcs = np.diff(np.append(angles, angles[0] + 2.0 * math.pi))
            # Inscribed in a circle: the interior angle at a vertex is half the opposite arc.
            if np.degrees(arcs.min()) / 2.0 >= _MIN_TRIANGLE_ANGLE:
                points = np.stack([np.cos(angles), np.sin(angles)], axis=1)
                break
    else:
        stretch = math.exp(rng.uniform(0.0, math.log(_MAX_STRETCH))) if rng.random() < 0.6 else 1.0
        if label == "circle":
            t = np.linspace(0.0, 2.0 * math.pi, 96, endpoint=False)
            points = np.stack([np.cos(t), np.sin(t)], axis=1)
        else:
            points = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
        points = points * np.array([stretch, 1.0])
    turn = rng.uniform(0.0, 2.0 * math.pi)
    c, s = math.cos(turn), math.sin(turn)
    return points @ np.array([[c, s], [-s, c]])


def _edges(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outward unit normals n and offsets c of a convex polygon's edges (inside: n.p <= c)."""
    d = np.roll(points, -1, axis=0) - points
    n = np.stack([d[:, 1], -d[:, 0]], axis=1) / np.linalg.norm(d, axis=1, keepdims=True)
    if (n @ points.mean(axis=0) - (n * points).sum(axis=1)).mean() > 0:
        n = -n  # the other winding
    return n, (n * points).sum(axis=1)


def _inradius(points: np.ndarray) -> float:
    """The distance from the centroid to the nearest edge."""
    n, c = _edges(points)
    return float((c - n @ points.mean(axis=0)).min())


def _inset(points: np.ndarray, width: float) -> np.ndarray:
    """The convex polygon with every edge moved `width` inwards (the inner rim of an outline)."""
    n, c = _edges(points)
    c = c - width
    out = []
    for i in range(len(points)):
        a = np.stack([n[i - 1], n[i]])
        out.append(np.linalg.solve(a, np.array([c[i - 1], c[i]])))
    return np.array(out)


def _background(rng: np.random.Generator, side: int, base: np.ndarray) -> np.ndarray:
    """A side x side x 3 float background around colour `base`: plain, a linear gradient,
    or a texture (stripes, or blotches of low-frequency noise)."""
    kind = rng.choice(["plain", "gradient", "stripes", "blotches"], p=[0.3, 0.35, 0.15, 0.2])
    if kind == "plain":
        return np.broadcast_to(base, (side, side, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    other = rng.integers(0, 256, size=3).astype(np.float32)
    if kind == "gradient":
        a = rng.uniform(0.0, 2.0 * math.pi)
        t = (np.cos(a) * xx + np.sin(a) * yy)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        return base + t[..., None] * (other - base) * rng.uniform(0.3, 1.0)
    if kind == "stripes":
        a, period = rng.uniform(0.0, math.pi), rng.uniform(0.05, 0.3)
        t = 0.5 + 0.5 * np.sin(2.0 * math.pi * (np.cos(a) * xx + np.sin(a) * yy) / period)
        return base + t[..., None] * (other - base) * rng.uniform(0.1, 0.35)
    cells = int(rng.integers(3, 9))
    small = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8), "L")
    t = np.asarray(small.resize((side, side), Image.BICUBIC), dtype=np.float32) / 255.0
    return base + t[..., None] * (other - base) * rng.uniform(0.2, 0.6)


def _colour(rng: np.random.Generator, background: np.ndarray) -> tuple[int, int, int]:
    """A colour at least _MIN_CONTRAST from every part of the background (its darkest, lightest
    and mean colours), low contrast about a third of the time."""
    probes = [background.reshape(-1, 3).mean(axis=0), background[0, 0], background[-1, -1],
              background[0, -1], background[-1, 0]]
    floor = _MIN_CONTRAST if rng.random() < 0.35 else 110.0
    for _ in range(200):
        fill = rng.integers(0, 256, size=3).astype(np.float32)
        if min(np.linalg.norm(fill - p) for p in probes) >= floor:
            return tuple(int(v) for v in fill)
    # Nothing random was far enough: the complement of the mean.
    return tuple(int(v) for v in 255.0 - probes[0])


def draw_varied(label: str, rng: np.random.Generator, size: int = 96) -> Image.Image:
    """One `label` shape drawn from the wide distribution (module docstring); `size`x`size` RGB."""
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; expected one of {LABELS}")
    canvas = size * _SUPERSAMPLE
    base = rng.integers(0, 256, size=3).astype(np.float32)
    background = np.clip(_background(rng, size, base), 0, 255)
    fill = _colour(rng, background)

    points = _unit(label, rng)
    span = points.max(axis=0) - points.min(axis=0)
    extent = rng.uniform(*_EXTENT) * canvas
    points = (points - points.min(axis=0)) * (extent / float(span.max()))
    span = points.max(axis=0)
    margin = canvas * 0.03
    points += np.array([rng.uniform(margin, max(margin, canvas - margin - span[i])) for i in range(2)])

    mask = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(mask)
    draw.polygon([(float(x), float(y)) for x, y in points], fill=255)
    if rng.random() < 0.45:
        # Outlined: the inside, a line's width in from the edge, is cut out again.
        width = rng.uniform(*_LINE) * canvas
        width = max(float(_SUPERSAMPLE), min(width, _MAX_LINE_SHARE * _inradius(points)))
        draw.polygon([(float(x), float(y)) for x, y in _inset(points, width)], fill=0)
    # The coverage, averaged over each block of the larger canvas: anti-aliased edges.
    m = np.asarray(mask.resize((size, size), Image.BOX), dtype=np.float32)[..., None] / 255.0
    shape = background * (1.0 - m) + np.array(fill, dtype=np.float32) * m
    im = Image.fromarray(np.clip(np.rint(shape), 0, 255).astype(np.uint8), "RGB")

    # Blur up to a tenth of the shape's shorter side (in output pixels): corners survive.
    shorter = float(span.min()) / _SUPERSAMPLE
    if rng.random() < 0.4:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, max(0.35, min(2.5, shorter / 10)))))
    sigma = np.float32(rng.uniform(0.0, 14.0) if rng.random() < 0.7 else 0.0)
    arr = np.asarray(im, dtype=np.float32)
    arr = arr + sigma * rng.standard_normal(size=arr.shape, dtype=np.float32)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


def varied_examples(
    n: int,
    seed: int,
    sizes: tuple[int, int] = (64, 160),
    jpeg_quality: tuple[int, int] = (30, 95),
    plain_share: float = 0.15,
) -> list[tuple[str, bytes]]:
    """`n` (label, encoded bytes) pairs, deterministic from `seed`, for training.

    Labels are balanced and shuffled; each image has a random side in `sizes`, is PNG or JPEG
    (at a random quality in `jpeg_quality`) half the time each, and `plain_share` of them are
    demo.shapes' plain filled shapes (what the examples and the other tests send)."""
    rng = np.random.default_rng(int(seed))
    labels = [LABELS[i % len(LABELS)] for i in range(n)]
    out = []
    for i in rng.permutation(n):
        side = int(rng.integers(sizes[0], sizes[1] + 1))
        plain = rng.random() < plain_share
        im = draw_shape(labels[i], rng, side) if plain else draw_varied(labels[i], rng, side)
        fmt = "JPEG" if rng.random() < 0.5 else "PNG"
        quality = int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1))
        out.append((labels[i], encode_image(im, fmt, quality, compress_level=1)))
    return out
