"""Masking a call's credential wherever an upstream quotes it (error bodies, stream events).

Some providers echo the key they were sent; nothing the gateway passes on may carry it back.
"""

from __future__ import annotations

import functools
import re

Secrets = str | tuple[str, ...] | None
"""What a call's credential is made of (a key; an AWS key id, secret and session token),
masked in the upstream's errors wherever the upstream quotes it."""
WHOLE_KEY = 8  # characters from which a key is masked even inside longer words
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
"""Characters of a key no JSON writer escapes; any other may come escaped in an echo."""
_SHORT_ESCAPES = dict(zip('/"\\\b\f\n\r\t', '/"\\bfnrt', strict=True))
"""JSON's two-character escapes: the character after the backslash."""


def scrub(raw: bytes, secret: str | tuple[str, ...]) -> bytes:
    """``raw`` with ``secret`` (each of them, for a tuple) masked wherever it occurs.

    Some providers echo the key they were sent in auth errors, and a JSON writer may escape
    some of its characters (PHP writes ``/`` as ``\\/``, .NET ``+`` as ``\\u002B``): a key
    with such characters (a base64 one: a Bedrock API key, an AWS session token) is masked
    in those spellings too, or the client's JSON parser would read the key back whole. A
    short key (``x``, ``none``: local servers take any) is masked only where it stands
    alone, so that ``max_tokens`` does not become ``ma***_tokens`` in the error the client
    reads.
    """
    if isinstance(secret, tuple):
        # The longest first: a session token may hold a shorter part of the credential.
        for part in sorted(secret, key=len, reverse=True):
            raw = scrub(raw, part)
        return raw
    if len(secret) >= WHOLE_KEY:
        raw = raw.replace(secret.encode(), b"***")
        escaped = _escaped(secret)
        if escaped is not None and b"\\" in raw:
            raw = escaped.sub(b"***", raw)
        return raw
    word = rb"[A-Za-z0-9_\-]"
    pattern = rb"(?<!" + word + rb")" + re.escape(secret.encode()) + rb"(?!" + word + rb")"
    return re.sub(pattern, b"***", raw)


@functools.lru_cache(maxsize=64)
def _escaped(secret: str) -> re.Pattern[bytes] | None:
    """``secret`` as JSON may spell it, each character other than a letter, digit, ``-``,
    ``_``, ``.`` or ``~`` as itself or escaped (``\\/``, ``\\u002b`` in either case);
    None when it has no such character (its only spelling is itself)."""
    if all(char in _PLAIN for char in secret):
        return None
    pattern = []
    for char in secret:
        if char in _PLAIN:
            pattern.append(re.escape(char.encode()))
            continue
        spellings = [re.escape(char.encode())]
        if ord(char) < 0x10000:
            spellings.append(rb"(?i:\\u" + f"{ord(char):04x}".encode() + b")")
        if char in _SHORT_ESCAPES:
            spellings.append(re.escape(b"\\" + _SHORT_ESCAPES[char].encode()))
        pattern.append(b"(?:" + b"|".join(spellings) + b")")
    return re.compile(b"".join(pattern))
