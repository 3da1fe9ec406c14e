"""Another format's JSON schema fitted to what Gemini's structured output enforces."""

from __future__ import annotations

import pytest

from tollway.core.errors import InvalidRequest
from tollway.wire.gemini_schema import gemini_schema

UNION = {
    "$defs": {"Cat": {"type": "object", "properties": {"kind": {"const": "cat"}}}},
    "type": "object",
    "properties": {"pet": {"oneOf": [{"$ref": "#/$defs/Cat"}, {"type": "null"}]}},
}


def test_a_strict_one_of_is_refused_where_it_is() -> None:
    with pytest.raises(InvalidRequest) as caught:
        gemini_schema(UNION, strict=True)
    assert "'oneOf' (at $.properties.pet)" in caught.value.message


def test_a_loose_one_of_is_the_any_of_gemini_enforces_and_const_an_enum() -> None:
    fitted = gemini_schema(UNION, strict=False)
    assert fitted["properties"]["pet"] == {"anyOf": UNION["properties"]["pet"]["oneOf"]}
    assert fitted["$defs"]["Cat"]["properties"]["kind"] == {"enum": ["cat"]}
    assert UNION["properties"]["pet"].get("oneOf")  # the client's schema is left as it was


def test_what_gemini_enforces_goes_as_it_is() -> None:
    schema = {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": 3}
    assert gemini_schema(schema, strict=True) == schema


def test_an_anthropic_client_is_not_told_to_turn_strict_off() -> None:
    with pytest.raises(InvalidRequest) as caught:
        gemini_schema({"type": "string", "pattern": "^a$"}, strict=True, loosable=False)
    assert "strict" not in caught.value.message and "'pattern' (at $)" in caught.value.message
