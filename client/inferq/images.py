"""An image as the API takes it: encoded bytes. The caller may hold a path, bytes, an open file
or a PIL image; none of these needs Pillow installed, except a PIL image itself."""
import io
import os

# The formats the API accepts, by their first bytes: a body of one of these can be sent raw.
_MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"),
          (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"), (b"BM", "image/bmp"))


def image_bytes(image) -> bytes:
    """The encoded bytes of `image`: a path (str or os.PathLike), bytes-like, a binary file
    object, or a PIL image (sent as PNG, losslessly)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as f:
            return f.read()
    if hasattr(image, "read"):
        data = image.read()
        if not isinstance(data, bytes):
            raise TypeError("open the image file in binary mode ('rb')")
        return data
    if hasattr(image, "save") and hasattr(image, "mode"):  # a PIL image
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()
    raise TypeError(f"an image is a path, bytes, a binary file or a PIL image, not "
                    f"{type(image).__name__}")


def media_type(data: bytes) -> str | None:
    """The image type `data` starts like, or None when it is none the API takes."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None
