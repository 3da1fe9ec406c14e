"""Bedrock Converse codec: round trips, translation from OpenAI and Anthropic, usage, errors."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.core.errors import (
    InvalidModelOutput,
    InvalidRequest,
    UpstreamErrorBody,
    UpstreamProtocolError,
)
from tollway.core.types import ChatResponse, Choice, Message, Usage
from tollway.wire import anthropic_request, anthropic_response, openai_request, openai_response
from tollway.wire.anthropic_request import JSON_OBJECT_INSTRUCTION
from tollway.wire.bedrock_request import request_from_wire, request_to_wire
from tollway.wire.bedrock_response import (
    error_from_wire,
    finish_from_wire,
    response_from_wire,
    response_to_wire,
    stop_reason_to_wire,
    usage_from_wire,
    usage_to_wire,
)

text = st.text(min_size=1, max_size=20)
names = st.from_regex(r"[a-z_]{1,12}", fullmatch=True)
# Bedrock refuses blank text blocks, so a valid request never holds one.
text_block = text.filter(lambda t: not t.isspace()).map(lambda t: {"text": t})
image_block = st.sampled_from(
    [
        {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
        {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}},
        {"image": {"format": "png", "source": {"s3Location": {"uri": "s3://b/cat.png"}}}},
    ]
)
opaque_block = st.sampled_from(
    [
        {"document": {"format": "txt", "name": "doc", "source": {"bytes": "ZG9j"}}},
        {"cachePoint": {"type": "default"}},
    ]
)
tool_use_block = st.builds(
    lambda i, n, args: {"toolUse": {"toolUseId": f"tooluse_{i}", "name": n, "input": args}},
    st.integers(0, 99),
    names,
    st.sampled_from([{}, {"city": "Paris"}, {"n": 1, "nested": {"a": [1, 2]}}]),
)
tool_result_block = st.builds(
    lambda i, content, status: {
        "toolResult": {"toolUseId": f"tooluse_{i}", "content": content, **status}
    },
    st.integers(0, 99),
    st.sampled_from([[], [{"text": "sunny"}], [{"json": {"temp": 21}}, {"text": "ok"}]]),
    st.sampled_from([{}, {"status": "error"}]),
)
user_turn = st.one_of(
    st.lists(text_block | image_block | opaque_block, min_size=1, max_size=3),
    st.builds(
        lambda results, rest: results + rest,
        st.lists(tool_result_block, min_size=1, max_size=2),
        st.lists(text_block, max_size=2),
    ),
).map(lambda content: {"role": "user", "content": content})
reasoning_blocks = st.sampled_from(
    [
        [],
        [{"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "c2ln"}}}],
        [
            {"reasoningContent": {"reasoningText": {"text": "", "signature": "c2ln"}}},
            {"reasoningContent": {"redactedContent": "AQIDBA=="}},
        ],
    ]
)
assistant_turn = st.builds(
    lambda reasoning, texts, calls: {"role": "assistant", "content": reasoning + texts + calls},
    reasoning_blocks,
    st.lists(text_block, max_size=2),
    st.lists(tool_use_block, max_size=2),
).filter(lambda message: bool(message["content"]))
conversation = st.lists(st.tuples(user_turn, assistant_turn), min_size=1, max_size=3).map(
    lambda pairs: [turn for pair in pairs for turn in pair][:-1]
)
tool_spec = st.builds(
    lambda n, d, s: {
        "toolSpec": {
            "name": n,
            **d,
            "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}},
            **s,
        }
    },
    names,
    st.sampled_from([{}, {"description": "does things"}]),
    st.sampled_from([{}, {"strict": True}]),
)
schema_text = orjson.dumps({"type": "object", "properties": {"a": {"type": "string"}}}).decode()
optional_fields = st.fixed_dictionaries(
    {},
    optional={
        "system": st.lists(text_block | st.just({"cachePoint": {"type": "default"}}), min_size=1),
        "inferenceConfig": st.fixed_dictionaries(
            {},
            optional={
                "maxTokens": st.integers(1, 8192),
                "temperature": st.floats(0, 1, allow_nan=False),
                "topP": st.floats(0, 1, allow_nan=False),
                "stopSequences": st.lists(text, min_size=1, max_size=3),
            },
        ).filter(bool),
        "toolConfig": st.fixed_dictionaries(
            {"tools": st.lists(tool_spec, min_size=1, max_size=3)},
            optional={
                "toolChoice": st.sampled_from([{"auto": {}}, {"any": {}}, {"tool": {"name": "f"}}])
            },
        ),
        "outputConfig": st.sampled_from(
            [
                {"effort": "high"},
                {
                    "textFormat": {
                        "type": "json_schema",
                        "structure": {"jsonSchema": {"schema": schema_text, "name": "answer"}},
                    }
                },
            ]
        ),
        "additionalModelRequestFields": st.sampled_from(
            [
                {"top_k": 5},
                {"thinking": {"type": "enabled", "budget_tokens": 1024}},
                {"thinking": {"type": "disabled"}, "top_k": 5},
            ]
        ),
        "guardrailConfig": st.just({"guardrailIdentifier": "g", "guardrailVersion": "1"}),
        "requestMetadata": st.just({"team": "a"}),
    },
)


@given(conversation, optional_fields)
def test_request_round_trip_is_identity(messages: list[Any], fields: dict[str, Any]) -> None:
    body = {"messages": messages, **fields}
    if "toolConfig" not in body and any(
        "toolUse" in b or "toolResult" in b for m in messages for b in m["content"]
    ):
        body["toolConfig"] = {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {}}}}]}
    request = request_from_wire(orjson.loads(orjson.dumps(body)), "anthropic.claude-v1:0")
    assert request.model == "anthropic.claude-v1:0" and request.wire_format == "bedrock"
    assert request_to_wire(request) == body


def test_request_becomes_canonical_turns() -> None:
    request = request_from_wire(
        {
            "system": [{"text": "be brief"}],
            "messages": [
                {"role": "user", "content": [{"text": "weather?"}]},
                {
                    "role": "assistant",
                    "content": [
                        {"toolUse": {"toolUseId": "t1", "name": "w", "input": {"city": "Oslo"}}}
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"toolResult": {"toolUseId": "t1", "content": [{"json": {"c": -3}}]}},
                        {"text": "thanks"},
                    ],
                },
            ],
            "inferenceConfig": {"maxTokens": 10, "stopSequences": ["x"]},
            "toolConfig": {"tools": [], "toolChoice": {"any": {}}},
        },
        "m",
        stream=True,
    )
    roles = [message.role for message in request.messages]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    call = (request.messages[2].tool_calls or [])[0]
    assert (call.id, call.name, call.arguments) == ("t1", "w", '{"city":"Oslo"}')
    result = request.messages[3]
    assert result.tool_call_id == "t1" and result.text() == '{"c":-3}'
    assert (request.max_tokens, request.stop, request.stream) == (10, ["x"], True)
    assert request.tool_choice is not None and request.tool_choice.mode == "required"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": []}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"text": 1}]}]}, "messages[0].content[0].text"),
        (
            {"messages": [{"role": "user", "content": [{"text": "x"}]}],
             "inferenceConfig": {"maxTokens": 0}},
            "inferenceConfig.maxTokens",
        ),
        (
            {"messages": [{"role": "user", "content": [{"text": "x"}]}],
             "toolConfig": {"toolChoice": {"none": {}}}},
            "toolConfig.toolChoice",
        ),
    ],
)  # fmt: skip
def test_invalid_requests_are_400s_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        request_from_wire(body, "m")
    assert caught.value.param == param


WINDOW = "model_context_window_exceeded"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def openai(body: dict[str, Any]) -> dict[str, Any]:
    """The Converse body for an OpenAI Chat Completions body."""
    return request_to_wire(openai_request.request_from_wire({"model": "x", **body}))


def test_openai_request_translates_to_converse() -> None:
    body = openai(
        {
            "messages": [
                {"role": "system", "content": "be kind"},
                {"role": "developer", "content": [{"type": "text", "text": "and brief"}]},
                {"role": "user", "content": "weather?"},
                {"role": "user", "content": "in Oslo"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "snowing"},
                {"role": "user", "content": "and tomorrow?"},
            ],
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "max_tokens": 100,
            "temperature": 0.5,
            "top_p": 0.9,
            "stop": "END",
            "seed": 7,
            "user": "alice",
            "parallel_tool_calls": False,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    call = {"toolUse": {"toolUseId": "c1", "name": "get_weather", "input": {"city": "Oslo"}}}
    result = {"toolResult": {"toolUseId": "c1", "content": [{"text": "snowing"}]}}
    spec = {
        "name": "get_weather",
        "description": "Weather",
        "inputSchema": {"json": WEATHER_TOOL["function"]["parameters"]},  # type: ignore[index]
    }
    assert body == {
        "system": [{"text": "be kind"}, {"text": "and brief"}],
        "messages": [
            {"role": "user", "content": [{"text": "weather?"}, {"text": "in Oslo"}]},
            {"role": "assistant", "content": [call]},
            {"role": "user", "content": [result, {"text": "and tomorrow?"}]},
        ],
        "inferenceConfig": {
            "maxTokens": 100,
            "temperature": 0.5,
            "topP": 0.9,
            "stopSequences": ["END"],
        },
        "toolConfig": {
            "tools": [{"toolSpec": spec}],
            "toolChoice": {"tool": {"name": "get_weather"}},
        },
        # Claude says which stop sequence it stopped at only when asked.
        "additionalModelResponseFieldPaths": ["/stop_sequence"],
    }


def test_images_travel_as_bytes_and_urls_are_refused() -> None:
    data_url = {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/4AAQ"}}
    body = openai({"messages": [{"role": "user", "content": [data_url]}]})
    image = {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}}
    assert body["messages"][0]["content"] == [image]
    # Each refusal names the part (its URL, for an image by URL).
    for url, named in (
        ("https://example.com/cat.png", "messages[0].content[1].image_url"),
        ("data:image/tiff;base64,AAAA", "messages[0].content[1]"),
    ):
        part = {"type": "image_url", "image_url": {"url": url}}
        content = [{"type": "text", "text": "what is it"}, part]
        with pytest.raises(InvalidRequest) as caught:
            openai({"messages": [{"role": "user", "content": content}]})
        assert caught.value.param == named
        assert f"'{named}'" in caught.value.message or "tiff" in caught.value.message


def test_json_output_becomes_text_format_or_an_instruction() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    structured = openai(
        {
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "city", "schema": schema, "strict": True},
            },
        }
    )
    definition = structured["outputConfig"]["textFormat"]["structure"]["jsonSchema"]
    closed = {**schema, "additionalProperties": False}  # Bedrock refuses an open object
    assert definition == {"name": "city", "schema": orjson.dumps(closed).decode()}
    anything = openai(
        {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}
    )
    assert anything["system"] == [{"text": JSON_OBJECT_INSTRUCTION}]


def test_tool_choice_none_sends_no_tools_and_says_the_conversations_calls_in_text() -> None:
    plain = openai(
        {
            "messages": [{"role": "user", "content": "x"}],
            "tools": [WEATHER_TOOL],
            "tool_choice": "none",
        }
    )
    assert "toolConfig" not in plain
    arguments = '{"city": "Paris"}'
    call = {
        "id": "c",
        "type": "function",
        "function": {"name": "get_weather", "arguments": arguments},
    }
    history = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "let me look", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c", "content": "sunny"},
    ]
    # Converse has no "none", and refuses tool blocks without toolConfig: with no tool
    # offered, the calls and results are said in words.
    for asked in ({"tools": [WEATHER_TOOL], "tool_choice": "none"}, {}):
        used = openai({"messages": history, **asked})
        assert "toolConfig" not in used
        assert used["messages"] == [
            {"role": "user", "content": [{"text": "x"}]},
            {
                "role": "assistant",
                "content": [
                    {"text": "let me look"},
                    {"text": '[call c: get_weather({"city":"Paris"})]'},
                ],
            },
            {"role": "user", "content": [{"text": "[result of call c]"}, {"text": "sunny"}]},
        ]
    auto = openai({"messages": history, "tools": [WEATHER_TOOL]})
    assert auto["messages"][1]["content"][1] == {
        "toolUse": {"toolUseId": "c", "name": "get_weather", "input": {"city": "Paris"}}
    }
    user = [{"role": "user", "content": "x"}]
    required = openai({"messages": user, "tools": [WEATHER_TOOL], "tool_choice": "required"})
    assert required["toolConfig"]["toolChoice"] == {"any": {}}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"presence_penalty": 1}, "presence_penalty"),
    ],
)
def test_untranslatable_openai_features_are_400s(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        openai({"messages": [{"role": "user", "content": "x"}], **extra})
    assert caught.value.param == param


def test_anthropic_request_translates_and_refuses_what_converse_lacks() -> None:
    parsed = anthropic_request.request_from_wire(
        {
            "model": "claude",
            "max_tokens": 50,
            "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"user_id": "u"},
            "service_tier": "auto",
        }
    )
    body = request_to_wire(parsed)
    assert body == {
        # The cache hint is Bedrock's cache point after the block it marks.
        "system": [{"text": "sys"}, {"cachePoint": {"type": "default"}}],
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "inferenceConfig": {"maxTokens": 50},
    }
    with_top_k = anthropic_request.request_from_wire(
        {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "top_k": 3}
    )
    # Claude on Bedrock takes top_k as its own field, as it takes thinking.
    assert request_to_wire(with_top_k)["additionalModelRequestFields"] == {"top_k": 3}
    too_warm = replace(with_top_k, temperature=1.5)
    with pytest.raises(InvalidRequest, match=r"'temperature' 1\.5 is outside"):
        request_to_wire(too_warm)


response_content = st.builds(
    lambda reasoning, texts, calls: reasoning + texts + calls,
    reasoning_blocks
    | st.just([{"reasoningContent": {"reasoningText": {"text": "unsigned, as gpt-oss's"}}}]),
    st.lists(text_block, max_size=2),
    st.lists(tool_use_block, max_size=2),
)
stop_reasons = st.sampled_from(
    [
        "end_turn", "tool_use", "max_tokens", "stop_sequence", "guardrail_intervened",
        "content_filtered", "model_context_window_exceeded",
    ]
)  # fmt: skip
usages = st.builds(
    lambda i, o, read, write: {
        "inputTokens": i,
        "outputTokens": o,
        "totalTokens": i + o + read + write,
        **({"cacheReadInputTokens": read} if read else {}),
        **({"cacheWriteInputTokens": write} if write else {}),
    },
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.integers(0, 5_000),
    st.integers(0, 5_000),
)


@given(response_content, stop_reasons, usages, st.sampled_from([{}, {"metrics": {"latencyMs": 9}}]))
def test_response_round_trip_is_identity(
    content: list[Any], stop_reason: str, usage: dict[str, int], extra: dict[str, Any]
) -> None:
    raw = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": usage,
        **extra,
    }
    response = response_from_wire(raw, "m")
    assert response.model == "m" and response.id.startswith("bedrock-")
    assert response_to_wire(response) == raw


@pytest.mark.parametrize("stop_reason", ["malformed_model_output", "malformed_tool_use"])
def test_an_answer_ended_as_malformed_is_a_failure_naming_the_reason(stop_reason: str) -> None:
    # Not a finish reason (it was "error", which no client API has, or Anthropic's end_turn):
    # the failure the router retries or fails over, named by Bedrock's own reason.
    raw = {
        "output": {"message": {"role": "assistant", "content": [{"text": "Let me call"}]}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7},
    }
    with pytest.raises(InvalidModelOutput) as caught:
        response_from_wire(raw, "m")
    error = caught.value
    assert (error.status, error.code, error.reason) == (502, "invalid_model_output", stop_reason)
    assert error.retryable
    assert f"Bedrock ended it with {stop_reason}" in error.message


def test_usage_folds_cache_counts_into_input_and_back() -> None:
    raw = {
        "inputTokens": 10,
        "outputTokens": 5,
        "totalTokens": 145,
        "cacheReadInputTokens": 100,
        "cacheWriteInputTokens": 30,
    }
    usage = usage_from_wire(raw)
    assert usage == Usage(
        input_tokens=140, output_tokens=5, cached_input_tokens=100, cache_write_tokens=30
    )
    assert usage.total_tokens == 145
    assert usage_to_wire(usage) == raw
    assert usage_from_wire(None) is None
    plain = usage_to_wire(Usage(input_tokens=3, output_tokens=4))
    assert plain == {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}


def test_cache_writes_for_an_hour_are_read_from_the_cache_details() -> None:
    # Claude on Bedrock bills an hour's cache writes at twice the input rate; the usage says
    # how many there were only in cacheDetails (1h before 5m), which the codec did not read.
    details = [{"ttl": "1h", "inputTokens": 700}, {"ttl": "5m", "inputTokens": 300}]
    raw = {
        "inputTokens": 10,
        "outputTokens": 5,
        "totalTokens": 1015,
        "cacheWriteInputTokens": 1000,
        "cacheDetails": details,
    }
    usage = usage_from_wire(raw)
    assert usage is not None
    assert (usage.cache_write_tokens, usage.cache_write_1h_tokens) == (1000, 700)
    assert usage_to_wire(usage) == raw
    assert anthropic_response.usage_to_wire(replace(usage, extra={}))["cache_creation"] == {
        "ephemeral_5m_input_tokens": 300,
        "ephemeral_1h_input_tokens": 700,
    }
    five = usage_from_wire({**raw, "cacheDetails": [{"ttl": "5m", "inputTokens": 1000}]})
    assert five is not None and five.cache_write_1h_tokens == 0


@pytest.mark.parametrize(
    ("stop_reason", "finish", "extra"),
    [
        ("end_turn", "stop", {}),
        ("stop_sequence", "stop", {"stopReason": "stop_sequence"}),
        ("max_tokens", "length", {}),
        ("tool_use", "tool_calls", {}),
        ("content_filtered", "content_filter", {}),
        ("guardrail_intervened", "content_filter", {"stopReason": "guardrail_intervened"}),
        ("malformed_tool_use", "error", {"stopReason": "malformed_tool_use"}),
        (WINDOW, "length", {"stopReason": WINDOW}),
        ("something_new", "stop", {"stopReason": "something_new"}),
        (None, None, {}),
    ],
)  # fmt: skip
def test_stop_reasons_map_to_finish_reasons_and_back(
    stop_reason: str | None, finish: str | None, extra: dict[str, Any]
) -> None:
    assert finish_from_wire(stop_reason) == (finish, extra)
    if stop_reason is not None:
        assert stop_reason_to_wire(finish, None, extra) == stop_reason  # type: ignore[arg-type]
    assert stop_reason_to_wire("stop", "END", {}) == "stop_sequence"


def test_bedrock_answer_reaches_openai_clients_without_bedrock_details() -> None:
    raw = {
        "output": {"message": {"role": "assistant", "content": [
            {"text": "hi"}, {"toolUse": {"toolUseId": "t", "name": "f", "input": {"a": 1}}}]}},
        "stopReason": "guardrail_intervened",
        "usage": {"inputTokens": 2, "outputTokens": 3, "totalTokens": 9, "cacheReadInputTokens": 4},
        "metrics": {"latencyMs": 12},
    }  # fmt: skip
    out = openai_response.response_to_wire(response_from_wire(raw, "m"))
    assert "metrics" not in out
    choice = out["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a":1}'}
    assert out["usage"]["prompt_tokens"] == 6
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 4}


def test_reasoning_blocks_stay_out_of_an_anthropic_clients_answer() -> None:
    # A reasoning model on Bedrock (gpt-oss, DeepSeek-R1, Claude thinking) answers with a
    # reasoningContent block: no Anthropic content block, so the SDK could not read it.
    reasoning = {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "s"}}}
    raw = {
        "output": {"message": {"role": "assistant", "content": [
            reasoning, {"text": "hi"}, {"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 2, "outputTokens": 3, "totalTokens": 5},
    }  # fmt: skip
    out = anthropic_response.response_to_wire(response_from_wire(raw, "m"))
    assert out["content"] == [
        {"type": "text", "text": "hi"},
        {"type": "tool_use", "id": "t", "name": "f", "input": {}},
    ]
    assert out["stop_reason"] == "tool_use"
    # A Bedrock client of a Bedrock deployment still gets the block as it came.
    assert response_to_wire(response_from_wire(raw, "m"))["output"]["message"]["content"][0] == (
        reasoning
    )


def test_an_answer_keeps_its_block_order_for_an_anthropic_client() -> None:
    # [reasoning, toolUse, text]: the reasoning is left out, the call stays before the text.
    reasoning = {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "s"}}}
    use = {"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}
    raw = {
        "output": {"message": {"role": "assistant", "content": [reasoning, use, {"text": "hi"}]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 2, "outputTokens": 3, "totalTokens": 5},
    }
    out = anthropic_response.response_to_wire(response_from_wire(raw, "m"))
    assert [block["type"] for block in out["content"]] == ["tool_use", "text"]
    assert (
        response_to_wire(response_from_wire(raw, "m"))["output"]["message"]["content"]
        == (
            raw["output"]["message"]["content"]  # type: ignore[index]
        )
    )


def test_a_turn_keeps_its_block_order_from_anthropic_to_converse() -> None:
    turn = [
        {"type": "text", "text": "looking"},
        {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}},
        {"type": "text", "text": "wait"},
        {"type": "tool_use", "id": "u", "name": "g", "input": {}},
    ]
    body = {
        "model": "m",
        "max_tokens": 9,
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": turn},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t", "content": "1"},
                {"type": "tool_result", "tool_use_id": "u", "content": "2"}]},
        ],
        "tools": [{"name": "f", "input_schema": {"type": "object"}},
                  {"name": "g", "input_schema": {"type": "object"}}],
    }  # fmt: skip
    wire = request_to_wire(anthropic_request.request_from_wire(body))
    assert [next(iter(block)) for block in wire["messages"][1]["content"]] == [
        "text", "toolUse", "text", "toolUse"
    ]  # fmt: skip


def test_openai_answer_renders_as_converse() -> None:
    response = ChatResponse(
        id="x",
        model="m",
        created=0,
        choices=[Choice(0, Message(role="assistant", content="hello"), "length")],
        usage=Usage(input_tokens=1, output_tokens=2),
        wire_format="openai",
        extra={"system_fingerprint": "fp"},
    )
    assert response_to_wire(response) == {
        "output": {"message": {"role": "assistant", "content": [{"text": "hello"}]}},
        "stopReason": "max_tokens",
        "usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3},
    }


@pytest.mark.parametrize(
    "raw",
    [None, {}, {"output": {}}, {"output": {"message": {"content": "x"}}}],
)
def test_malformed_answers_are_protocol_errors(raw: Any) -> None:
    with pytest.raises(UpstreamProtocolError):
        response_from_wire(raw, "m")


def test_error_bodies() -> None:
    assert error_from_wire({"message": "Too many requests"}) == UpstreamErrorBody(
        "Too many requests"
    )
    typed = {"__type": "com.amazon.coral.validate#ValidationException", "message": "bad"}
    assert error_from_wire(typed) == UpstreamErrorBody("bad", kind="ValidationException")
    assert error_from_wire({"Message": "Upper"})[0] == "Upper"
    assert error_from_wire("plain text")[0] == "plain text"


def test_a_bedrock_error_body_of_another_shape_is_told_as_json_not_python() -> None:
    # A proxy in front of Bedrock (an API gateway, LiteLLM) answers in OpenAI's error shape.
    wrapped = {"error": {"message": "slow down", "type": "rate_limit"}}
    assert error_from_wire(wrapped).message == "slow down"
    odd = {"detail": "x" * 2000}
    message = error_from_wire(odd).message
    assert message.startswith('{"detail":"xxx') and len(message) <= 500
