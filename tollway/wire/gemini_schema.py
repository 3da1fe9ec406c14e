"""Another format's JSON schema fitted to Gemini's structured output (``responseJsonSchema``).

Gemini takes a subset of JSON Schema (Google's "Structured outputs" guide, JSON Schema
support): ``type`` (``null`` in a list of types too), ``title``, ``description``, ``enum``,
``format``, ``minimum``, ``maximum``, ``items``, ``prefixItems``, ``minItems``, ``maxItems``,
``properties``, ``required``, ``additionalProperties``, ``propertyOrdering``, ``anyOf``,
``$ref`` and ``$defs``. It refuses none of the others: it ignores them, so an answer may break
them, silently. So, for each keyword that constrains an answer and Gemini ignores
(``pattern``, ``minLength``, ``exclusiveMinimum``, ``oneOf``, ``allOf``, ``not`` ...):

- a strict schema (``strict: true``, which the openai SDK's ``parse`` helpers send, and every
  Anthropic client's) is a 400 naming it before any call, as ``claude_schema`` does for Claude:
  strict promises the answer matches;
- a schema that is not strict (a best effort) keeps it as words in its ``description``, so the
  model still reads it; a ``oneOf`` becomes the ``anyOf`` Gemini enforces, which every answer
  to it matches.

``const`` becomes the one-value ``enum`` it means, strict or not. Keywords that only annotate
(``default``, ``examples``, ``$schema``, ``$id``, ``$comment``) are sent as they are.
"""

from __future__ import annotations

from typing import Any

import orjson

from tollway.core.errors import InvalidRequest
from tollway.wire.claude_schema import PARAM

# What constrains an answer but is not in Google's list (the module's docstring).
_IGNORED = (
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "uniqueItems",
    "contains",
    "minContains",
    "maxContains",
    "additionalItems",
    "unevaluatedItems",
    "minProperties",
    "maxProperties",
    "patternProperties",
    "propertyNames",
    "dependentRequired",
    "dependentSchemas",
    "unevaluatedProperties",
    "oneOf",
    "allOf",
    "not",
    "if",
    "then",
    "else",
)
_SUBSCHEMAS = ("items", "additionalProperties")
_SUBSCHEMA_LISTS = ("anyOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
_LOOSEN = "leave it out, or send the schema with strict false"
_RESTATE = "leave it out, or say it in the schema's description"


def gemini_schema(schema: Any, strict: bool, loosable: bool = True) -> Any:
    """``schema`` (a copy) as Gemini's structured output takes it, or an ``InvalidRequest``
    naming what it would ignore (the module's docstring); ``loosable``: whether the client's
    format has a ``strict`` to turn off (OpenAI's; Anthropic's has none)."""
    return _fitted(schema, "$", strict, _LOOSEN if loosable else _RESTATE)


def _fitted(schema: Any, where: str, strict: bool, advice: str) -> Any:
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "const" in out and "enum" not in out:
        out["enum"] = [out.pop("const")]
    ignored = [key for key in _IGNORED if key in out]
    if ignored and strict:
        raise InvalidRequest(
            f"'{PARAM}': Gemini's structured output ignores the JSON schema's "
            f"'{ignored[0]}' (at {where}), so the answer might not match it; {advice}",
            param=PARAM,
        )
    if "oneOf" in ignored and "anyOf" not in out:
        out["anyOf"] = out.pop("oneOf")
        ignored.remove("oneOf")
    if ignored:
        said = ", ".join(f"{key}: {_said(out.pop(key))}" for key in ignored)
        description = out.get("description")
        out["description"] = (f"{description}\n\n" if description else "") + "{" + said + "}"
    for key in _SUBSCHEMAS:
        if isinstance(out.get(key), dict):
            out[key] = _fitted(out[key], f"{where}.{key}", strict, advice)
    for key in _SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [
                _fitted(item, f"{where}.{key}[{i}]", strict, advice)
                for i, item in enumerate(out[key])
            ]
    for key in _SUBSCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {
                name: _fitted(item, f"{where}.{key}.{name}", strict, advice)
                for name, item in out[key].items()
            }
    return out


def _said(value: Any) -> str:
    """A keyword's value in words: scalars as written, schemas as their JSON."""
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)
