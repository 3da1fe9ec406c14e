"""Request log values every store takes, and placeholders for rows a store refuses anyway.

What a store refuses in a request log row (tried on both backends, tests in
tests/integration/store/test_request_log.py):

- text longer than its column (PostgreSQL), holding a NUL (PostgreSQL's text and JSONB), or
  holding a lone surrogate, which has no UTF-8 (both drivers fail to encode it);
- an integer outside the column's 64 bits (SQLite's driver raises ``OverflowError``, asyncpg a
  ``DataError``): token counts and the cost follow what an upstream reported, unbounded;
- a required value left out (the writer never leaves one out; a row from elsewhere may).

The writer prevents the first two at the source: text is cut, NUL dropped and a lone
surrogate replaced by ``?`` (``clean_text``), integers are held to their column's range
(``clamp``). Whatever a store still refuses (a constraint or trigger an operator added, a
value refused for a reason of its own) leaves a placeholder in the row's place: the same
``chain_id``, ``seq``, ``prev_hash`` and ``hash``, so the chain stays whole, the reason in
``refused``, and what could be kept of the row (``placeholders``). The row as it was made is
set aside in the spool's ``rejected/`` directory; ``tollway logs verify --rejected`` checks
each placeholder against it (telemetry/chain.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tollway.store.request_log import INSERT_COLUMNS

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

TEXT_LIMITS = {
    "request_id": 128, "principal_kind": 16, "key_id": 64, "user_id": 320, "team_id": 200,
    "service": 200, "endpoint": 16, "model": 200, "served_model": 200, "deployment_id": 200,
    "provider": 64, "error_code": 64, "cache": 16, "source_ip": 64,
}  # fmt: skip
"""Column lengths of the text a request fills: longer values (a client's model name, say)
are cut, never refused."""

COUNTS = (
    "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens",
    "cache_write_1h_tokens", "cost_micros", "tool_calls", "tool_cost_micros",
)  # fmt: skip
"""The 64-bit integers whose values come from outside (an upstream's usage)."""

_REQUIRED_TEXT = frozenset({"request_id", "endpoint", "model"})

REASON_LIMIT = 200
"""The length of ``refused``."""


def needs_cleaning(value: str, limit: int) -> bool:
    """Whether a store could refuse ``value`` in a column of ``limit`` characters."""
    return len(value) > limit or unstorable(value)


def unstorable(value: str) -> bool:
    """Whether ``value`` holds what no store takes in text: a NUL or a lone surrogate. Of
    texts joined, as of each alone (a surrogate next to another is still not UTF-8)."""
    return "\x00" in value or not (value.isascii() or _encodes(value))


def _encodes(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def clean_text(value: str, limit: int | None = None) -> str:
    """``value`` without NUL, lone surrogates as ``?``, cut to ``limit`` characters."""
    value = value.replace("\x00", "")
    if not value.isascii() and not _encodes(value):
        value = value.encode("utf-8", "replace").decode()
    return value if limit is None else value[:limit]


def clamp(value: int) -> int:
    """``value`` held to a 64-bit column's range."""
    return min(max(value, INT64_MIN), INT64_MAX)


def reason_text(reason: str) -> str:
    """A refusal's reason as ``refused`` keeps it: printable, cut to its column."""
    printable = "".join(char if char.isprintable() else " " for char in clean_text(reason))
    return printable[:REASON_LIMIT] or "refused"


def placeholders(row: Mapping[str, Any], reason: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """What to store in place of ``row`` (a mapping of its columns), which a store refused
    for ``reason``: first the row reduced (no bodies; text printable and cut, numbers in
    range), then, should that be refused too, a bare one (its time, request id and links;
    nothing else: text empty, numbers 0). Both keep ``chain_id``, ``seq``, ``prev_hash``
    and ``hash``, and say ``reason`` in ``refused``."""
    refused = reason_text(reason)
    reduced = dict(row)
    for name, limit in TEXT_LIMITS.items():
        value = reduced.get(name)
        if isinstance(value, str):
            reduced[name] = "".join(c for c in clean_text(value, limit) if c.isprintable())
        else:
            reduced[name] = "" if name in _REQUIRED_TEXT else None
    for name in (*COUNTS, "attempts", "fallbacks", "status"):
        value = reduced.get(name)
        reduced[name] = clamp(value) if isinstance(value, int) else 0
    for name in ("stream", "usage_estimated"):
        reduced[name] = bool(reduced.get(name))
    for name in ("latency_ms", "ttft_ms"):
        value = reduced.get(name)
        if not isinstance(value, int | float) or not math.isfinite(value):
            reduced[name] = None
    guardrails = reduced.get("guardrails") or []
    reduced["guardrails"] = [clean_text(str(name), 64) for name in guardrails]
    reduced.update(prompt=None, response=None, refused=refused)
    bare = {
        **dict.fromkeys(INSERT_COLUMNS),
        "at": row["at"], "chain_id": row["chain_id"], "seq": row["seq"],
        "request_id": reduced["request_id"] or "", "endpoint": "", "model": "",
        "attempts": 0, "fallbacks": 0, "status": 0, "stream": False,
        **dict.fromkeys(COUNTS, 0), "usage_estimated": False, "guardrails": [],
        "prev_hash": row.get("prev_hash"), "hash": row.get("hash"), "refused": refused,
    }  # fmt: skip
    return reduced, bare
