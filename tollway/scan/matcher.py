"""Finding key shapes in one text: which detector, where, and the name it is assigned to."""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field

from tollway.scan.detectors import DETECTORS, Detector

# A line carrying this marker is never reported (for test fixtures and known false alarms).
ALLOW_MARKER = re.compile(r"tollway-scan:\s*ignore")
# Placeholders (``xxxxxxxx``, ``00000000``) and identifiers that happen to have the right
# length (``hf_requiredCharacteristicTypesForDisplay``) are not keys.
_REPEATED_CHARACTER = re.compile(r"(.)\1{5}")
_IDENTIFIER_WORDS = re.compile(r"(?:[A-Z]?[a-z]{2,}|_)+")
# The name a key is assigned to on its line: ``export NAME=``, ``NAME: "``, ``["NAME"] = "``.
_ASSIGNED_NAME = re.compile(r"""([A-Za-z_][A-Za-z0-9_]*)["'`\]]{0,2}[ \t]*[=: \t][ \t]*["'`]?$""")
_ENVIRONMENT_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


@dataclass(frozen=True, slots=True)
class KeyMatch:
    """One key found in a text: the detector, the key itself, and where it starts."""

    detector: Detector
    secret: str = field(repr=False)
    line: int
    """1-based line of the text."""
    column: int
    """1-based column of the key's first character."""
    variable: str | None
    """The environment-style (``UPPER_SNAKE``) name the key is assigned to, if any."""


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text`` taken as a sample of its own characters."""
    if not text:
        return 0.0
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in Counter(text).values())


def is_plausible(detector: Detector, secret: str) -> bool:
    """Whether ``secret`` looks random enough to be a real key of ``detector``'s shape."""
    if detector.reject is not None and detector.reject.fullmatch(secret):
        return False
    body = secret[len(detector.prefix) :] if secret.startswith(detector.prefix) else secret
    if _REPEATED_CHARACTER.search(body) or _IDENTIFIER_WORDS.fullmatch(body):
        return False
    return shannon_entropy(body) >= detector.min_entropy


def find_keys(text: str, detectors: tuple[Detector, ...] = DETECTORS) -> list[KeyMatch]:
    """Every plausible key in ``text``, in reading order; earlier detectors win overlaps."""
    lowered = text.lower()
    line_starts = _line_starts(text)
    taken: list[tuple[int, int]] = []
    matches: list[KeyMatch] = []
    for detector in detectors:
        if not any(keyword in lowered for keyword in detector.keywords):
            continue
        for found in detector.pattern.finditer(text):
            start, end = found.span("secret")
            secret = found.group("secret")
            if any(start < e and s < end for s, e in taken) or not is_plausible(detector, secret):
                continue
            line_index = bisect_right(line_starts, start) - 1
            line_start = line_starts[line_index]
            line_end = text.find("\n", start)
            if ALLOW_MARKER.search(text, line_start, len(text) if line_end < 0 else line_end):
                continue
            taken.append((start, end))
            variable = _assigned_name(text[line_start:start])
            matches.append(
                KeyMatch(detector, secret, line_index + 1, start - line_start + 1, variable)
            )
    matches.sort(key=lambda match: (match.line, match.column))
    return matches


def _line_starts(text: str) -> list[int]:
    return [0, *(found.end() for found in re.finditer("\n", text))]


def _assigned_name(before: str) -> str | None:
    found = _ASSIGNED_NAME.search(before)
    if found is None or not _ENVIRONMENT_NAME.fullmatch(found.group(1)):
        return None
    return found.group(1)
