"""Virtual key material: generating keys, and hashing and checking them.

Only the SHA-256 of a key is stored. A key carries 240 random bits, so a plain fast hash is
enough (no salt or slow KDF: there is nothing to brute-force) and lets the gateway find a
key by its hash in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import NamedTuple

KEY_MARKER = "tw-"
"""What every Tollway key starts with, so secret scanners and people can recognise one."""

PREFIX_LENGTH = 12
"""How much of a key is kept in the clear, to tell keys apart in lists and logs."""

_RANDOM_BYTES = 30  # 40 url-safe characters


class GeneratedKey(NamedTuple):
    """A new key: the secret to hand out once, and what the store keeps of it."""

    key: str
    prefix: str
    key_hash: str

    def __repr__(self) -> str:
        return f"GeneratedKey(prefix={self.prefix!r})"


def generate_key() -> GeneratedKey:
    """A new random key (``tw-`` and 40 url-safe characters), its prefix and its hash."""
    key = KEY_MARKER + secrets.token_urlsafe(_RANDOM_BYTES)
    return GeneratedKey(key, key_prefix(key), hash_key(key))


def key_prefix(key: str) -> str:
    """The visible part of ``key``."""
    return key[:PREFIX_LENGTH]


def hash_key(key: str) -> str:
    """The SHA-256 of ``key``, as lower-case hex."""
    # A header that is not UTF-8 reaches us with its bytes as surrogates: hashed as sent, it
    # is an unknown key (401), not a failure to encode it (500).
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def verify(key: str, stored_hash: str) -> bool:
    """Whether ``key`` hashes to ``stored_hash``, compared in constant time."""
    return hmac.compare_digest(hash_key(key), stored_hash.lower())
