"""Store records as admin API JSON (dates in ISO 8601, never a hash or a secret), and text
as CSV cells no spreadsheet takes for a formula."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

_NEVER_SHOWN = frozenset({"key_hash", "ciphertext", "secret"})
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def record_json(record: object) -> dict[str, Any]:
    """A frozen store record as a JSON-ready dict."""
    assert dataclasses.is_dataclass(record) and not isinstance(record, type)
    return {
        field.name: _value(getattr(record, field.name))
        for field in dataclasses.fields(record)
        if field.name not in _NEVER_SHOWN
    }


def _value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_value(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _value(item) for key, item in value.items()}
    return value


def csv_text(value: str) -> str:
    """``value`` as a CSV cell a spreadsheet shows as text: one starting as a formula does
    (``=``, ``+``, ``-``, ``@``, a tab or carriage return) gets a ``'`` in front.

    The request log's text is often the client's (the model it asked for, its
    ``x-request-id``): opened in a spreadsheet, ``=HYPERLINK(...)`` would be a live link
    or worse. Numbers are not text and are never changed; JSON keeps every value as it is.
    """
    return "'" + value if value.startswith(_FORMULA_STARTS) else value
