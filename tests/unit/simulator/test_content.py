"""Reply generation, limits, tool arguments and token counting of the simulator."""

from __future__ import annotations

import json

import pytest

from tollway.simulator.content import (
    FILLER_WORDS,
    JSON_FRAGMENT_CHARS,
    InvalidRequest,
    Prompt,
    ToolSpec,
    apply_limits,
    complete,
    json_fragments,
    reply_pieces,
    sample_object,
    sample_value,
)


def ids() -> str:
    return "call_x"


def test_reply_echoes_then_fills_to_the_target() -> None:
    pieces = reply_pieces("Simulated reply to:", "one two", 8)
    assert pieces == ["Simulated", " reply", " to:", " one", " two", " alpha", " bravo", " charlie"]
    assert "".join(reply_pieces("Simulated reply to:", "", 4)) == "Simulated reply to: (empty)"


def test_reply_echo_is_capped_and_short_targets_cut_the_lead() -> None:
    long = " ".join(f"w{i}" for i in range(20))
    pieces = reply_pieces("Simulated reply to:", long, 40)
    assert pieces[3:11] == [f" w{i}" for i in range(8)]
    assert pieces[11] == " " + FILLER_WORDS[0]
    assert reply_pieces("Simulated reply to:", "x", 2) == ["Simulated", " reply"]


def test_variants_differ() -> None:
    first = "".join(reply_pieces("Simulated reply to:", "hi", 10, 0))
    second = "".join(reply_pieces("Simulated reply to:", "hi", 10, 1))
    assert second.startswith("Simulated reply #2 to: hi") and first != second


def test_limits_cap_and_stop() -> None:
    pieces = ["a", " b", " c", " d"]
    assert apply_limits(pieces, 2, []).pieces == ["a", " b"]
    assert apply_limits(pieces, 2, []).finish == "length"
    assert apply_limits(pieces, 9, []).finish == "stop"
    stopped = apply_limits(pieces, None, [" d", "c"])
    assert stopped.pieces == ["a", " b"] and stopped.finish == "stop_sequence"
    assert stopped.stop_sequence == "c"
    mid_word = apply_limits(["hello", " world"], None, ["rld"])
    assert mid_word.pieces == ["hello", " wo"]
    assert apply_limits(pieces, 2, ["d"]).finish == "length"  # the stop lies past the cap


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ({"type": "string"}, "sample"),
        ({"type": "integer"}, 1),
        ({"type": "number"}, 1),
        ({"type": "boolean"}, True),
        ({"type": "null"}, None),
        ({"enum": ["x", "y"]}, "x"),
        ({"const": 7}, 7),
        ({"type": ["null", "integer"]}, 1),
        ({"anyOf": [{"type": "null"}, {"type": "boolean"}]}, True),
        ({"type": "array", "items": {"type": "integer"}}, [1]),
        ({"type": "array"}, []),
        ({"properties": {"a": {"type": "string"}}}, {"a": "sample"}),
    ],
)
def test_sample_values(schema: dict[str, object], value: object) -> None:
    assert sample_value(schema) == value


def test_sample_object_fills_required_only_when_given() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {}}}
    assert sample_object(schema) == {"a": 1, "b": "sample"}
    assert sample_object({**schema, "required": ["a"]}) == {"a": 1}
    assert sample_object(None) == {}


def test_sample_object_follows_local_refs_as_pydantic_writes_them() -> None:
    schema = {
        "type": "object",
        "properties": {"homes": {"type": "array", "items": {"$ref": "#/$defs/Home"}}},
        "$defs": {"Home": {"type": "object", "properties": {"street": {"type": "string"}}}},
    }
    assert sample_object(schema) == {"homes": [{"street": "sample"}]}


def test_json_fragments_rejoin() -> None:
    text = json.dumps({"key": "value", "n": [1, 2, 3]})
    fragments = json_fragments(text)
    assert "".join(fragments) == text
    assert all(len(f) <= JSON_FRAGMENT_CHARS for f in fragments)


def test_tool_selection() -> None:
    tools = [ToolSpec("a", {"type": "object", "properties": {"x": {"type": "string"}}}),
             ToolSpec("b", None)]  # fmt: skip
    single = complete(Prompt("go", tools=tools), 0, ids)
    assert [c.name for c in single.tool_calls] == ["a"] and single.finish == "tool_calls"
    assert single.tool_calls[0].input() == {"x": "sample"}
    assert single.output_tokens == len(json_fragments('{"x":"sample"}'))
    both = complete(Prompt("go in Parallel!", tools=tools), 0, ids)
    assert [c.name for c in both.tool_calls] == ["a", "b"]
    no_parallel = Prompt("parallel", tools=tools, parallel_tools=False)
    assert len(complete(no_parallel, 0, ids).tool_calls) == 1
    assert complete(Prompt("go", tools=tools, forced_tool="b"), 0, ids).tool_calls[0].name == "b"
    assert not complete(Prompt("go", tools=tools, tool_mode="none"), 0, ids).tool_calls
    after = complete(Prompt("go", tools=tools, tool_result_text="42 C"), 0, ids)
    assert after.text.startswith("Simulated reply to tool result: 42 C")
    with pytest.raises(InvalidRequest):
        complete(Prompt("go", tools=tools, forced_tool="zzz"), 0, ids)


def test_json_modes() -> None:
    plain = complete(Prompt("hi", json_mode=True), 0, ids)
    assert json.loads(plain.text) == {
        "answer": "Simulated reply to: hi " + " ".join(FILLER_WORDS[:12])
    }
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    shaped = complete(Prompt("hi", json_schema=schema), 0, ids)
    assert json.loads(shaped.text) == {"ok": True}
