"""The walk both schema fitters share, and what any schema keeps through either fitter."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.core.errors import InvalidRequest
from tollway.wire.claude_schema import claude_schema
from tollway.wire.gemini_schema import gemini_schema
from tollway.wire.schema_fit import JSON, PARAM, fit_each, say_in_description

_SCALAR_KEYWORDS = (
    "type",
    "description",
    "minimum",
    "exclusiveMaximum",
    "multipleOf",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "const",
    "enum",
    "format",
)
_SUBSCHEMA = ("items", "additionalProperties", "not", "if", "contains")
_SUBSCHEMA_LIST = ("anyOf", "oneOf", "allOf", "prefixItems")
_NAMES = st.sampled_from(["a", "b", "Cat", "with space"])
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 5),
    st.text(max_size=3),
    st.sampled_from(["object", "string", ["object", "null"]]),
    st.lists(st.integers(0, 3), max_size=2),
)
_LEAF = st.one_of(
    st.dictionaries(st.sampled_from(_SCALAR_KEYWORDS), _VALUES, max_size=3),
    st.sampled_from([{"$ref": "#/$defs/a"}, {"$ref": "#"}]),
    st.booleans(),
)


def _node(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["object", "array"]),
            "properties": st.dictionaries(_NAMES, children, max_size=3),
            "required": st.lists(_NAMES, max_size=2, unique=True),
            "$defs": st.dictionaries(_NAMES, children, max_size=2),
            "maxProperties": st.integers(0, 3),
            **{key: children for key in _SUBSCHEMA},
            **{key: st.lists(children, max_size=2) for key in _SUBSCHEMA_LIST},
        },
    )


SCHEMAS = st.recursive(_LEAF, _node, max_leaves=20)
# An object with properties at the root, the common case, which random nodes reach too seldom.
OBJECTS = st.fixed_dictionaries(
    {
        "type": st.just("object"),
        "properties": st.dictionaries(_NAMES, SCHEMAS, min_size=1, max_size=3),
        "required": st.lists(_NAMES, max_size=2, unique=True),
    }
)


def _kept(sent: Any, fitted: Any) -> None:
    """Each object's property names and ``required``, as the client sent them, all the way down."""
    if not isinstance(sent, dict):
        return
    assert fitted.get("required") == sent.get("required")
    if "properties" in sent:
        assert list(fitted["properties"]) == list(sent["properties"])
        for name, schema in sent["properties"].items():
            _kept(schema, fitted["properties"][name])


@settings(max_examples=150, deadline=None)
@given(st.one_of(SCHEMAS, OBJECTS), st.booleans(), st.booleans())
def test_any_schema_is_fitted_or_refused_keeping_its_properties(
    schema: Any, strict: bool, loosable: bool
) -> None:
    sent = copy.deepcopy(schema)
    for fitter in (
        lambda: claude_schema(schema, strict, "Bedrock", loosable),
        lambda: gemini_schema(schema, strict, loosable),
    ):
        try:
            fitted = fitter()
        except InvalidRequest as refusal:  # the only way a fitter may fail: a 400 on the schema
            assert refusal.param == PARAM and refusal.message.startswith(f"'{PARAM}': ")
        else:
            _kept(schema, fitted)
    assert schema == sent  # the client's schema is left as it was


@settings(max_examples=150, deadline=None)
@given(st.one_of(SCHEMAS, OBJECTS))
def test_gemini_never_refuses_a_loose_schema(schema: Any) -> None:
    _kept(schema, gemini_schema(schema, strict=False))


def test_the_walk_visits_every_subschema_parent_first_with_its_path() -> None:
    seen: list[str] = []
    schema = {
        "properties": {"a": {"items": {"type": "string"}}},
        "anyOf": [{"not": {}}, True],
        "$defs": {"Cat": {}},
    }
    fit_each(schema, lambda node, where: seen.append(where))
    assert seen == [
        "$",
        "$.anyOf[0]",
        "$.anyOf[0].not",
        "$.properties.a",
        "$.properties.a.items",
        "$.$defs.Cat",
    ]


def test_what_a_fit_takes_out_of_a_parent_is_not_walked() -> None:
    seen: list[str] = []

    def fit(node: JSON, where: str) -> None:
        seen.append(where)
        node.pop("not", None)

    assert fit_each({"not": {"not": {}}}, fit) == {}
    assert seen == ["$"]


@pytest.mark.parametrize(
    ("description", "said"),
    [
        (None, '{maxLength: 3, pattern: "^a$"}'),
        ("A name.", 'A name.\n\n{maxLength: 3, pattern: "^a$"}'),
    ],
)
def test_keywords_are_said_after_the_description(description: str | None, said: str) -> None:
    schema: JSON = {"type": "string", "maxLength": 3, "pattern": "^a$"}
    if description:
        schema["description"] = description
    say_in_description(schema, ["maxLength", "pattern"])
    assert schema == {"type": "string", "description": said}


def test_both_fitters_say_a_keyword_in_json() -> None:
    # Claude's fitter wrote Python's words (True, a string bare), Gemini's JSON for a schema
    # and Python's for the rest: the same schema read differently by each model.
    schema = {"type": "array", "items": {"type": "string"}, "uniqueItems": True, "maxItems": 2}
    said = "{maxItems: 2, uniqueItems: true}"
    assert claude_schema(schema, strict=False, provider="anthropic")["description"] == said
    ignored = {"type": "string", "pattern": '^a"b$', "not": {"const": "x"}}
    said = '{pattern: "^a\\"b$", not: {"const":"x"}}'
    assert gemini_schema(ignored, strict=False)["description"] == said
