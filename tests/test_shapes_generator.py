"""The synthetic `shapes` generators (demo/shapes.py, demo/varied.py, demo/heldout.py): Pillow,
NumPy and OpenCV, no TensorFlow."""
import math
import subprocess
import sys
from collections import Counter
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo.shapes import LABELS, draw_shape, encode_image, make_image_bytes, random_examples
from worker.preprocess import decode_image


def _shape_mask(im: Image.Image) -> np.ndarray:
    """Pixels clearly away from the background colour (read off a corner: shapes stay inside)."""
    arr = np.asarray(im, dtype=np.float64)
    background = np.median(arr[:4, :4].reshape(-1, 3), axis=0)
    return np.linalg.norm(arr - background, axis=2) > 60.0


def test_labels():
    assert LABELS == ["circle", "square", "triangle"]


@pytest.mark.parametrize("size", [64, 96, 160])
@pytest.mark.parametrize("label", LABELS)
def test_draw_shape_size_and_mode(label, size):
    im = draw_shape(label, np.random.default_rng(0), size)
    assert im.mode == "RGB"
    assert im.size == (size, size)


@pytest.mark.parametrize("label", LABELS)
def test_draw_shape_is_deterministic_for_a_seed(label):
    a = np.asarray(draw_shape(label, np.random.default_rng(7)))
    b = np.asarray(draw_shape(label, np.random.default_rng(7)))
    c = np.asarray(draw_shape(label, np.random.default_rng(8)))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_make_image_bytes_is_deterministic(fmt):
    for label in LABELS:
        assert make_image_bytes(label, 3, fmt=fmt) == make_image_bytes(label, 3, fmt=fmt)
        assert make_image_bytes(label, 3, fmt=fmt) != make_image_bytes(label, 4, fmt=fmt)
    # The same seed gives different pictures for different labels.
    assert len({make_image_bytes(label, 3, fmt=fmt) for label in LABELS}) == 3


@pytest.mark.parametrize("label", LABELS)
def test_each_label_draws_a_shape_apart_from_the_background(label):
    rng = np.random.default_rng(11)
    for _ in range(20):
        mask = _shape_mask(draw_shape(label, rng, 128))
        share = mask.mean()
        # 30-80 % of the side: from a few percent of the area up to about two thirds.
        assert 0.015 < share < 0.70, share
        # The shape stays inside the image: the border rows and columns are background.
        assert not mask[0].any() and not mask[-1].any()
        assert not mask[:, 0].any() and not mask[:, -1].any()


def _fill_ratio(im: Image.Image) -> float:
    """How much of its bounding box the shape fills: circle ~0.79, square 0.6-1, triangle <= 0.5.

    Edge pixels count by how far their colour has moved from the background towards the fill
    (their coverage), so anti-aliased rims do not inflate small shapes."""
    arr = np.asarray(im, dtype=np.float64)
    background = np.median(arr[:4, :4].reshape(-1, 3), axis=0)
    distance = np.linalg.norm(arr - background, axis=2)
    mask = distance > 60.0
    coverage = np.clip(distance / np.median(distance[mask]), 0.0, 1.0) * (distance > 30.0)
    # Rows / columns with at least 3 shape pixels: a stray noise pixel does not stretch the box.
    rows, cols = np.nonzero(mask.sum(axis=1) >= 3)[0], np.nonzero(mask.sum(axis=0) >= 3)[0]
    box = coverage[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return float(box.mean())


def test_shapes_have_their_geometry():
    rng = np.random.default_rng(5)
    for _ in range(15):
        circle = _fill_ratio(draw_shape("circle", rng, 160))
        square = _fill_ratio(draw_shape("square", rng, 160))
        triangle = _fill_ratio(draw_shape("triangle", rng, 160))
        assert 0.72 < circle < 0.82, circle
        assert square > 0.585, square
        assert triangle < 0.575, triangle


def test_unknown_label_is_refused():
    with pytest.raises(ValueError):
        draw_shape("hexagon", np.random.default_rng(0))
    with pytest.raises(ValueError):
        make_image_bytes("hexagon", 0)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("label", LABELS)
def test_bytes_decode_through_the_worker_path(label, fmt):
    data = make_image_bytes(label, 1, size=96, fmt=fmt)
    assert Image.open(BytesIO(data)).format == fmt
    arr = decode_image(data, (64, 64), "rgb")
    assert arr.shape == (64, 64, 3) and arr.dtype == np.uint8
    assert arr.std() > 5  # a shape, not a flat colour


def test_encode_image_formats():
    im = draw_shape("circle", np.random.default_rng(0), 64)
    assert Image.open(BytesIO(encode_image(im, "png"))).format == "PNG"
    assert Image.open(BytesIO(encode_image(im, "jpg", quality=75))).format == "JPEG"
    with pytest.raises(ValueError):
        encode_image(im, "TIFF")


def test_random_examples_mix_labels_sizes_and_formats():
    examples = random_examples(30, seed=2)
    assert examples == random_examples(30, seed=2)
    assert examples != random_examples(30, seed=3)
    assert len(examples) == 30
    assert Counter(label for label, _ in examples) == {label: 10 for label in LABELS}
    sizes, formats = set(), set()
    for _, data in examples:
        im = Image.open(BytesIO(data))
        assert im.width == im.height and 64 <= im.width <= 160
        sizes.add(im.width)
        formats.add(im.format)
        assert decode_image(data, (64, 64), "rgb").shape == (64, 64, 3)
    assert formats == {"PNG", "JPEG"}
    assert len(sizes) > 5


def test_generator_does_not_import_tensorflow():
    code = "import sys, demo.shapes, demo.varied, demo.heldout; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def _angles(polygon: np.ndarray) -> np.ndarray:
    """Interior angles (degrees) of a convex polygon."""
    before, after = np.roll(polygon, 1, axis=0) - polygon, np.roll(polygon, -1, axis=0) - polygon
    cos = (before * after).sum(axis=1) / np.linalg.norm(before, axis=1) / np.linalg.norm(after, axis=1)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def test_varied_shapes_keep_their_labels_well_defined():
    """The rule of demo/varied.py: squares stay rectangles (stretched along their sides, then
    turned: never a rhombus) up to 2:1 at any angle, triangles keep angles >= 30 degrees,
    circles stay ellipses up to 2:1."""
    from demo.varied import _unit

    rng = np.random.default_rng(3)
    turns = []
    for _ in range(200):
        square = _unit("square", rng)
        assert np.allclose(_angles(square), 90.0)
        sides = np.linalg.norm(np.roll(square, -1, axis=0) - square, axis=1)
        assert 1.0 <= sides.max() / sides.min() <= 2.0 + 1e-9
        turns.append(math.degrees(math.atan2(*(square[1] - square[0])[::-1])) % 90)
        triangle = _unit("triangle", rng)
        assert _angles(triangle).min() >= 30.0 - 1e-9
        circle = _unit("circle", rng)
        radii = np.linalg.norm(circle, axis=1)
        assert radii.max() / radii.min() <= 2.0 + 1e-9
    # Every angle, 45 degrees (a "diamond") included: the label does not depend on it.
    assert np.histogram(turns, bins=9, range=(0, 90))[0].min() > 5


@pytest.mark.parametrize("module", ["varied", "heldout"])
def test_wide_generators_are_deterministic_and_decode(module):
    if module == "varied":
        from demo.varied import varied_examples as make
    else:
        from demo.heldout import heldout_set as make
    examples = make(12, 4)
    assert examples == make(12, 4) and examples != make(12, 5)
    assert Counter(label for label, _ in examples) == {label: 4 for label in LABELS}
    for _, data in examples:
        arr = decode_image(data, (64, 64), "rgb")
        assert arr.shape == (64, 64, 3) and arr.std() > 2


def test_heldout_draws_with_its_own_code():
    """demo/heldout.py takes only the label names from demo.shapes, and nothing from
    demo.varied: its images test what the model learnt, not the training generator's quirks."""
    import ast

    tree = ast.parse((Path(__file__).resolve().parents[1] / "demo" / "heldout.py").read_text())
    imported = {(node.module, alias.name) for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert {m for m, _ in imported if m and m.startswith("demo")} == {"demo.shapes"}
    assert {name for module, name in imported if module == "demo.shapes"} == {"LABELS"}
    assert not any(isinstance(node, ast.Import) and any(a.name.startswith("demo") for a in node.names)
                   for node in ast.walk(tree))
