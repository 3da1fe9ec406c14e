"""The canonical request's field names as the Anthropic client sent them."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.wire.anthropic_paths import client_param
from tollway.wire.anthropic_request import request_from_wire

FORMAT = {"type": "json_schema", "schema": {"type": "object"}}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"output_config": {"format": FORMAT}}, "output_config.format.schema"),
        ({"output_format": FORMAT}, "output_format.schema"),
        # Both sent: the parse reads output_config's, so the error is about it.
        (
            {"output_config": {"format": FORMAT}, "output_format": FORMAT},
            "output_config.format.schema",
        ),
    ],
)
def test_a_schema_is_named_where_the_client_put_it(body: dict[str, Any], named: str) -> None:
    assert client_param("response_format.json_schema.schema", body) == named
    assert client_param("response_format", body) == named.removesuffix(".schema")


def test_other_fields_keep_their_names() -> None:
    assert client_param("messages[1].content[0]", {}) == "messages[1].content[0]"
    assert client_param("response_formats", {}) == "response_formats"


def test_a_tools_function_name_is_the_tools_own() -> None:
    # A Messages request's tools are the canonical ones, in the same order.
    assert client_param("tools[2].function.name", {}) == "tools[2].name"
    assert client_param("tools[2].function.parameters", {}) == "tools[2].function.parameters"


def _use(name: str, place: int) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{place}", "name": name, "input": {}}


def _result(place: int) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": f"toolu_{place}", "content": "ok"}


@pytest.mark.parametrize("system", [None, "be brief"])
def test_an_earlier_calls_name_is_its_tool_use_blocks(system: str | None) -> None:
    # Whatever the turns before it made of the canonical messages, the call found by its
    # canonical place is named where the client wrote it.
    messages: list[Any] = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [_use("a", 0), _use("b", 1)]},
        {"role": "user", "content": [_result(0), _result(1)]},
        {"role": "assistant", "content": [{"type": "text", "text": "so"}, _use("c", 2)]},
        {"role": "user", "content": [_result(2), {"type": "text", "text": "and?"}]},
        {"role": "assistant", "content": [_use("d", 3)]},
    ]
    body: dict[str, Any] = {"model": "m", "max_tokens": 9, "messages": messages}
    if system is not None:
        body["system"] = system
    canonical = request_from_wire(body).messages
    places = {"a": "1].content[0", "b": "1].content[1", "c": "3].content[1", "d": "5].content[0"}
    for index, message in enumerate(canonical):
        for number, call in enumerate(message.tool_calls or ()):
            param = f"messages[{index}].tool_calls[{number}].function.name"
            assert client_param(param, body) == f"messages[{places[call.name]}].name"
    assert sum(len(m.tool_calls or ()) for m in canonical) == 4


@pytest.mark.parametrize("system", [None, "be brief"])
def test_a_content_part_is_named_by_its_block(system: str | None) -> None:
    # Each canonical part, found by its canonical place, is the block the client wrote:
    # tool_use blocks are calls and tool_result blocks messages of their own.
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    messages: list[Any] = [
        {"role": "user", "content": [{"type": "text", "text": "look"}, image]},
        {"role": "assistant", "content": [_use("a", 0), {"type": "text", "text": "so"}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "here"},
                {"type": "tool_result", "tool_use_id": "toolu_0", "content": [image]},
                image,
            ],
        },
    ]
    body: dict[str, Any] = {"model": "m", "max_tokens": 9, "messages": messages}
    if system is not None:
        body["system"] = system
    canonical = request_from_wire(body).messages
    first = 0 if system is None else 1
    named = {
        f"messages[{first}].content[1].image_url": "messages[0].content[1].source",
        f"messages[{first + 1}].content[0].text": "messages[1].content[1].text",
        f"messages[{first + 2}].content[0].image_url.url": (
            "messages[2].content[1].content[0].source"
        ),
        f"messages[{first + 2}].tool_call_id": "messages[2].content[1].tool_use_id",
        f"messages[{first + 3}].content[1]": "messages[2].content[2]",
        f"messages[{first + 3}].content": "messages[2].content",
    }
    assert [m.role for m in canonical[first:]] == ["user", "assistant", "tool", "user"]
    for param, path in named.items():
        assert client_param(param, body) == path
    if system is not None:
        assert client_param("messages[0].content", body) == "system"
    # The parse's own errors name the client's turns already.
    param = f"messages[{first + 3}].content[1]"
    assert client_param(param, body, canonical=False) == param
