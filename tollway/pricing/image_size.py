"""An image's width and height, read from the first bytes of its base64 data.

PNG, GIF and WebP state their size in a fixed header (the first 30 bytes); JPEG in its
start-of-frame segment, after any metadata segments (EXIF, ICC profiles), which are skipped
by their stated lengths. Only a bounded prefix of the data is decoded, however large the
image or however its header lies: a size that cannot be read from that prefix is ``None``,
and the caller then assumes the largest image the provider charges for.
"""

from __future__ import annotations

import base64
import binascii
import struct

JPEG_SCAN_BYTES = 262_144
"""How far into a JPEG the start-of-frame is looked for (metadata segments are at most
64 KiB each; a camera's EXIF with a thumbnail and an ICC profile fit well within this)."""
JPEG_SEGMENTS = 256
"""How many segments (and fill bytes) before the frame a JPEG may have: real ones have a
few dozen; only this many are read, each by decoding the dozen characters that hold its
marker and length, never the data between."""
_HEADER_BYTES = 32
# Start-of-frame markers: baseline, progressive, lossless... (not DHT 0xC4, JPG 0xC8, DAC 0xCC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length: TEM, RST0-7, SOI.
_STANDALONE = frozenset((0x01, *range(0xD0, 0xD9)))


def image_size(data: str) -> tuple[int, int] | None:
    """(width, height) of the base64 ``data`` of a PNG, JPEG, GIF or WebP; ``None`` when
    it is none of these, or its header is cut short, malformed or says 0."""
    head = _decode(data, 0, _HEADER_BYTES)
    if head is None:
        return None
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        size = _png(head)
    elif head[:6] in (b"GIF87a", b"GIF89a"):
        size = _gif(head)
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        size = _webp(head)
    elif head[:2] == b"\xff\xd8":
        size = _jpeg(data)
    else:
        return None
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return size


def _decode(data: str, start: int, size: int) -> bytes | None:
    """Bytes ``start`` to ``start + size`` of base64 ``data`` (fewer where it ends sooner),
    decoding only the characters that hold them (standard or URL-safe alphabet)."""
    first = start // 3
    chars = data[first * 4 : (start + size + 2) // 3 * 4]
    chars = chars[: len(chars) // 4 * 4]
    try:
        if "-" in chars or "_" in chars:
            raw = base64.urlsafe_b64decode(chars)
        else:
            raw = base64.b64decode(chars, validate=True)
    except (binascii.Error, ValueError):
        return None
    offset = start - first * 3
    return raw[offset : offset + size]


def _png(head: bytes) -> tuple[int, int] | None:
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _gif(head: bytes) -> tuple[int, int] | None:
    if len(head) < 10:
        return None
    width, height = struct.unpack("<HH", head[6:10])
    return width, height


def _webp(head: bytes) -> tuple[int, int] | None:
    if len(head) < 30:
        return None
    chunk = head[12:16]
    if chunk == b"VP8 ":  # lossy: a 14-bit size after the frame's start code
        if head[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: 14 bits each, minus one, after the signature byte
        if head[20] != 0x2F:
            return None
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24 bits each, minus one, of the canvas
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return width, height
    return None


def _jpeg(data: str) -> tuple[int, int] | None:
    """Walk the segments from after SOI to the first start-of-frame, skipping each by its
    stated length: at most ``JPEG_SEGMENTS`` steps within ``JPEG_SCAN_BYTES``."""
    at = 2
    for _ in range(JPEG_SEGMENTS):
        if at + 9 > JPEG_SCAN_BYTES:
            return None
        segment = _decode(data, at, 9)
        if segment is None or len(segment) < 4 or segment[0] != 0xFF:
            return None
        marker = segment[1]
        if marker == 0xFF:  # a fill byte before a marker
            at += 1
            continue
        if marker in _STANDALONE:
            at += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or the scan: no frame header before it
            return None
        length = int.from_bytes(segment[2:4], "big")
        if length < 2:
            return None
        if marker in _SOF_MARKERS:
            if len(segment) < 9 or length < 7:
                return None
            height, width = struct.unpack(">HH", segment[5:9])
            return width, height
        at += 2 + length
    return None
