"""Value types used in the config schema: durations, secret references and upstream URLs."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, GetCoreSchemaHandler, PlainSerializer
from pydantic_core import core_schema

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``"500ms"``, ``"5s"``, ``"2m"``, ``"1h"`` or a bare number of seconds."""
    seconds = parse_delay(value)
    if seconds == 0:
        raise ValueError("a duration must be greater than zero")
    return seconds


def parse_delay(value: Any) -> float:
    """Seconds as ``parse_duration`` reads them, ``"0s"`` (none) included."""
    if isinstance(value, bool):
        raise ValueError("a duration such as '500ms', '5s' or '2m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration such as '500ms', '5s' or '2m'")
    if seconds < 0:
        raise ValueError("a duration must not be negative")
    return seconds


def _format_duration(seconds: float) -> str:
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:g}s"


Duration = Annotated[
    float, BeforeValidator(parse_duration), PlainSerializer(_format_duration, when_used="json")
]
"""Seconds, written in config as ``"500ms"``, ``"30s"``, ``"2m"``."""

Delay = Annotated[
    float, BeforeValidator(parse_delay), PlainSerializer(_format_duration, when_used="json")
]
"""A ``Duration`` that may be ``"0s"``: a wait that can be left out."""


def _without_credentials(url: str) -> str:
    """``url`` if its authority holds no userinfo (``user:password@``); the error never
    quotes the URL, since the password is in it."""
    _, scheme_end, rest = url.partition("://")
    authority = rest
    for end in "/?#":
        authority = authority.split(end, 1)[0]
    if scheme_end and "@" in authority:
        raise ValueError(
            "credentials in the URL (user:password@) are refused: they would show in logs, "
            "errors and admin answers; give the deployment's key as a reference in api_key "
            "(api_key: env:NAME, file:PATH or vault:NAME) and the URL without them"
        )
    return url


ApiBase = Annotated[str, AfterValidator(_without_credentials)]
"""An upstream's base URL, refused with credentials in it (they belong in ``api_key``)."""


class SecretRef:
    """Where a secret comes from: ``env:NAME``, ``file:PATH``, ``vault:NAME`` (a credential
    added through the admin API), or (discouraged) the literal value.

    The reference is what config holds and what dumps show; a literal dumps as ``"***"``.
    The value is read only by the vault when a provider call needs it.
    """

    __slots__ = ("kind", "target")

    def __init__(self, spec: str) -> None:
        if not isinstance(spec, str) or not spec:
            raise ValueError("a secret reference must be a non-empty string")
        kind, sep, target = spec.partition(":")
        if sep and kind in ("env", "file", "vault"):
            if not target:
                what = {"env": "variable name", "file": "path", "vault": "credential name"}[kind]
                raise ValueError(f"'{kind}:' needs a {what}")
            self.kind, self.target = kind, target
        else:
            self.kind, self.target = "literal", spec

    @property
    def is_literal(self) -> bool:
        """True when the secret itself is written in the config."""
        return self.kind == "literal"

    def redacted(self) -> str:
        """The reference as safe to show: the literal is masked."""
        return "***" if self.is_literal else f"{self.kind}:{self.target}"

    def __repr__(self) -> str:
        return f"SecretRef({self.redacted()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretRef) and (self.kind, self.target) == (
            other.kind,
            other.target,
        )

    def __hash__(self) -> int:
        return hash((self.kind, self.target))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda ref: ref.redacted()
            ),
        )

    @classmethod
    def _validate(cls, value: Any) -> SecretRef:
        if isinstance(value, SecretRef):
            return value
        return cls(value)
