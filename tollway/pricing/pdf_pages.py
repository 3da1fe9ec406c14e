"""How many pages a PDF has, read from its base64 data without rendering it.

A PDF's page tree ends in page objects (``/Type /Page``), and each of its nodes states how
many pages lie below it (``/Pages`` nodes' ``/Count``, the root's being the whole
document's). Both are found by scanning the file's bytes, and the inflated bytes of its
compressed object streams (``/ObjStm``, PDF 1.5 and later, where they may be hidden). The
larger of the two figures is the count: an earlier revision's objects left in the file, an
outline's ``/Count``, can only raise it, never lower it below the pages a provider renders.

The work is bounded: a PDF larger than ``PDF_SCAN_BYTES``, object streams inflating to more
than ``INFLATED_BYTES`` in all, or more than ``OBJECT_STREAMS`` of them, are not counted.
Nor is a file that is not a PDF, is cut short (no ``%%EOF`` at its end), is encrypted (its
object streams unreadable), or whose object streams are not plain Flate: the count is then
``None``, and the caller assumes the most pages the provider accepts.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib

PDF_SCAN_BYTES = 48 * 1024 * 1024
"""The largest decoded PDF counted (the providers take at most 32 to 50 MB a file)."""
INFLATED_BYTES = 64 * 1024 * 1024
"""How much the object streams of one PDF may inflate to, in all."""
OBJECT_STREAMS = 10_000
"""How many object streams one PDF may have."""
_HEADER_WITHIN = 1024  # readers accept a header after some leading bytes
_EOF_WITHIN = 1024  # the end-of-file marker, within the last bytes (trailing junk allowed)
_DICT_WITHIN = 4096  # how far before an object stream's /Type its object starts
_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z0-9#_.-])")
_COUNT = re.compile(rb"/Count\s+(\d{1,9})(?![\d.])")
_OBJECT_STREAM = re.compile(rb"/Type\s*/ObjStm(?![A-Za-z0-9#_.-])")
_STREAM = re.compile(rb"stream\r?\n")
_FLATE_ONLY = re.compile(rb"/Filter\s*(?:/FlateDecode|\[\s*/FlateDecode\s*\])(?![A-Za-z0-9])")


def pdf_pages(data: str, inflated_bytes: int = INFLATED_BYTES) -> int | None:
    """The pages of the base64 PDF ``data``; ``None`` when they cannot be counted surely
    (``inflated_bytes``: how much its object streams may inflate to, in all)."""
    if len(data) // 4 * 3 > PDF_SCAN_BYTES:
        return None
    try:
        if "-" in data or "_" in data:  # the URL-safe alphabet
            data = data.replace("-", "+").replace("_", "/")
        raw = base64.b64decode(data)
    except (binascii.Error, ValueError):
        return None
    if raw.find(b"%PDF-", 0, _HEADER_WITHIN) < 0 or raw.rfind(b"%%EOF", -_EOF_WITHIN) < 0:
        return None
    if b"/Encrypt" in raw:
        return None
    parts = [raw]
    if _OBJECT_STREAM.search(raw):
        inflated = _object_streams(raw, inflated_bytes)
        if inflated is None:
            return None
        parts += inflated
    pages = sum(len(_PAGE.findall(part)) for part in parts)
    counts = [int(count) for part in parts for count in _COUNT.findall(part)]
    found = max(pages, *counts) if counts else pages
    return found or None


def _object_streams(raw: bytes, budget: int) -> list[bytes] | None:
    """The inflated contents of ``raw``'s object streams; ``None`` when one cannot be read
    (another filter, predictors, a cut or corrupt stream) or the bounds are passed."""
    view = memoryview(raw)
    inflated: list[bytes] = []
    for found in _OBJECT_STREAM.finditer(raw):
        if len(inflated) >= OBJECT_STREAMS:
            return None
        start = raw.rfind(b"obj", max(0, found.start() - _DICT_WITHIN), found.start())
        stream = _STREAM.search(raw, found.end(), found.end() + _DICT_WITHIN)
        if start < 0 or stream is None:
            return None
        dictionary = raw[start : stream.start()]
        if b"/DecodeParms" in dictionary or b"/Filter" not in dictionary:
            # Predictors, or no filter: a stored stream is plain to see in ``raw`` already.
            if b"/Filter" not in dictionary:
                continue
            return None
        if not _FLATE_ONLY.search(dictionary):  # Flate alone: a chain is not read
            return None
        if budget <= 0:  # (a limit of 0 is none to zlib)
            return None
        inflater = zlib.decompressobj()
        try:
            content = inflater.decompress(view[stream.end() :], budget)
        except zlib.error:
            return None
        if not inflater.eof:  # cut short, or more than is left of the budget
            return None
        budget -= len(content)
        inflated.append(content)
    return inflated
