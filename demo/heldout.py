"""A held-out test set for the `shapes` demo model, drawn independently of its training images.

Nothing here comes from demo/shapes.py or demo/varied.py but the label names: the shapes are
NumPy signed-distance fields (anti-aliased by their distance to the edge, not by supersampling),
the colours are picked in HSV, the backgrounds (radial and linear gradients, checks, smooth
noise, paper grain) and the degradations (OpenCV blur, noise, vignette, OpenCV's JPEG and PNG
encoders) are its own, and so are its ranges: image sides 72-200 px, the shape's larger side
12-85 % of the image side, ellipses and rectangles stretched up to 1.8:1, any rotation.

The labels follow the demo's rule (demo/varied.py): circle = round, no corners (ellipses
included); square = four right-angled corners (rectangles and squares at any angle, a "diamond"
included); triangle = three corners, no angle under 30 degrees.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from demo.shapes import LABELS

_SIDE = (72, 200)
_EXTENT = (0.12, 0.85)
_MAX_STRETCH = 1.8
_MIN_ANGLE = 32.0  # a little inside the rule's 30 degrees


def _triangle(rng: np.random.Generator) -> np.ndarray:
    """Vertices from three interior angles (each >= _MIN_ANGLE) by the law of sines."""
    while True:
        a, b = rng.uniform(_MIN_ANGLE, 180.0 - 2 * _MIN_ANGLE, size=2)
        if 180.0 - a - b >= _MIN_ANGLE:
            break
    a, b = math.radians(a), math.radians(b)
    c = math.pi - a - b
    # Side AB (opposite C) has length sin(C); A at the origin, B on the x axis.
    ab, ac = math.sin(c), math.sin(b)
    return np.array([[0.0, 0.0], [ab, 0.0], [ac * math.cos(a), ac * math.sin(a)]])


def _polygon_distance(px: np.ndarray, py: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) to a convex polygon, exact inside and near the edges."""
    centre = vertices.mean(axis=0)
    out = np.full(px.shape, -np.inf)
    for i in range(len(vertices)):
        p, q = vertices[i], vertices[(i + 1) % len(vertices)]
        nx, ny = q[1] - p[1], p[0] - q[0]
        norm = math.hypot(nx, ny)
        nx, ny = nx / norm, ny / norm
        if nx * (centre[0] - p[0]) + ny * (centre[1] - p[1]) > 0:
            nx, ny = -nx, -ny
        out = np.maximum(out, nx * (px - p[0]) + ny * (py - p[1]))
    return out


def _ellipse_distance(px, py, centre, a, b, turn) -> np.ndarray:
    """Signed distance to an ellipse, to first order (the level set's value over its gradient)."""
    c, s = math.cos(turn), math.sin(turn)
    u = (c * (px - centre[0]) + s * (py - centre[1])) / a
    v = (-s * (px - centre[0]) + c * (py - centre[1])) / b
    r = np.sqrt(u * u + v * v) + 1e-9
    grad = np.sqrt((u / a) ** 2 + (v / b) ** 2) / r
    return (r - 1.0) / grad


def _shape_distance(label: str, rng: np.random.Generator, side: int) -> np.ndarray:
    """The signed distance field (pixels) of one `label` shape placed in a side x side image."""
    extent = rng.uniform(*_EXTENT) * side
    turn = rng.uniform(0.0, math.pi)
    stretch = rng.uniform(1.0, _MAX_STRETCH) if rng.random() < 0.5 else 1.0
    if label == "circle":
        a, b = 0.5, 0.5 / stretch  # half axes of a shape whose longer axis is 1
        vertices = None
    else:
        if label == "square":
            vertices = np.array([[0, 0], [1, 0], [1, 1 / stretch], [0, 1 / stretch]], float)
        else:
            vertices = _triangle(rng)
        vertices = vertices - vertices.mean(axis=0)
        c, s = math.cos(turn), math.sin(turn)
        vertices = vertices @ np.array([[c, s], [-s, c]])
    # Scale so the larger side of the bounding box is `extent`, then place it inside.
    if vertices is None:
        c, s = math.cos(turn), math.sin(turn)
        half = np.array([math.hypot(a * c, b * s), math.hypot(a * s, b * c)])
        scale = extent / (2 * half.max())
        half = half * scale
    else:
        span = vertices.max(axis=0) - vertices.min(axis=0)
        scale = extent / span.max()
        vertices = vertices * scale
        half = span * scale / 2
    margin = 0.04 * side
    centre = np.array([rng.uniform(margin + h, max(margin + h, side - margin - h)) for h in half])
    py, px = np.mgrid[0:side, 0:side].astype(np.float64) + 0.5
    if vertices is None:
        return _ellipse_distance(px, py, centre, a * scale, b * scale, turn)
    offset = centre - (vertices.max(axis=0) + vertices.min(axis=0)) / 2
    return _polygon_distance(px, py, vertices + offset)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    pixel = np.array([[[h * 179.0, s * 255.0, v * 255.0]]], dtype=np.float32).astype(np.uint8)
    return cv2.cvtColor(pixel, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)


def _background(rng: np.random.Generator, side: int) -> np.ndarray:
    """side x side x 3 floats: plain, radial or linear gradient, checks, smooth noise or grain."""
    c1 = _hsv(rng.random(), rng.uniform(0, 1), rng.uniform(0.1, 1))
    c2 = _hsv(rng.random(), rng.uniform(0, 1), rng.uniform(0.1, 1))
    yy, xx = (np.mgrid[0:side, 0:side] + 0.5) / side
    kind = int(rng.integers(6))
    if kind == 0:
        t = np.zeros((side, side))
    elif kind == 1:  # radial, centred anywhere
        cx, cy = rng.uniform(-0.2, 1.2, size=2)
        t = np.clip(np.hypot(xx - cx, yy - cy) / rng.uniform(0.5, 1.4), 0, 1)
    elif kind == 2:  # linear, from a random corner
        t = (xx if rng.random() < 0.5 else 1 - xx) * rng.random() + \
            (yy if rng.random() < 0.5 else 1 - yy) * rng.random()
        t = t / max(t.max(), 1e-6)
    elif kind == 3:  # checks, faint
        n = int(rng.integers(4, 16))
        t = ((np.floor(xx * n) + np.floor(yy * n)) % 2) * rng.uniform(0.08, 0.3)
    elif kind == 4:  # smooth noise
        cells = int(rng.integers(2, 7))
        t = cv2.resize(rng.random((cells, cells)), (side, side), interpolation=cv2.INTER_CUBIC)
        t = np.clip(t, 0, 1) * rng.uniform(0.2, 0.7)
    else:  # paper grain: fine noise, blurred
        t = cv2.GaussianBlur(rng.random((side, side)), (0, 0), 1.5) * rng.uniform(0.3, 0.8)
    return c1 + t[..., None] * (c2 - c1)


def _ink(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A shape colour at least 50 (RGB distance) from each corner and the mean of the background."""
    probes = [background.mean(axis=(0, 1)), background[0, 0], background[0, -1],
              background[-1, 0], background[-1, -1], background[background.shape[0] // 2,
                                                                   background.shape[1] // 2]]
    floor = 50.0 if rng.random() < 0.3 else 100.0
    for _ in range(300):
        ink = _hsv(rng.random(), rng.uniform(0, 1), rng.uniform(0, 1))
        if min(np.linalg.norm(ink - p) for p in probes) >= floor:
            return ink
    return 255.0 - probes[0]


def draw(label: str, rng: np.random.Generator, side: int = 96) -> np.ndarray:
    """One held-out `label` image, side x side x 3 uint8 RGB."""
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; expected one of {LABELS}")
    d = _shape_distance(label, rng, side)
    inside = -d[d < 0]
    # Blur no more than a quarter of the shape's thickness: its corners stay.
    blur = min(2.0 * side / 64, inside.max() / 4) if inside.size else 0.0
    if rng.random() < 0.4 and inside.size:
        # An outline: at least one pixel of the 64 px model input wide, at most a third of the
        # way to the shape's centre; blurred at most by its width.
        width = min(rng.uniform(1.0, 5.0) * side / 64, inside.max() / 3)
        coverage = np.clip(0.5 - d, 0, 1) * np.clip(0.5 + d + width, 0, 1)
        blur = min(blur, width)
    else:
        coverage = np.clip(0.5 - d, 0, 1)
    background = _background(rng, side)
    image = background + coverage[..., None] * (_ink(rng, background) - background)
    if rng.random() < 0.25:  # vignette: darker towards the corners
        yy, xx = (np.mgrid[0:side, 0:side] + 0.5) / side - 0.5
        image = image * (1 - rng.uniform(0.1, 0.4) * (xx * xx + yy * yy) * 2)[..., None]
    if rng.random() < 0.4 and blur > 0.4:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, blur))
    if rng.random() < 0.6:
        image = image + rng.normal(0.0, rng.uniform(2.0, 12.0), size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def encode(image: np.ndarray, rng: np.random.Generator) -> bytes:
    """PNG (a third of the time) or JPEG at quality 40-95, by OpenCV's encoders."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if rng.random() < 1 / 3:
        ok, data = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 96))])
    assert ok
    return data.tobytes()


def heldout_set(n: int, seed: int = 19) -> list[tuple[str, bytes]]:
    """`n` (label, encoded bytes) pairs, labels in turn, deterministic from `seed`."""
    rng = np.random.default_rng([int(seed), 0x4E1D])
    out = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        side = int(rng.integers(_SIDE[0], _SIDE[1] + 1))
        out.append((label, encode(draw(label, rng, side), rng)))
    return out
