"""Deterministic embedding vectors and the per-simulator cache that keeps them cheap.

A vector is seeded by a BLAKE2 hash of its input (stable across processes, unlike ``hash()``),
drawn as signed bytes, normalised to unit length and rounded to float32, so the ``float`` and
``base64`` encodings of one input carry exactly the same numbers.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import sys
from array import array
from typing import Any

import orjson

_DEFAULT_MAX_ENTRIES = 1024


class Embedding:
    """One input's vector, with its two wire encodings computed on first use."""

    __slots__ = ("_b64", "_floats", "_json", "values")

    def __init__(self, values: array[float]) -> None:
        self.values = values
        self._json: orjson.Fragment | None = None
        self._b64: str | None = None

    def as_json(self) -> orjson.Fragment:
        """The float list, pre-serialised so orjson copies it instead of re-encoding."""
        if self._json is None:
            self._json = orjson.Fragment(orjson.dumps(self.values.tolist()))
        return self._json

    def as_base64(self) -> str:
        """Base64 of the little-endian float32 bytes, what the OpenAI SDK decodes."""
        if self._b64 is None:
            data = array("f", self.values)
            if sys.byteorder == "big":
                data.byteswap()
            self._b64 = base64.b64encode(data.tobytes()).decode("ascii")
        return self._b64


def make_vector(key: str, dimensions: int) -> array[float]:
    """A unit-length float32 vector derived only from ``key`` and ``dimensions``."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    rng = random.Random(int.from_bytes(digest, "little"))
    raw = array("b", rng.randbytes(dimensions))
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return array("f", [x / norm for x in raw])


def input_key(item: Any) -> str:
    """A cache key for one embedding input: a string or a list of token ids."""
    if isinstance(item, str):
        return "s:" + item
    return "t:" + ",".join(str(token) for token in item)


class EmbeddingCache:
    """Vectors by (input, dimensions), first in first out once full."""

    def __init__(self, max_entries: int = _DEFAULT_MAX_ENTRIES) -> None:
        self._max_entries = max_entries
        self._entries: dict[tuple[str, int], Embedding] = {}

    def get(self, key: str, dimensions: int) -> Embedding:
        """The embedding for ``key`` at ``dimensions``, computing it on a miss."""
        entry = self._entries.get((key, dimensions))
        if entry is None:
            if len(self._entries) >= self._max_entries:
                del self._entries[next(iter(self._entries))]
            entry = Embedding(make_vector(key, dimensions))
            self._entries[(key, dimensions)] = entry
        return entry
