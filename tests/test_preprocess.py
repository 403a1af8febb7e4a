"""Decoding inputs in the worker (Pillow and NumPy only)."""
import io

import numpy as np
import pytest
from PIL import Image

from worker.preprocess import DecodeError, decode_image


def encode(im, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode,color", [("RGB", (10, 20, 30)), ("L", 128), ("CMYK", (0, 255, 0, 0)),
                                        ("I;16", 40000), ("P", 3)])
def test_any_mode_becomes_rgb_uint8_of_the_target_size(mode, color):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    arr = decode_image(encode(Image.new(mode, (40, 30), color), fmt), (16, 12))
    assert arr.shape == (12, 16, 3) and arr.dtype == np.uint8


def test_sixteen_bit_images_are_scaled_not_clipped():
    im = Image.new("I;16", (8, 8), 1000)
    im.putpixel((0, 0), 60000)
    arr = decode_image(encode(im), (8, 8), "grayscale")
    assert arr.shape == (8, 8, 1)
    assert arr[0, 0, 0] == 255 and 0 < arr[4, 4, 0] < 20


def test_transparency_is_composited_on_white():
    im = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    arr = decode_image(encode(im), (8, 8))
    assert (arr == 255).all()


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 20, 20))  # white left half
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    arr = decode_image(encode(im, "JPEG", exif=exif, quality=95), (20, 40))
    assert arr.shape == (40, 20, 3)
    assert arr[5, 10].mean() > 200 and arr[35, 10].mean() < 50  # white now on top


def test_large_jpeg_is_decoded_with_draft_to_the_target_size():
    im = Image.effect_noise((640, 480), 30).convert("RGB")
    arr = decode_image(encode(im, "JPEG", quality=90), (64, 64))
    assert arr.shape == (64, 64, 3)


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("P", (8, 8), i) for i in (1, 2)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert decode_image(buf.getvalue(), (8, 8)).shape == (8, 8, 3)


@pytest.mark.parametrize("data", [b"", b"text, not an image", encode(Image.new("RGB", (64, 64)),
                                                                      "JPEG")[:200],
                                  encode(Image.new("RGB", (8, 8)), "TIFF")])
def test_undecodable_or_refused_input_raises_decode_error(data):
    with pytest.raises(DecodeError):
        decode_image(data, (8, 8))
