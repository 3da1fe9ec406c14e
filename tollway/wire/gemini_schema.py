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

from tollway.wire.schema_fit import JSON, advice, fit_each, refused, say_in_description

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


def gemini_schema(schema: Any, strict: bool, loosable: bool = True) -> Any:
    """``schema`` (a copy) as Gemini's structured output takes it, or an ``InvalidRequest``
    naming what it would ignore (the module's docstring); ``loosable``: whether the client's
    format has a ``strict`` to turn off (OpenAI's; Anthropic's has none)."""
    told = advice(loosable)

    def fit(node: JSON, where: str) -> None:
        _fit(node, where, strict, told)

    return fit_each(schema, fit)


def _fit(node: JSON, where: str, strict: bool, told: str) -> None:
    # Every subschema keyword Gemini ignores (``not``, ``allOf`` ...) is refused or moved
    # into the description here, so the walk only goes on into the ones it enforces.
    if "const" in node and "enum" not in node:
        node["enum"] = [node.pop("const")]
    ignored = [key for key in _IGNORED if key in node]
    if ignored and strict:
        raise refused(
            f"Gemini's structured output ignores the JSON schema's "
            f"'{ignored[0]}' (at {where}), so the answer might not match it; {told}"
        )
    if "oneOf" in ignored and "anyOf" not in node:
        node["anyOf"] = node.pop("oneOf")
        ignored.remove("oneOf")
    say_in_description(node, ignored)
