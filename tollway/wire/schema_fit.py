"""Fitting a client's JSON schema to a provider's structured output, whatever the provider.

The walk over a schema and each subschema in it, with the path of each (``$.properties.pet``),
the 400 naming the schema, and keywords kept as words in a ``description``. Which keywords a
provider takes, refuses or rewrites, and what it says, is the provider's own module's
(``claude_schema``, ``gemini_schema``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from tollway.core.errors import InvalidRequest

JSON = dict[str, Any]
PARAM = "response_format.json_schema.schema"
DEFINITIONS = ("$defs", "definitions")
# Where JSON Schema keeps subschemas: one under a keyword, a list of them, a map of names to them.
_SUBSCHEMAS = ("items", "additionalProperties", "not", "if", "then", "else", "contains")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", *DEFINITIONS)
_LOOSEN = "leave it out, or send the schema with strict false"
_RESTATE = "leave it out, or say it in the schema's description"

Fit = Callable[[JSON, str], None]
"""Fits one (sub)schema, a copy it changes in place, given its path; raises to refuse it."""


def fit_each(schema: Any, fit: Fit, where: str = "$") -> Any:
    """``schema`` (a copy) with ``fit`` applied to it, then to each subschema it has left:
    a parent first, so a refusal names the outermost keyword, and what ``fit`` took out of a
    parent (moved into its description) is not walked."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    fit(out, where)
    for key in _SUBSCHEMAS:
        if isinstance(out.get(key), dict):
            out[key] = fit_each(out[key], fit, f"{where}.{key}")
    for key in _SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [
                fit_each(item, fit, f"{where}.{key}[{i}]") for i, item in enumerate(out[key])
            ]
    for key in _SUBSCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {
                name: fit_each(item, fit, f"{where}.{key}.{name}")
                for name, item in out[key].items()
            }
    return out


def advice(loosable: bool) -> str:
    """What a refusal tells the client to do; ``loosable``: whether its format has a
    ``strict`` to turn off (OpenAI's; Anthropic's has none)."""
    return _LOOSEN if loosable else _RESTATE


def refused(message: str) -> InvalidRequest:
    """The 400 for a schema a provider cannot take, ``message`` saying why."""
    return InvalidRequest(f"'{PARAM}': {message}", param=PARAM)


def say_in_description(schema: JSON, keys: list[str]) -> None:
    """Moves ``keys`` out of ``schema`` into the end of its description, as
    ``{key: value, ...}`` with each value in JSON, so the model still reads them."""
    if not keys:
        return
    # JSON, as the schema itself is written: ``true`` and a quoted ``"^a$"``, not Python's
    # ``True`` and a bare string whose end no model can tell.
    said = ", ".join(f"{key}: {orjson.dumps(schema.pop(key)).decode()}" for key in keys)
    description = schema.get("description")
    schema["description"] = (f"{description}\n\n" if description else "") + "{" + said + "}"
