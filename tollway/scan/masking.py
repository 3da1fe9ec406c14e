"""How a found key is shown: masked, or as a fingerprint; never in full."""

from __future__ import annotations

import hashlib

ELLIPSIS = "…"


def mask(secret: str, prefix: str = "") -> str:
    """``sk-proj-Ab…wxyz``: the known prefix, two (or four) characters, and the last four."""
    known = prefix if prefix and secret.startswith(prefix) else ""
    random_length = len(secret) - len(known)
    # Short keys (an AWS key id has 16 random characters) give away less at each end, so
    # that at most a quarter of the random part is ever visible.
    if random_length < 24:
        head, tail = 2, 2
    else:
        head, tail = (2 if known else 4), 4
    if random_length < 8:
        return known + ELLIPSIS
    return secret[: len(known) + head] + ELLIPSIS + secret[-tail:]


def fingerprint(secret: str) -> str:
    """A short, stable digest that tells keys apart without revealing them."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]
