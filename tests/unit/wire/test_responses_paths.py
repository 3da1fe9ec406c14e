"""A field named in Chat Completions terms, as the Responses client sent it."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.wire.responses_input import Origins
from tollway.wire.responses_paths import client_param
from tollway.wire.responses_request import request_from_wire

CALL: Any = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
OUTPUT: Any = {
    "type": "function_call_output",
    "call_id": "c1",
    "output": [{"type": "input_text", "text": "4"}],
}


def origins(**body: Any) -> Origins:
    return request_from_wire({"model": "m", **body}).origins


CONVERSATION = origins(
    instructions="be brief",
    input=[
        {"type": "reasoning", "id": "rs_1", "summary": []},  # no message: dropped
        {"role": "user", "content": [{"type": "input_text", "text": "go"}]},
        {"role": "assistant", "content": "calling"},
        CALL,
        {**CALL, "call_id": "c2"},
        OUTPUT,
        CALL,  # no assistant turn before it: one of its own
    ],
)


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ("messages", "input"),
        ("messages[0]", "instructions"),
        ("messages[0].content", "instructions"),
        ("messages[1]", "input[1]"),
        ("messages[1].role", "input[1].role"),
        ("messages[1].content", "input[1].content"),
        ("messages[1].content[0]", "input[1].content[0]"),
        ("messages[1].content[0].text", "input[1].content[0].text"),
        ("messages[1].content[0].image_url.url", "input[1].content[0].image_url"),
        ("messages[1].content[0].file.file_data", "input[1].content[0].file_data"),
        ("messages[1].content[0].source.url", "input[1].content[0]"),  # another codec's
        ("messages[2].tool_calls[0]", "input[3]"),
        ("messages[2].tool_calls[1].function.arguments", "input[4].arguments"),
        ("messages[2].tool_calls[1].arguments", "input[4].arguments"),
        ("messages[2].tool_calls[1].function.name", "input[4].name"),
        ("messages[2].tool_calls[1].id", "input[4].call_id"),
        ("messages[2].tool_calls[9]", "input[2]"),
        ("messages[3].tool_call_id", "input[5].call_id"),
        ("messages[3].content", "input[5].output"),
        ("messages[3].content[0]", "input[5].output[0]"),
        ("messages.[3].role", "input[5]"),  # OpenAI's own way of writing it
        ("messages[4]", "input[6]"),
        ("messages[4].content", "input[6]"),
        ("messages[4].tool_calls[0].function.arguments", "input[6].arguments"),
        ("messages[9].content", "input"),  # no such message: the nearest field
        ("max_tokens", "max_output_tokens"),
        ("max_completion_tokens", "max_output_tokens"),
        ("reasoning_effort", "reasoning.effort"),
        ("verbosity", "text.verbosity"),
        ("response_format", "text.format"),
        ("response_format.json_schema", "text.format"),
        ("response_format.json_schema.schema", "text.format.schema"),
        ("tools[1].function.parameters", "tools[1].parameters"),
        ("tools[1].function", "tools[1]"),
        ("tool_choice.function.name", "tool_choice.name"),
        ("temperature", "temperature"),
        ("model", "model"),
    ],
)
def test_chat_completions_names_become_the_clients_paths(param: str, expected: str) -> None:
    assert client_param(param, CONVERSATION) == expected


def test_a_string_input_is_named_as_input() -> None:
    found = origins(input="hello")
    assert client_param("messages[0].content", found) == "input"
    assert client_param("messages[0].content[0]", found) == "input"


def test_a_tool_is_named_by_its_place_in_the_clients_tools() -> None:
    # allowed_tools kept the client's tools[2] alone: the deployment's tools[0].
    parsed = request_from_wire(
        {
            "model": "m",
            "input": "hi",
            "tools": [{"type": "function", "name": n} for n in ("a", "b", "c")],
            "tool_choice": {"type": "allowed_tools", "mode": "auto",
                            "tools": [{"type": "function", "name": "c"}]},
        }
    )  # fmt: skip
    assert parsed.tool_places == [2]
    places = parsed.tool_places
    assert client_param("tools[0].function.parameters", [], places) == "tools[2].parameters"
    assert client_param("tools[0].cache_control", [], places) == "tools[2].cache_control"
    assert client_param("tools[0]", [], places) == "tools[2]"
    assert client_param("tools[0].function.parameters", []) == "tools[0].parameters"
