"""Typed reads from untrusted JSON objects that fail with a 400 naming the field."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from tollway.core.errors import InvalidRequest

T = TypeVar("T")

_CREDENTIAL_FIELDS = frozenset(
    {"api_key", "apikey", "api-key", "x-api-key", "x-goog-api-key", "authorization"}
)
"""Body fields a client may put its key in (LiteLLM's ``api_key``, a header's name): never
passed on, as a field the codec does not read otherwise is."""


def refuse_credential_fields(extra: dict[str, Any]) -> None:
    """A 400 naming the first field of ``extra`` (the body fields a codec passes on to
    providers of its own format unread) that holds a credential: a client's virtual key sent
    in the body would otherwise reach the provider. Its value is never said."""
    for key in extra:
        if key.lower() in _CREDENTIAL_FIELDS:
            raise InvalidRequest(
                f"'{key}' is not read: send the key in the Authorization header (or"
                " x-api-key); a credential in the body is never passed on to a provider",
                param=key,
            )


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
}


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)


def _matches(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False  # JSON true is not a number here
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def optional(obj: dict[str, Any], key: str, kind: type[T], param: str | None = None) -> T | None:
    """``obj[key]`` if present and not null, checked to be of ``kind``."""
    value = obj.get(key)
    if value is None or type(value) is kind:  # the common case, checked cheaply first
        return value
    if not _matches(value, kind):
        name = param or key
        raise InvalidRequest(f"'{name}' must be {_type_name(kind)}", param=name)
    return value  # type: ignore[no-any-return]


def required(obj: dict[str, Any], key: str, kind: type[T], param: str | None = None) -> T:
    """``obj[key]``, which must be present and of ``kind``."""
    value = optional(obj, key, kind, param)
    if value is None:
        name = param or key
        raise InvalidRequest(f"'{name}' is a required property", param=name)
    return value


def number(obj: dict[str, Any], key: str, param: str | None = None) -> float | None:
    """An optional JSON number as a float (integers accepted)."""
    value = optional(obj, key, float, param)
    return None if value is None else float(value)


def json_object(value: Any, param: str) -> dict[str, Any]:
    """``value`` checked to be a JSON object."""
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{param}' must be an object", param=param)
    return value


def check_bounds(
    value: float | None,
    name: str,
    low: float,
    high: float,
    kind: Literal["decimal", "integer"] = "decimal",
) -> None:
    """A 400 naming ``name`` when ``value`` is outside ``low`` to ``high`` (``math.inf``: no
    upper bound), in the words and codes OpenAI's API answers it with
    (``decimal_above_max_value``, ``integer_below_min_value``, ...)."""
    if value is None or low <= value <= high:
        return
    above = value > high
    bound = high if above else low
    said = f"{int(value)}" if kind == "integer" else f"{value:g}"
    raise InvalidRequest(
        f"Invalid '{name}': {kind} {'above maximum' if above else 'below minimum'} value. "
        f"Expected a value {'<=' if above else '>='} {bound:g}, but got {said} instead.",
        code=f"{kind}_above_max_value" if above else f"{kind}_below_min_value",
        param=name,
    )
