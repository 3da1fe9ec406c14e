"""Anthropic wire codec: round trips, translation to and from OpenAI, streams both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.auth.vault import Vault
from tollway.config.types import SecretRef
from tollway.core.errors import (
    InvalidRequest,
    UpstreamErrorBody,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from tollway.core.types import (
    ChatRequest,
    Deployment,
    Message,
    UpstreamTimeouts,
    Usage,
)
from tollway.providers.anthropic import AnthropicProvider
from tollway.providers.base import ProviderResources
from tollway.providers.sse import SSEvent
from tollway.wire import openai_request, openai_response
from tollway.wire.anthropic_request import (
    DEFAULT_MAX_TOKENS,
    JSON_OBJECT_INSTRUCTION,
    count_tokens_to_wire,
    request_from_wire,
    request_to_wire,
    walked_request,
)
from tollway.wire.anthropic_response import (
    error_from_wire,
    response_from_wire,
    response_to_wire,
    usage_from_answer,
    usage_from_answer_bytes,
    usage_from_wire,
    usage_to_wire,
)
from tollway.wire.anthropic_stream import StreamReader, StreamWriter
from tollway.wire.claude_schema import closed_schema

text = st.text(max_size=20)
turn_text = st.text(min_size=1, max_size=20)  # Anthropic refuses a turn of empty content
words = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=12)
names = st.from_regex(r"[a-z_]{1,12}", fullmatch=True)
cache_control = st.sampled_from([{}, {"cache_control": {"type": "ephemeral"}}])

text_block = st.builds(lambda t, c: {"type": "text", "text": t, **c}, text, cache_control)
image_block = st.builds(
    lambda source, c: {"type": "image", "source": source, **c},
    st.sampled_from(
        [
            {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
            {"type": "url", "url": "https://example.com/cat.png"},
        ]
    ),
    cache_control,
)
document_block = st.just(
    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}}
)
tool_use_block = st.builds(
    lambda i, n, args: {"type": "tool_use", "id": f"toolu_{i}", "name": n, "input": args},
    st.integers(0, 99),
    names,
    st.sampled_from([{}, {"city": "Paris"}, {"n": 1, "nested": {"a": [1, 2]}}]),
)
tool_result_block = st.builds(
    lambda i, content, error: {
        "type": "tool_result",
        "tool_use_id": f"toolu_{i}",
        **content,
        **error,
    },
    st.integers(0, 99),
    st.sampled_from([{}, {"content": "sunny"}, {"content": [{"type": "text", "text": "sunny"}]}]),
    st.sampled_from([{}, {"is_error": True}]),
)
user_turn = st.one_of(
    turn_text.map(lambda t: {"role": "user", "content": t}),
    st.lists(text_block | image_block | document_block, min_size=1, max_size=3).map(
        lambda blocks: {"role": "user", "content": blocks}
    ),
    st.builds(
        lambda results, rest: {"role": "user", "content": results + rest},
        st.lists(tool_result_block, min_size=1, max_size=2),
        st.lists(text_block, max_size=2),
    ),
)
thinking_blocks = st.sampled_from(
    [
        [],
        [{"type": "thinking", "thinking": "hmm", "signature": "s"}],
        [{"type": "redacted_thinking", "data": "EmwKAhgB"}],
        [
            {"type": "thinking", "thinking": "", "signature": "s", "cache_control": None},
            {"type": "redacted_thinking", "data": "EmwKAhgB"},
        ],
    ]
)
assistant_turn = st.one_of(
    turn_text.map(lambda t: {"role": "assistant", "content": t}),
    # Text and tool calls in any order, after thinking or not: the order must survive.
    st.builds(
        lambda thinking, blocks: {"role": "assistant", "content": thinking + blocks},
        thinking_blocks,
        st.lists(text_block | tool_use_block, min_size=1, max_size=4),
    ),
)
conversation = st.lists(st.tuples(user_turn, assistant_turn), min_size=1, max_size=3).map(
    lambda pairs: [turn for pair in pairs for turn in pair][:-1]
)
tool = st.builds(
    lambda n, d, c: {
        "name": n,
        **d,
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        **c,
    },
    names,
    st.sampled_from([{}, {"description": "does things"}]),
    cache_control,
)
optional_fields = st.fixed_dictionaries(
    {},
    optional={
        "system": text | st.lists(text_block, min_size=1, max_size=2),
        "stream": st.just(True),
        "temperature": st.floats(0, 1, allow_nan=False),
        "top_p": st.floats(0, 1, allow_nan=False),
        # Anthropic refuses a stop sequence of nothing but whitespace.
        "stop_sequences": st.lists(text.filter(str.strip), min_size=1, max_size=3),
        "metadata": names.map(lambda user: {"user_id": user}),
        "tools": st.lists(tool, min_size=1, max_size=3),
        "tool_choice": st.sampled_from(
            [
                {"type": "auto"},
                {"type": "any", "disable_parallel_tool_use": True},
                {"type": "tool", "name": "f"},
                {"type": "auto", "disable_parallel_tool_use": False},
                {"type": "none"},
            ]
        ),
        "output_config": st.sampled_from(
            [
                {"effort": "high"},
                {"format": {"type": "json_schema", "schema": {"type": "object"}}},
                {"effort": "low", "format": {"type": "json_schema", "schema": {"type": "object"}}},
            ]
        ),
        "thinking": st.sampled_from(
            [
                {"type": "enabled", "budget_tokens": 1024},
                {"type": "adaptive"},
                {"type": "disabled"},
            ]
        ),
        "top_k": st.integers(1, 100),
        "service_tier": st.just("auto"),
        "cache_control": st.just({"type": "ephemeral"}),
    },
)


@settings(max_examples=300, deadline=None)
@given(conversation, optional_fields, st.integers(1, 8192))
def test_request_round_trip_is_identity(
    messages: list[dict[str, Any]], fields: dict[str, Any], max_tokens: int
) -> None:
    body = {"model": "m", "max_tokens": max_tokens, "messages": messages, **fields}
    choice = fields.get("tool_choice") or {}
    offered = {tool["name"] for tool in fields.get("tools") or ()}
    if (choice.get("type") == "any" and not offered) or (
        choice.get("type") == "tool" and choice["name"] not in offered
    ):
        # Requiring a tool the request does not offer is refused, as the other dialects do.
        with pytest.raises(InvalidRequest, match="tool_choice"):
            request_from_wire(body)
        return
    assert request_to_wire(request_from_wire(body), "m") == body


def test_an_assistant_turn_reaches_anthropic_in_the_clients_block_order() -> None:
    thinking = {"type": "thinking", "thinking": "check the weather first", "signature": "sig"}
    call = {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"city": "Oslo"}}
    later = {"type": "tool_use", "id": "toolu_2", "name": "t", "input": {}}
    for content in (
        [thinking, call, {"type": "text", "text": "Looking it up."}],
        [{"type": "text", "text": "a"}, call, {"type": "text", "text": "b"}, later],
        [call, later, {"type": "text", "text": "both asked"}],
    ):
        body = {"model": "m", "max_tokens": 50, "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": content},
            {"role": "user", "content": "go on"},
        ]}  # fmt: skip
        request = request_from_wire(body)
        assert request_to_wire(request, "m")["messages"][1]["content"] == content
        assert count_tokens_to_wire(request, "m")["messages"][1]["content"] == content
        answer = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                  "content": content, "stop_reason": "tool_use", "stop_sequence": None,
                  "usage": usage_to_wire(Usage(input_tokens=5, output_tokens=7))}  # fmt: skip
        assert response_to_wire(response_from_wire(answer))["content"] == content


def test_request_becomes_canonical_turns() -> None:
    request = request_from_wire(
        {
            "model": "m",
            "max_tokens": 10,
            "system": "be brief",
            "metadata": {"user_id": "u-1"},
            "messages": [
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "Oslo"}}
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": "cold"},
                        {"type": "text", "text": "and tomorrow?"},
                    ],
                },
            ],
            "tools": [{"name": "w", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        }
    )
    assert [m.role for m in request.messages] == ["system", "user", "assistant", "tool", "user"]
    assistant = request.messages[2]
    assert assistant.content is None and assistant.tool_calls is not None
    assert orjson.loads(assistant.tool_calls[0].arguments) == {"city": "Oslo"}
    assert request.messages[3].tool_call_id == "t1" and request.messages[3].content == "cold"
    assert request.user == "u-1"
    assert request.tool_choice is not None and request.tool_choice.mode == "required"
    assert request.parallel_tool_calls is False
    assert request.wire_format == "anthropic"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "messages"),
        ({"model": "m", "max_tokens": -1, "messages": [{"role": "user", "content": "x"}]}, None),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, None),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "user"}]}, "messages[0].content"),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"name": "f"}],
            },
            "tools[0].input_schema",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tool_choice": {"type": "sometimes"},
            },
            "tool_choice.type",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tool_choice": {"type": "any"},
            },
            "tool_choice",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"name": "f", "input_schema": {"type": "object"}}],
                "tool_choice": {"type": "tool", "name": "g"},
            },
            "tool_choice.name",
        ),
    ],
)
def test_invalid_requests_are_400s_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        request_from_wire(body)
    if param is not None:
        assert caught.value.param == param


def test_count_tokens_body_needs_no_max_tokens_and_sends_none() -> None:
    request = request_from_wire(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "system": "s"},
        counting=True,
    )
    body = count_tokens_to_wire(request, "up")
    assert body == {"model": "up", "system": "s", "messages": [{"role": "user", "content": "x"}]}


OPENAI_BODY: dict[str, Any] = {
    "model": "gpt",
    "messages": [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "g", "arguments": '{"a": 1}'},
                },
            ],
            "refusal": None,
        },
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
        {"role": "developer", "content": "answer in French"},
        {"role": "user", "content": "go on", "name": "alice"},
    ],
    "tools": [{"type": "function", "function": {"name": "f"}}],
    "tool_choice": "required",
    "parallel_tool_calls": False,
    "stop": "END",
    "user": "u-9",
    "seed": 3,
    "store": True,
    "metadata": {"app": "x"},
}


def test_openai_request_translates_to_anthropic() -> None:
    body = request_to_wire(openai_request.request_from_wire(OPENAI_BODY), "claude")
    assert body == {
        "model": "claude",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "system": [
            {"type": "text", "text": "be brief"},
            {"type": "text", "text": "answer in French"},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "c1", "name": "f", "input": {}},
                    {"type": "tool_use", "id": "c2", "name": "g", "input": {"a": 1}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "c1", "content": "one"},
                    {"type": "tool_result", "tool_use_id": "c2", "content": "two"},
                    {"type": "text", "text": "go on"},
                ],
            },
        ],
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-9"},
        "tools": [{"name": "f", "input_schema": {"type": "object", "properties": {}}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    }


def test_json_output_translates_to_structured_output_or_an_instruction() -> None:
    base = {"model": "gpt", "messages": [{"role": "user", "content": "json"}]}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    with_schema = openai_request.request_from_wire(
        {
            **base,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": schema},
            },
        }
    )
    # Closed, as Claude's structured output requires of every object.
    closed = {**schema, "additionalProperties": False}
    assert request_to_wire(with_schema, "c")["output_config"] == {
        "format": {"type": "json_schema", "schema": closed}
    }
    any_object = openai_request.request_from_wire(
        {**base, "response_format": {"type": "json_object"}}
    )
    assert request_to_wire(any_object, "c")["system"] == [
        {"type": "text", "text": JSON_OBJECT_INSTRUCTION}
    ]

    def to_openai(schema: dict[str, Any]) -> Any:
        body = {
            "model": "c",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "json"}],
            "output_config": {"format": {"type": "json_schema", "schema": schema}},
        }
        return openai_request.request_to_wire(request_from_wire(body), "gpt")["response_format"]

    # Claude's structured output always conforms: OpenAI is asked for the same (strict)...
    whole = {**closed, "required": ["a"]}
    assert to_openai(whole) == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": whole, "strict": True},
    }
    # ... where its strict mode takes the schema: not with an optional property, nor open.
    for schema in (closed, {**whole, "additionalProperties": True}):
        assert to_openai(schema)["json_schema"]["strict"] is False


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"n": 2}, "'n'"),
        ({"logprobs": True}, "'logprobs'"),
        ({"frequency_penalty": 0.5}, "'frequency_penalty'"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}
                        ],
                    }
                ]
            },
            "'input_audio'",
        ),
    ],
)
def test_untranslatable_openai_features_are_400s_naming_them(
    extra: dict[str, Any], named: str
) -> None:
    body = {"model": "gpt", "messages": [{"role": "user", "content": "x"}], **extra}
    with pytest.raises(InvalidRequest, match=named):
        request_to_wire(openai_request.request_from_wire(body), "claude")


def test_openai_hints_and_false_flags_cross_as_absent() -> None:
    body = {
        "model": "gpt",
        "messages": [{"role": "user", "content": "x"}],
        "store": True,
        "service_tier": "auto",
        "logprobs": False,
        "prompt_cache_key": "k",
        # Defaults, which ask for nothing either.
        "presence_penalty": 0,
        "frequency_penalty": 0.0,
        "logit_bias": {},
        "top_logprobs": 0,
        "modalities": ["text"],
    }
    wire = request_to_wire(openai_request.request_from_wire(body), "claude")
    assert set(wire) == {"model", "max_tokens", "messages"}


def test_anthropic_thinking_reaches_an_openai_deployment_as_nothing_to_send() -> None:
    # Off, it asks for nothing; on, it asks to be shown the reasoning the model does: an
    # OpenAI-compatible server has no budget to take, and reasons as its model does.
    # (A budget below max_tokens, as Claude takes it: another is a 400, test_anthropic_checks.)
    body = {"model": "c", "max_tokens": 4000, "messages": [{"role": "user", "content": "x"}],
            "thinking": {"type": "disabled"}}  # fmt: skip
    wire = openai_request.request_to_wire(request_from_wire(body), "gpt")
    assert "thinking" not in wire
    body["thinking"] = {"type": "enabled", "budget_tokens": 2000}
    wire = openai_request.request_to_wire(request_from_wire(body), "gpt")
    assert set(wire) == {"model", "messages", "max_tokens"}


def test_anthropic_request_translates_to_openai_without_anthropic_details() -> None:
    request = request_from_wire(
        {
            "model": "c",
            "max_tokens": 100,
            "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t",
                            "content": "r",
                            "is_error": True,
                        }
                    ],
                },
            ],
            "service_tier": "auto",
            "tools": [{"name": "f", "input_schema": {"type": "object"}, "cache_control": {}}],
        }
    )
    assert openai_request.request_to_wire(request, "gpt") == {
        "model": "gpt",
        "max_tokens": 100,
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "sys"}]},
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "t",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a":1}'},
                    }
                ],
            },
            # The failed call is said in the text: OpenAI has no flag for it.
            {"role": "tool", "content": "Error: r", "tool_call_id": "t"},
        ],
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        ],
    }


def _tool_turns(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "q"},
        {"role": "assistant",
         "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", **result}]},
    ]  # fmt: skip


def test_tool_results_openai_cannot_take_are_400s_or_made_acceptable() -> None:
    def to_openai(result: dict[str, Any]) -> dict[str, Any]:
        body = {"model": "c", "max_tokens": 9, "messages": _tool_turns(result)}
        return openai_request.request_to_wire(request_from_wire(body), "gpt")

    empty = to_openai({})  # no content: OpenAI requires some on a tool message
    assert empty["messages"][-1] == {"role": "tool", "content": "", "tool_call_id": "t"}
    failed = to_openai({"is_error": True})
    assert failed["messages"][-1]["content"] == "Error: the tool call failed"
    parts = to_openai({"is_error": True, "content": [{"type": "text", "text": "boom"}]})
    assert parts["messages"][-1]["content"] == [
        {"type": "text", "text": "Error: "}, {"type": "text", "text": "boom"}]  # fmt: skip
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "iVBORw0KGgo="}}  # fmt: skip
    with pytest.raises(InvalidRequest, match="image in a tool result"):
        to_openai({"content": [image]})


def test_a_prefilled_answer_is_a_400_for_openai_deployments() -> None:
    body = {"model": "c", "max_tokens": 9, "messages": [
        {"role": "user", "content": "Answer in JSON."},
        {"role": "assistant", "content": "{"}]}  # fmt: skip
    with pytest.raises(InvalidRequest, match="prefilled answer"):
        openai_request.request_to_wire(request_from_wire(body), "gpt")
    assert request_to_wire(request_from_wire(body), "claude")["messages"][-1]["content"] == "{"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"top_k": 5}, "'top_k'"),
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "'document'",
        ),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "web_search"),
    ],
)
def test_untranslatable_anthropic_features_are_400s_naming_them(
    extra: dict[str, Any], named: str
) -> None:
    body = {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], **extra}
    with pytest.raises(InvalidRequest, match=named):
        openai_request.request_to_wire(request_from_wire(body), "gpt")


usage = st.builds(
    lambda i, o, read, write: {
        "input_tokens": i,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "output_tokens": o,
    },
    st.integers(0, 10**6),
    st.integers(0, 10**5),
    st.integers(0, 10**5),
    st.integers(0, 10**5),
)
response_content = st.builds(
    lambda thinking, blocks: thinking + blocks,
    thinking_blocks,
    st.lists(st.builds(lambda t: {"type": "text", "text": t}, text) | tool_use_block, max_size=4),
)
stop = st.sampled_from(
    [
        ("end_turn", None),
        ("max_tokens", None),
        ("stop_sequence", "END"),
        ("tool_use", None),
        ("refusal", None),
        ("pause_turn", None),
        ("model_context_window_exceeded", None),
    ]
)


@settings(max_examples=200, deadline=None)
@given(response_content, stop, usage, st.sampled_from([{}, {"container": None}]))
def test_response_round_trip_is_identity(
    content: list[dict[str, Any]],
    stop: tuple[str, str | None],
    usage: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": content,
        "stop_reason": stop[0],
        "stop_sequence": stop[1],
        "usage": usage,
        **extra,
    }
    assert response_to_wire(response_from_wire(body)) == body


def test_usage_folds_cache_counts_into_input_and_back() -> None:
    wire = {
        "input_tokens": 10,
        "cache_creation_input_tokens": 200,
        "cache_read_input_tokens": 3000,
        "output_tokens": 7,
        "service_tier": "standard",
    }
    usage = usage_from_wire(wire)
    assert usage is not None
    assert (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_tokens) == (
        3210,
        3000,
        200,
    )
    assert usage.total_tokens == 3217
    assert usage_to_wire(usage) == wire
    # From OpenAI, cached tokens are part of prompt_tokens: uncached input is the difference.
    openai_usage = Usage(input_tokens=100, output_tokens=5, cached_input_tokens=60)
    assert usage_to_wire(openai_usage) == {
        "input_tokens": 40,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 60,
        "output_tokens": 5,
    }


def test_openai_response_becomes_an_anthropic_message_without_openai_details() -> None:
    response = openai_response.response_from_wire(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "calling",
                        "refusal": None,
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "f", "arguments": '{"x": 2}'},
                            }
                        ],
                    },
                    "finish_reason": "tool_calls",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": 50,
                "completion_tokens": 9,
                "total_tokens": 59,
                "prompt_tokens_details": {"cached_tokens": 20},
            },
            "system_fingerprint": "fp",
        }
    )
    assert response_to_wire(response) == {
        "id": "chatcmpl-1",
        "type": "message",
        "role": "assistant",
        "model": "gpt",
        "content": [
            {"type": "text", "text": "calling"},
            {"type": "tool_use", "id": "c1", "name": "f", "input": {"x": 2}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 30,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 20,
            "output_tokens": 9,
        },
    }


@pytest.mark.parametrize(
    ("arguments", "given"),
    [
        ('{"city": "Paris", "days": [1, 2', {"city": "Paris", "days": [1, 2]}),
        ('{"city": "Par', {}),  # a value cut mid-way is not a value
        ("[1, 2", {}),  # not an object: nothing a tool_use input can hold
        ("not json", {}),
    ],
)
def test_a_call_the_output_limit_cut_keeps_the_values_written_whole(
    arguments: str, given: dict[str, Any]
) -> None:
    # What the SDK's stream reads from the same fragments (jiter's partial mode).
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    response = openai_response.response_from_wire(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt",
            "choices": [{"index": 0, "message": message, "finish_reason": "length"}],
        }
    )
    wire = response_to_wire(response)
    assert wire["content"] == [{"type": "tool_use", "id": "c1", "name": "f", "input": given}]
    assert wire["stop_reason"] == "max_tokens"


def test_anthropic_response_becomes_openai_without_anthropic_details() -> None:
    response = response_from_wire(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "hi"},
            ],
            "stop_reason": "pause_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 2, "service_tier": "standard"},
            "container": None,
        }
    )
    wire = openai_response.response_to_wire(response)
    assert wire["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hi"},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    assert wire["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    assert "container" not in wire


def test_error_bodies_and_stream_errors() -> None:
    body = {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": "r",
    }
    # Anthropic's type is its own word for the error, not one of OpenAI's codes.
    assert error_from_wire(body) == UpstreamErrorBody("Overloaded", kind="overloaded_error")
    assert error_from_wire("plain text") == UpstreamErrorBody("plain text")
    reader = StreamReader()
    with pytest.raises(UpstreamStatusError) as caught:
        reader.feed(orjson.dumps(body))
    # An overload mid-stream is the same overload: 529 overloaded_error to Anthropic clients,
    # OpenAI's own 503 server_is_overloaded to OpenAI clients; still another candidate's turn.
    error = caught.value
    assert (error.status, error.anthropic_status, error.anthropic_type) == (
        503, 529, "overloaded_error"
    )  # fmt: skip
    assert (error.kind, error.code, error.retryable) == (
        "overloaded_error",
        "server_is_overloaded",
        True,
    )
    with pytest.raises(UpstreamProtocolError):
        reader.feed(b"not json")


def sse(events: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(event) for event in events]


def upstream_events(
    pieces: list[str], calls: list[tuple[str, list[str]]], usage: dict[str, int]
) -> list[dict[str, Any]]:
    """A Messages stream as the API sends it, pings and empty first fragments included."""
    start_usage = {**usage, "output_tokens": 1}
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            },
        },
    ]
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if pieces:
        deltas = [{"type": "text_delta", "text": piece} for piece in pieces]
        blocks.append(({"type": "text", "text": ""}, deltas))
    for index, (name, fragments) in enumerate(calls):
        block = {"type": "tool_use", "id": f"toolu_{index}", "name": name, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": f} for f in ["", *fragments]]
        blocks.append((block, deltas))
    for index, (block, deltas) in enumerate(blocks):
        events.append({"type": "content_block_start", "index": index, "content_block": block})
        if index == 0:
            events.append({"type": "ping"})  # where Anthropic sends it
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use" if calls else "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        }
    )
    events.append({"type": "message_stop"})
    return events


def parse_events(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in data.decode().strip().split("\n\n"):
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        payload = orjson.loads(data_line[6:])
        assert payload["type"] == name_line[7:]
        out.append((name_line[7:], payload))
    return out


stream_usage = st.builds(
    lambda i, o, r, w: {
        "input_tokens": i,
        "cache_creation_input_tokens": w,
        "cache_read_input_tokens": r,
        "output_tokens": o,
    },
    st.integers(0, 1000),
    st.integers(1, 1000),
    st.integers(0, 1000),
    st.integers(0, 1000),
)
stream_calls = st.lists(st.tuples(names, st.lists(words, min_size=1, max_size=3)), max_size=3)


@settings(max_examples=200, deadline=None)
@given(st.lists(words, max_size=5), stream_calls, stream_usage)
def test_anthropic_stream_passes_through_the_gateway_unchanged(
    pieces: list[str], calls: list[tuple[str, list[str]]], usage: dict[str, int]
) -> None:
    events = upstream_events(pieces, calls, usage)
    reader, writer = StreamReader(), StreamWriter()
    written = b""
    chunks = []
    for raw in sse(events):
        chunk = reader.feed(raw)
        if chunk is not None:
            chunks.append(chunk)
            written += writer.feed(chunk)
    written += writer.finish()
    assert reader.done
    assert chunks[-1].choices == [] and chunks[-1].usage == usage_from_wire(usage)
    # What changes: no empty fragments, and the final usage is cumulative (the start's input
    # usage, and the ping after the first block's start, stay as they came).
    expected = [e for e in events if e.get("delta") != {
        "type": "input_json_delta", "partial_json": ""}]  # fmt: skip
    expected[-2]["usage"] = usage
    assert [payload for _, payload in parse_events(written)] == expected


def test_stream_reader_numbers_tool_calls_by_their_order() -> None:
    events = upstream_events(["Let me check."], [("a", ['{"x":', "1}"]), ("b", ["{}"])], {
        "input_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 2,
        "output_tokens": 9})  # fmt: skip
    reader = StreamReader()
    chunks = [c for c in (reader.feed(raw) for raw in sse(events)) if c is not None]
    calls = [call for c in chunks for ch in c.choices for call in ch.tool_calls or ()]
    assert [(c.index, c.id, c.name, c.arguments) for c in calls] == [
        (0, "toolu_0", "a", ""),
        (0, None, None, '{"x":'),
        (0, None, None, "1}"),
        (1, "toolu_1", "b", ""),
        (1, None, None, "{}"),
    ]
    assert chunks[0].choices[0].role == "assistant"
    finishes = [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].usage == Usage(
        input_tokens=7, output_tokens=9, cached_input_tokens=2, cache_write_tokens=0
    )


def openai_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt",
        "system_fingerprint": "fp",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def test_openai_stream_becomes_anthropic_events() -> None:
    def call(index: int, **function: str) -> dict[str, Any]:
        head = {"id": f"call_{index}", "type": "function"} if "name" in function else {}
        return {"tool_calls": [{"index": index, **head, "function": function}]}

    raw_chunks = [
        openai_chunk({"role": "assistant", "content": ""}),
        openai_chunk({"content": "Checking"}),
        openai_chunk({"content": " now."}),
        openai_chunk(call(0, name="a", arguments="")),
        openai_chunk(call(0, arguments='{"x": 1}')),
        openai_chunk(call(1, name="b", arguments="{}")),
        openai_chunk({}, "tool_calls"),
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt",
            "choices": [],
            "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42},
        },
    ]
    writer = StreamWriter()
    data = b"".join(writer.feed(openai_response.chunk_from_wire(c)) for c in raw_chunks)
    events = parse_events(data + writer.finish())
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["id"] == "chatcmpl-1" and "system_fingerprint" not in start
    assert events[6][1]["content_block"] == {
        "type": "tool_use",
        "id": "call_0",
        "name": "a",
        "input": {},
    }
    assert [events[i][1]["index"] for i in (1, 6, 9)] == [0, 1, 2]
    assert events[7][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"x": 1}'}
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 30,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 12,
        },
    }


def test_server_tool_blocks_stream_through_as_they_came() -> None:
    # Anthropic's server tools (web search, code execution): a ``server_tool_use`` block with
    # input_json_delta fragments, then its result block; neither is a client tool call.
    usage = {"input_tokens": 12, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": 3, "output_tokens": 1}  # fmt: skip
    search = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
    found = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}},
        {"type": "content_block_start", "index": 0, "content_block": search},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "input_json_delta", "partial_json": '{"query": "tolls"}'}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": found},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 2,
         "delta": {"type": "text_delta", "text": "Found it."}},
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 20}},
        {"type": "message_stop"},
    ]  # fmt: skip
    reader, writer = StreamReader(), StreamWriter()
    written = b""
    for raw in sse(events):
        chunk = reader.feed(raw)
        if chunk is not None:
            assert not any(c.tool_calls for c in chunk.choices)  # not a client tool call
            written += writer.feed(chunk)
    written += writer.finish()
    expected = [dict(e) for e in events]
    expected[-2] = {**expected[-2], "usage": {**usage, "output_tokens": 20}}
    assert [payload for _, payload in parse_events(written)] == expected


def openai_call(index: int, name: str | None = None, arguments: str = "") -> dict[str, Any]:
    """An OpenAI delta with one tool-call fragment; a ``name`` makes it the call's header."""
    head = {"id": f"call_{index}", "type": "function"} if name else {}
    function = {"name": name, "arguments": arguments} if name else {"arguments": arguments}
    return {"tool_calls": [{"index": index, **head, "function": function}]}


def test_interleaved_openai_tool_calls_become_one_block_after_another() -> None:
    # As some OpenAI-compatible servers stream parallel calls: every header, then in turn.
    raw_chunks = [
        openai_chunk({"role": "assistant", "content": "Checking."}),
        openai_chunk(openai_call(0, "a")),
        openai_chunk(openai_call(1, "b")),
        openai_chunk(openai_call(0, arguments='{"x":')),
        openai_chunk(openai_call(1, arguments='{"y":')),
        openai_chunk(openai_call(0, arguments=" 1}")),
        openai_chunk(openai_call(2, "c", "{}")),
        openai_chunk(openai_call(1, arguments=" 2}")),
        openai_chunk({}, "tool_calls"),
    ]
    writer = StreamWriter()
    fed = [writer.feed(openai_response.chunk_from_wire(c)) for c in raw_chunks]
    # The first call streams live; the ones that start while it is open wait for its end.
    assert [payload["delta"] for _, payload in parse_events(fed[3])] == [
        {"type": "input_json_delta", "partial_json": '{"x":'}
    ]
    assert fed[2] == fed[4] == fed[6] == fed[7] == b""
    events = [payload for _, payload in parse_events(b"".join(fed) + writer.finish())]
    blocks = [
        (e["type"], e["index"], e.get("content_block") or e.get("delta"))
        for e in events
        if e["type"].startswith("content_block")
    ]
    tool = {"type": "tool_use", "input": {}}
    assert blocks == [
        ("content_block_start", 0, {"type": "text", "text": ""}),
        ("content_block_delta", 0, {"type": "text_delta", "text": "Checking."}),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, {**tool, "id": "call_0", "name": "a"}),
        ("content_block_delta", 1, {"type": "input_json_delta", "partial_json": '{"x":'}),
        ("content_block_delta", 1, {"type": "input_json_delta", "partial_json": " 1}"}),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, {**tool, "id": "call_1", "name": "b"}),
        ("content_block_delta", 2, {"type": "input_json_delta", "partial_json": '{"y": 2}'}),
        ("content_block_stop", 2, None),
        ("content_block_start", 3, {**tool, "id": "call_2", "name": "c"}),
        ("content_block_delta", 3, {"type": "input_json_delta", "partial_json": "{}"}),
        ("content_block_stop", 3, None),
    ]
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    assert events[-1] == {"type": "message_stop"}


def test_text_after_held_tool_calls_follows_their_blocks() -> None:
    writer = StreamWriter()
    data = b"".join(
        writer.feed(openai_response.chunk_from_wire(openai_chunk(delta)))
        for delta in (
            openai_call(0, "a", '{"x":'),
            openai_call(1, "b", '{"y":'),
            openai_call(0, arguments="1}"),
            openai_call(1, arguments="2}"),
            {"content": "Done."},
        )
    )
    # A block cannot reopen: more of a call after the text that followed it is an error.
    late = openai_response.chunk_from_wire(openai_chunk(openai_call(0, arguments=" ")))
    with pytest.raises(UpstreamProtocolError, match="after other content"):
        writer.feed(late)
    events = [payload for _, payload in parse_events(data + writer.finish())]
    blocks = [(e["type"], e["index"]) for e in events if e["type"].startswith("content_block")]
    assert blocks == [
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
    ]
    assert events[7]["delta"]["partial_json"] == '{"y":2}'
    assert events[10]["delta"] == {"type": "text_delta", "text": "Done."}


def test_tool_calls_of_a_sequential_upstream_still_stream_live() -> None:
    # Anthropic's blocks come one after the other: a new tool_use block ends the open one at
    # once, with nothing held back until the end.
    events = upstream_events([], [("a", ['{"x":', "1}"]), ("b", ["{}"])], {
        "input_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
        "output_tokens": 9})  # fmt: skip
    reader, writer = StreamReader(), StreamWriter()
    written = {}
    for raw in sse(events):
        chunk = reader.feed(raw)
        written[raw] = writer.feed(chunk) if chunk is not None else b""
    second = next(raw for raw in written if b'"toolu_1"' in raw)
    assert [(name, e["index"]) for name, e in parse_events(written[second])] == [
        ("content_block_stop", 0),
        ("content_block_start", 1),
    ]


class FakeUpstream:
    """Stands in for ``UpstreamClient``: answers every stream with the given events."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.headers: dict[str, str] = {}
        self.body: Any = None

    async def post_stream(
        self, url: str, body: Any, headers: dict[str, str], *args: Any
    ) -> AsyncIterator[SSEvent]:
        self.headers, self.body = headers, body
        for event in self.events:
            yield SSEvent(event["type"], orjson.dumps(event))


DEPLOYMENT = Deployment(
    id="d",
    provider="anthropic",
    model="claude-x",
    api_base="https://api.example",
    timeouts=UpstreamTimeouts(1, 1, 1),
    api_key=SecretRef("env:KEY"),
)


async def collect(events: list[dict[str, Any]]) -> tuple[list[Any], FakeUpstream]:
    upstream = FakeUpstream(events)
    resources = ProviderResources(client=upstream, vault=Vault({"KEY": "sk-ant"}))  # type: ignore[arg-type]
    provider = AnthropicProvider(resources)
    request = ChatRequest(model="c", messages=[Message(role="user", content="hi")], stream=True)
    request.upstream_headers = {"anthropic-beta": "x"}
    return [chunk async for chunk in provider.stream(request, DEPLOYMENT)], upstream


async def test_provider_streams_until_message_stop_with_its_own_key_and_version() -> None:
    usage = {"input_tokens": 1, "output_tokens": 2}
    chunks, upstream = await collect(upstream_events(["hi"], [], usage))
    assert chunks[-1].usage == Usage(input_tokens=1, output_tokens=2)
    assert upstream.headers["x-api-key"] == "sk-ant"
    assert upstream.headers["anthropic-version"] == "2023-06-01"
    assert upstream.headers["anthropic-beta"] == "x"
    assert upstream.body["stream"] is True and upstream.body["model"] == "claude-x"


async def test_a_stream_that_ends_without_message_stop_is_a_protocol_error() -> None:
    events = upstream_events(["hi"], [], {"input_tokens": 1, "output_tokens": 2})[:-1]
    with pytest.raises(UpstreamProtocolError, match="message_stop"):
        await collect(events)


def test_an_answer_sent_as_it_came_is_parsed_for_its_usage_only() -> None:
    body = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": "Hello there"}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 7, "output_tokens": 3, "cache_read_input_tokens": 2},
    }  # fmt: skip
    response = usage_from_answer(body)
    assert (response.id, response.model, response.choices) == ("msg_1", "claude-x", [])
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (9, 3)
    assert response.usage.cached_input_tokens == 2 and response.wire_format == "anthropic"
    # Without usage the content is what the cost is estimated from: parsed whole.
    whole = usage_from_answer({k: v for k, v in body.items() if k != "usage"})
    assert whole.usage is None and whole.choices[0].message.text() == "Hello there"
    with pytest.raises(UpstreamProtocolError, match="content"):
        usage_from_answer({"id": "msg_2", "usage": body["usage"]})
    with pytest.raises(UpstreamProtocolError, match="usage"):
        usage_from_answer({**body, "usage": {"input_tokens": "many"}})


def _read(response: Any) -> tuple[Any, ...]:
    return (response.id, response.model, response.choices, response.usage, response.wire_format)


server_tools = st.sampled_from(
    [{}, {"server_tool_use": {"web_search_requests": 2}}, {"service_tier": "standard"}]
)


@settings(max_examples=200, deadline=None)
@given(response_content, usage, server_tools)
def test_an_answer_read_from_its_bytes_is_read_as_from_its_parsed_json(
    content: list[dict[str, Any]], usage: dict[str, Any], extra_usage: dict[str, Any]
) -> None:
    body = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": content, "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {**usage, **extra_usage},
    }  # fmt: skip
    assert _read(usage_from_answer_bytes(orjson.dumps(body))) == _read(usage_from_answer(body))


def test_an_anthropic_answer_of_unusual_types_read_from_its_bytes_is_read_as_before() -> None:
    content = [{"type": "text", "text": "Hello there"}]
    for body in (
        {"id": None, "content": content, "usage": {"input_tokens": 1, "output_tokens": 2}},
        {"id": "m", "model": 3, "content": content, "usage": {"input_tokens": "4"}},
        {"id": "m", "content": content, "usage": {"input_tokens": None, "output_tokens": 2.0}},
    ):
        whole = usage_from_answer(body)
        assert _read(usage_from_answer_bytes(orjson.dumps(body)))[2:] == _read(whole)[2:]
    # Without usage the content is what the cost is estimated from: parsed whole.
    whole = usage_from_answer_bytes(orjson.dumps({"id": "m", "content": content}))
    assert whole.usage is None and whole.choices[0].message.text() == "Hello there"
    for raw in (b'{"content": [1,]}', b'{"content": []} trailing', b"", b"[1"):
        with pytest.raises(ValueError):
            usage_from_answer_bytes(raw)
    for raw in (b'{"id": "m", "usage": {"input_tokens": 1}}', b"[1, 2]", b'{"content": 3}'):
        with pytest.raises(UpstreamProtocolError, match="'content' array"):
            usage_from_answer_bytes(raw)
    with pytest.raises(UpstreamProtocolError, match="usage is malformed"):
        usage_from_answer_bytes(b'{"content": [], "usage": {"input_tokens": "many"}}')


def test_the_output_limit_is_named_as_the_openai_upstream_wants_it() -> None:
    hello = [{"role": "user", "content": "x"}]
    from_anthropic = request_from_wire({"model": "c", "max_tokens": 50, "messages": hello})
    # OpenAI's own API (its reasoning models refuse max_tokens) and any compatible server.
    official = openai_request.request_to_wire(from_anthropic, "o4-mini", completion_tokens=True)
    assert official["max_completion_tokens"] == 50 and "max_tokens" not in official
    compatible = openai_request.request_to_wire(from_anthropic, "llama")
    assert compatible["max_tokens"] == 50 and "max_completion_tokens" not in compatible
    # An OpenAI client's own choice of name is kept either way.
    openai_body = {"model": "g", "max_tokens": 7, "messages": hello}
    kept = openai_request.request_to_wire(
        openai_request.request_from_wire(openai_body), "gpt-4o", completion_tokens=True
    )
    assert kept["max_tokens"] == 7 and "max_completion_tokens" not in kept


def test_empty_and_refused_assistant_turns_reach_anthropic_as_it_accepts_them() -> None:
    body = {"model": "g", "max_tokens": 9, "messages": [
        {"role": "user", "content": "Help me with this."},
        {"role": "assistant", "content": None, "refusal": "I can't help with that."},
        {"role": "user", "content": "Something else, then."},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "Still there?"},
    ]}  # fmt: skip
    wire = request_to_wire(openai_request.request_from_wire(body), "claude")
    assert [(m["role"], m["content"]) for m in wire["messages"]] == [
        ("user", "Help me with this."),
        ("assistant", "I can't help with that."),  # the refusal's words
        ("user", "Something else, then."),
        ("user", "Still there?"),  # the empty turn left out: Anthropic joins the two
    ]


def test_a_declined_turns_refusal_parts_reach_anthropic_as_their_words() -> None:
    declined = [
        {"type": "text", "text": "About that:"},
        {"type": "refusal", "refusal": "I can't help with that."},
    ]
    body = {"model": "g", "max_tokens": 9, "messages": [
        {"role": "user", "content": "Help me with this."},
        {"role": "assistant", "content": declined},
        {"role": "user", "content": "Something else, then."},
    ]}  # fmt: skip
    wire = request_to_wire(openai_request.request_from_wire(body), "claude")
    assert wire["messages"][1]["content"] == [
        {"type": "text", "text": "About that:"},
        {"type": "text", "text": "I can't help with that."},
    ]
    # An OpenAI deployment is sent the parts as the client wrote them.
    same = openai_request.request_to_wire(openai_request.request_from_wire(body), "gpt")
    assert same["messages"][1]["content"] == declined


def test_arguments_that_are_no_object_are_a_400_naming_the_clients_field() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
    body = {"model": "g", "max_tokens": 9, "messages": [
        {"role": "user", "content": "Call it."},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
    ]}  # fmt: skip
    with pytest.raises(InvalidRequest) as caught:
        request_to_wire(openai_request.request_from_wire(body), "claude")
    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"


def _message_start(usage: dict[str, int]) -> dict[str, Any]:
    return {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}}  # fmt: skip


def _relayed(events: list[dict[str, Any]]) -> list[Any]:
    """What an Anthropic client is sent for an Anthropic upstream's ``events``: read into
    canonical chunks and written again."""
    reader, writer = StreamReader(), StreamWriter()
    written = b""
    for raw in sse(events):
        chunk = reader.feed(raw)
        if chunk is not None:
            written += writer.feed(chunk)
    written += writer.finish()
    return [payload for _, payload in parse_events(written)]


def _as_sent(events: list[dict[str, Any]], usage: dict[str, int], output: int) -> list[Any]:
    """``events`` as the client must see them: message_delta's usage whole (as Anthropic
    sends the final counts)."""
    expected = [dict(e) for e in events]
    expected[-2] = {**expected[-2], "usage": {**usage, "output_tokens": output}}
    return expected


def test_every_block_and_delta_of_an_anthropic_stream_passes_through_as_it_came() -> None:
    # Thinking with its signature, redacted thinking, and an answer in three text blocks (the
    # middle one cited, as Anthropic splits text around citations): each block stays its own
    # block, each citations_delta on its block, and message_delta keeps its container and
    # stop_details (the SDK's stream helper copies both into its final message).
    usage = {"input_tokens": 40, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": 0, "output_tokens": 1}  # fmt: skip
    citation = {"type": "char_location", "cited_text": "The grass is green.",
                "document_index": 0, "document_title": "Facts",
                "start_char_index": 0, "end_char_index": 19}  # fmt: skip
    container = {"id": "container_1", "expires_at": "2026-12-05T01:00:00Z"}

    def block(index: int, content_block: dict[str, Any], *deltas: dict[str, Any]) -> list[Any]:
        return [
            {"type": "content_block_start", "index": index, "content_block": content_block},
            *([{"type": "ping"}] if index == 0 else []),  # where Anthropic sends it
            *({"type": "content_block_delta", "index": index, "delta": d} for d in deltas),
            {"type": "content_block_stop", "index": index},
        ]

    events: list[dict[str, Any]] = [
        _message_start(usage),
        *block(0, {"type": "thinking", "thinking": "", "signature": ""},
               {"type": "thinking_delta", "thinking": "Look it up."},
               {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}),
        *block(1, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va"}),
        *block(2, {"type": "text", "text": ""}, {"type": "text_delta", "text": "It says "}),
        *block(3, {"type": "text", "text": ""},
               {"type": "citations_delta", "citation": citation},
               {"type": "text_delta", "text": "the grass is green"}),
        *block(4, {"type": "text", "text": ""}),
        *block(5, {"type": "text", "text": ""}, {"type": "text_delta", "text": "."}),
        {"type": "message_delta",
         "delta": {"stop_reason": "end_turn", "stop_sequence": None, "container": container,
                   "stop_details": None},
         "usage": {"output_tokens": 30}},
        {"type": "message_stop"},
    ]  # fmt: skip
    assert _relayed(events) == _as_sent(events, usage, 30)


def test_a_streamed_tool_use_keeps_the_fields_of_its_start() -> None:
    # A call the code execution tool made (programmatic tool calling) names its ``caller``;
    # the client echoes the block back in its next turn, so the stream must keep it.
    usage = {"input_tokens": 9, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": 0, "output_tokens": 1}  # fmt: skip
    call = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {},
            "caller": {"type": "code_execution_20250825", "tool_id": "srvtoolu_1"}}  # fmt: skip
    events: list[dict[str, Any]] = [
        _message_start(usage),
        {"type": "content_block_start", "index": 0, "content_block": call},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "input_json_delta", "partial_json": '{"city": "Oslo"}'}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
         "usage": {"output_tokens": 7}},
        {"type": "message_stop"},
    ]  # fmt: skip
    assert _relayed(events) == _as_sent(events, usage, 7)


def test_pings_in_the_middle_of_a_stream_reach_the_client() -> None:
    # Anthropic keeps a stream alive with pings while nothing else comes (a long think, a
    # server tool running); a client, or a proxy before it, that hears nothing may give up.
    usage = {"input_tokens": 9, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": 0, "output_tokens": 1}  # fmt: skip
    thinking = {"type": "thinking", "thinking": "", "signature": ""}
    events: list[dict[str, Any]] = [
        _message_start(usage),
        {"type": "content_block_start", "index": 0, "content_block": thinking},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "thinking_delta", "thinking": "Hmm."}},
        {"type": "ping"},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "signature_delta", "signature": "EqQB"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 7}},
        {"type": "message_stop"},
    ]  # fmt: skip
    assert _relayed(events) == _as_sent(events, usage, 7)


plain_turn = st.builds(
    lambda role, text: {"role": role, "content": text},
    st.sampled_from(["user", "assistant"]),
    turn_text,
)
plain_extras = st.fixed_dictionaries(
    {},
    optional={
        "system": text,
        "stream": st.booleans(),
        "temperature": st.floats(0, 1) | st.integers(0, 1),
        "top_p": st.floats(0, 1),
        "service_tier": st.just("auto"),
        "container": st.none(),
    },
)


@settings(max_examples=200, deadline=None)
@given(st.lists(plain_turn, min_size=1, max_size=4), plain_extras, st.integers(0, 4096))
def test_a_plain_body_is_read_as_the_generic_walk_reads_it(
    turns: list[dict[str, Any]], extras: dict[str, Any], max_tokens: int
) -> None:
    body = {"model": "c", "max_tokens": max_tokens, "messages": turns, **extras}
    request = request_from_wire(body)
    assert request.wire_body is body
    request.wire_body = None
    assert request == walked_request(body)


def test_only_a_plain_anthropic_body_is_kept_to_be_sent_as_it_came() -> None:
    hello = {"role": "user", "content": "hi"}
    for changed in (
        {"system": [{"type": "text", "text": "s"}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
        {"messages": [hello, {"role": "assistant", "content": "x", "name": "n"}]},
        {"temperature": True},
        {"temperature": "0.5"},
        {"temperature": None},
        {"system": None},
        {"top_k": 5},
        {"stop_sequences": ["END"]},
        {"metadata": {"user_id": "u"}},
        {"tools": [{"name": "f", "input_schema": {"type": "object"}}]},
        {"thinking": {"type": "enabled", "budget_tokens": 1024}},
        {"output_format": {"type": "json_schema", "schema": {}}},
        {"max_tokens": 1.5},
    ):
        body = {"model": "c", "max_tokens": 5, "messages": [hello], **changed}
        try:
            request = request_from_wire(body)
        except InvalidRequest:
            continue  # what the generic walk refuses
        assert request.wire_body is None, changed


def test_closed_schema_closes_every_object_that_leaves_its_properties_open() -> None:
    leaf = {"type": "object", "properties": {"x": {"type": "string"}}}
    schema = {
        "type": ["object", "null"],
        "properties": {"a": leaf, "b": {"type": "array", "items": leaf}},
        "anyOf": [leaf],
        "$defs": {"Leaf": leaf},
        "additionalProperties": True,  # said by the client: left as it is
    }
    closed = closed_schema(schema)
    shut = {**leaf, "additionalProperties": False}
    assert closed == {
        "type": ["object", "null"],
        "properties": {"a": shut, "b": {"type": "array", "items": shut}},
        "anyOf": [shut],
        "$defs": {"Leaf": shut},
        "additionalProperties": True,
    }
    assert "additionalProperties" not in leaf  # the client's schema is not changed
    # A property named like a keyword is a property, not a subschema.
    named = {"type": "object", "properties": {"items": {"type": "string"}}}
    assert closed_schema(named)["properties"] == {"items": {"type": "string"}}


def test_message_start_of_another_familys_stream_states_the_gateways_input_estimate() -> None:
    asked: list[int] = []

    def estimate() -> int:
        asked.append(1)
        return 42

    writer = StreamWriter(input_estimate=estimate)
    chunk = openai_response.chunk_from_wire(openai_chunk({"role": "assistant", "content": "Hi"}))
    start = parse_events(writer.feed(chunk))[0][1]
    assert start["message"]["usage"]["input_tokens"] == 42 and asked == [1]
    # An Anthropic upstream says its input at its start: that goes, and nothing is counted.
    usage = {"input_tokens": 7, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": 0, "output_tokens": 1}  # fmt: skip
    reader, writer = StreamReader(), StreamWriter(input_estimate=estimate)
    first = reader.feed(orjson.dumps(_message_start(usage)))
    assert first is not None
    assert parse_events(writer.feed(first))[0][1]["message"]["usage"] == usage
    assert asked == [1]
