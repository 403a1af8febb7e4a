"""Decoding inputs in the worker (Pillow and NumPy only)."""
import io

import numpy as np
import pytest
from PIL import Image

from worker import preprocess
from worker.preprocess import DecodeError, decode_image, jpeg_orientation


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


def _photo(width, height) -> Image.Image:
    """Smooth gradients with noise: a photo's kind of content, at any size."""
    x, y = np.meshgrid(np.linspace(0, 255, width), np.linspace(0, 255, height))
    noise = np.random.default_rng(width * height).integers(0, 40, (height, width, 3))
    arr = np.stack([x, y, 255 - x], axis=-1) * 0.8 + noise
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def _pillow_only(data, size, mode):
    saved, preprocess._plain_jpeg = preprocess._plain_jpeg, lambda *a: None
    try:
        return decode_image(data, size, mode)
    finally:
        preprocess._plain_jpeg = saved


@pytest.mark.parametrize("width,height", [(640, 480), (800, 800), (3000, 2000), (451, 999),
                                          (100, 80)])
@pytest.mark.parametrize("kind", ["baseline", "progressive", "444", "gray"])
def test_plain_jpegs_take_the_one_call_path_and_give_pillows_pixels(width, height, kind):
    im = _photo(width, height)
    if kind == "gray":
        im = im.convert("L")
    data = encode(im, "JPEG", quality=85, progressive=kind == "progressive",
                  subsampling=0 if kind == "444" else -1)
    for size in ((224, 224), (96, 128)):
        for mode, channels in (("rgb", 3), ("grayscale", 1)):
            fast = preprocess._plain_jpeg(data, size, channels)
            assert fast is not None  # the fast path took it
            assert np.array_equal(fast, _pillow_only(data, size, mode))
            assert np.array_equal(decode_image(data, size, mode), fast)


def test_turned_cmyk_or_damaged_jpegs_go_to_pillow():
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = encode(_photo(64, 32), "JPEG", exif=exif)
    assert jpeg_orientation(turned) == 6 and preprocess._plain_jpeg(turned, (8, 8), 3) is None
    exif[0x0112] = 1
    upright = encode(_photo(64, 32), "JPEG", exif=exif)
    assert jpeg_orientation(upright) == 1 and preprocess._plain_jpeg(upright, (8, 8), 3) is not None
    half_white = Image.new("RGB", (40, 20), (0, 0, 0))
    half_white.paste((255, 255, 255), (0, 0, 20, 20))
    xmp = b'<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    with_xmp = encode(half_white, "JPEG", xmp=xmp, quality=95)
    assert jpeg_orientation(with_xmp) is None  # Pillow turns it by its XMP: Pillow decodes it
    arr = decode_image(with_xmp, (20, 40))
    assert arr[5, 10].mean() > 200 and arr[35, 10].mean() < 50  # white now on top
    cmyk = encode(Image.new("CMYK", (16, 16), (0, 255, 0, 0)), "JPEG")
    assert preprocess._plain_jpeg(cmyk, (8, 8), 3) is None
    assert decode_image(cmyk, (8, 8)).shape == (8, 8, 3)
    whole = encode(_photo(64, 64), "JPEG")
    broken = bytearray(whole)
    at = broken.index(b"\xff\xc4")
    broken[at + 5:at + 7] = b"\xff\xff"  # a Huffman table counting more codes than fit
    for damaged in (bytes(broken), whole[:len(whole) // 2]):  # and a truncated one
        assert preprocess._plain_jpeg(damaged, (8, 8), 3) is None
        with pytest.raises(DecodeError):
            decode_image(damaged, (8, 8))
