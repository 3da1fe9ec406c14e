"""The wait an upstream asks for before a retry, as a ``retry-after`` value: its
``retry-after-ms`` / ``retry-after`` headers, or a 429's ``x-ratelimit-reset-*``."""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Mapping


def retry_after(headers: Mapping[str, str]) -> str | None:
    """How long the upstream asks to wait, as a ``retry-after`` value: its ``retry-after-ms``
    (OpenAI's and Azure's, more precise) in seconds when it sent a valid one, else its
    ``retry-after`` when that is one (seconds or an HTTP date).

    A value that is neither (``inf``, ``nan``, ``-5``, words) is no wait at all: taken as one,
    ``inf`` and ``nan`` failed the error's making (a rate limit became a 502 that counted
    against the circuit), a negative one rested the deployment for no time, and the client
    was sent the upstream's words as its ``retry-after``."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        seconds = _seconds(millis)
        if seconds is not None:
            return _decimal(seconds / 1000)
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return _decimal(seconds)
    try:
        email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return value


_RESETS = ("requests", "tokens")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def reset_wait(headers: Mapping[str, str]) -> str | None:
    """The wait a 429 says only in OpenAI's ``x-ratelimit-reset-requests`` /
    ``x-ratelimit-reset-tokens`` (``1s``, ``6m0s``, ``20ms``), as a ``retry-after`` value: the
    reset of the limit its ``x-ratelimit-remaining-*`` says is spent, else the later of the two
    (by then both have reset)."""
    resets: dict[str, float] = {}
    for limit in _RESETS:
        value = headers.get(f"x-ratelimit-reset-{limit}")
        seconds = _duration(value) if value else None
        if seconds is not None:
            resets[limit] = seconds
    spent = [
        wait for limit, wait in resets.items()
        if headers.get(f"x-ratelimit-remaining-{limit}", "").strip() == "0"
    ]  # fmt: skip
    waits = spent or list(resets.values())
    return _decimal(max(waits)) if waits else None


def _duration(value: str) -> float | None:
    """A Go duration (``6m0s``, ``1.5s``, ``20ms``) in seconds, else None."""
    value = value.strip()
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _seconds(value: str) -> float | None:
    """``value`` as a number of seconds that can be waited (finite, not negative), else None
    (also for a number that is not one, ``nan``, and for an HTTP date)."""
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < math.inf else None


def _decimal(seconds: float) -> str:
    """``seconds`` as delta-seconds, to the millisecond (``1.5``, ``30``)."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")
