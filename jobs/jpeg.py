"""A JPEG's segments up to its first scan, read without decoding: the API's check reads the frame
header this way, the worker's one-call decode the EXIF block."""

SOS = 0xDA  # start of scan: the compressed data follows this segment


def header_segments(data: bytes):
    """Yield (marker, start, end) for each segment after the start-of-image marker, through the
    first scan's header: its bytes after the length field are data[start:end]. Stops early at
    anything not plain (no marker where one should be, a length under 2 or past the end of the
    data), so a caller that never sees SOS knows the header is not whole."""
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker, length = data[at + 1], int.from_bytes(data[at + 2:at + 4], "big")
        end = at + 2 + length
        if length < 2 or end > len(data):
            return
        yield marker, at + 4, end
        if marker == SOS:
            return
        at = end
