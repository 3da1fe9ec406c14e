"""Another format's JSON schema fitted to Claude's structured output (Anthropic's and Bedrock's).

Claude's structured output compiles the schema into a grammar and takes a subset of JSON Schema:
every object closed (``closed_schema``), and no numeric, string-length or array-size bounds
(``minimum``, ``maxLength``, ``maxItems``, ``minItems`` above 1 ...), no open map
(``additionalProperties`` a schema or true) and no recursion (a ``$ref`` back into itself),
each a 400 from the provider. OpenAI's structured output takes them all, and pydantic writes
them for ``Field(ge=1)`` or ``conlist(..., max_length=3)``. So:

- a strict schema (``strict: true``, which the openai SDK's ``parse`` helpers send) with a
  bound is a 400 naming it before any call: dropping it would no longer guarantee the answer
  matches, which strict promises;
- a schema that is not strict (a best effort by OpenAI's definition) keeps each bound as words
  in its ``description``, as Anthropic's own SDK does (``{maxItems: 2, uniqueItems: true}``,
  each value in JSON where the SDK writes Python's ``True``), so the model still reads it;
- an open map or a recursive schema is a 400 either way: neither can be said in the subset.
"""

from __future__ import annotations

from typing import Any

from tollway.wire.schema_fit import (
    DEFINITIONS,
    JSON,
    advice,
    fit_each,
    refused,
    say_in_description,
)

# Claude's structured output refuses these (Anthropic's docs: "JSON Schema limitations").
_BOUNDS = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
)


def closed_schema(schema: Any) -> Any:
    """``schema`` (a copy) with ``"additionalProperties": false`` on each object that does
    not say it: Claude's structured output refuses an object schema without it, where
    OpenAI's API (strict off) leaves it open. An answer to the closed schema still
    matches the open one; an object that allows more explicitly is left as it is."""
    return fit_each(schema, _close)


def claude_schema(schema: Any, strict: bool, provider: str, loosable: bool = True) -> Any:
    """``schema`` (a copy) as Claude's structured output on ``provider`` takes it, or an
    ``InvalidRequest`` naming what it cannot take (the module's docstring); ``loosable``:
    whether the client's format has a ``strict`` to turn off (OpenAI's; Anthropic's has none)."""
    _refuse_recursion(schema, provider)
    told = advice(loosable)

    def fit(node: JSON, where: str) -> None:
        _fit(node, where, strict, provider, told)

    return fit_each(closed_schema(schema), fit)


def _close(node: JSON, where: str) -> None:
    kind = node.get("type")
    if (kind == "object" or (isinstance(kind, list) and "object" in kind)) and (
        "additionalProperties" not in node
    ):
        node["additionalProperties"] = False


def _fit(node: JSON, where: str, strict: bool, provider: str, told: str) -> None:
    extra = node.get("additionalProperties")
    if extra is not None and extra is not False:
        _refuse("additionalProperties", where, provider, "an object must be closed (false)")
    bounds = [key for key in _BOUNDS if key in node]
    if isinstance(node.get("minItems"), int) and node["minItems"] > 1:
        bounds.append("minItems")
    if bounds and strict:
        _refuse(bounds[0], where, provider, told)
    say_in_description(node, bounds)


def _refuse_recursion(schema: Any, provider: str) -> None:
    """A 400 when a definition refers (through others too) back to itself, or to the root."""
    if not isinstance(schema, dict):
        return
    definitions = {
        f"#/{key}/{name}": item
        for key in DEFINITIONS
        if isinstance(schema.get(key), dict)
        for name, item in schema[key].items()
    }
    if "#" in _refs(schema, skip_definitions=True) or any(
        "#" in _refs(item) for item in definitions.values()
    ):
        _refuse("$ref", "$", provider, "a schema that refers to itself is recursive")
    for start in definitions:
        seen: set[str] = set()
        todo = list(_refs(definitions[start]))
        while todo:
            ref = todo.pop()
            if ref == start:
                _refuse("$ref", start, provider, "a definition that refers to itself is recursive")
            if ref not in seen and ref in definitions:
                seen.add(ref)
                todo.extend(_refs(definitions[ref]))


def _refs(schema: Any, skip_definitions: bool = False) -> set[str]:
    """Every ``$ref`` inside ``schema`` (the root's definitions left out when asked)."""
    found: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value)
            elif not (skip_definitions and key in DEFINITIONS):
                found |= _refs(value)
    elif isinstance(schema, list):
        for item in schema:
            found |= _refs(item)
    return found


def _refuse(keyword: str, where: str, provider: str, told: str) -> None:
    raise refused(
        f"{provider}'s structured output does not take the JSON schema's "
        f"'{keyword}' (at {where}); {told}"
    )
