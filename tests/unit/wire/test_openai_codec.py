"""OpenAI wire codec: what goes in comes out the same after a round trip through canonical types."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.core.errors import InvalidRequest, UpstreamErrorBody, UpstreamProtocolError
from tollway.core.types import ChatResponse, ImagePart, OpaquePart, TextPart, ToolCallDelta, Usage
from tollway.wire.crossing import chunk_for
from tollway.wire.openai_embeddings import embedding_request_from_wire
from tollway.wire.openai_request import request_from_wire, request_to_wire
from tollway.wire.openai_response import (
    ToolCallSlots,
    chunk_from_wire,
    chunk_to_wire,
    error_from_wire,
    response_from_wire,
    response_to_wire,
    usage_from_answer,
    usage_from_answer_bytes,
    usage_from_wire,
    usage_to_wire,
)

text = st.text(max_size=20)
names = st.from_regex(r"[a-z_]{1,12}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=6,
)

text_part = st.builds(lambda t: {"type": "text", "text": t}, text)
image_part = st.builds(
    lambda url, detail, own: {"type": "image_url", "image_url": {"url": url, **detail}, **own},
    st.sampled_from(["https://example.com/cat.png", "data:image/png;base64,iVBORw0KGgo="]),
    st.sampled_from([{}, {"detail": "low"}]),
    st.dictionaries(
        names.filter(lambda n: n not in ("type", "image_url")), json_values, max_size=2
    ),
)
audio_part = st.just({"type": "input_audio", "input_audio": {"data": "AAA=", "format": "wav"}})
content = text | st.lists(text_part | image_part | audio_part, min_size=1, max_size=3)
tool_call = st.builds(
    lambda i, n, a: {
        "id": f"call_{i}",
        "type": "function",
        "function": {"name": n, "arguments": a},
    },
    st.integers(0, 99),
    names,
    st.sampled_from(["{}", '{"city": "Paris"}']),
)
message = st.one_of(
    st.builds(lambda c: {"role": "system", "content": c}, text),
    st.builds(lambda c: {"role": "user", "content": c}, content),
    st.builds(lambda c, n: {"role": "user", "content": c, "name": n}, text, names),
    st.builds(lambda c: {"role": "assistant", "content": c}, text),
    st.builds(
        lambda calls: {"role": "assistant", "content": None, "tool_calls": calls},
        st.lists(tool_call, min_size=1, max_size=2),
    ),
    st.builds(
        lambda i, c: {"role": "tool", "tool_call_id": f"call_{i}", "content": c},
        st.integers(0, 99),
        text,
    ),
)
tool = st.builds(
    lambda n, d, own: {
        "type": "function",
        "function": {"name": n, **d, "parameters": {"type": "object", "properties": {}}},
        **own,
    },
    names,
    st.sampled_from([{}, {"description": "does things"}]),
    st.sampled_from([{}, {"cache_control": {"type": "ephemeral"}}]),
)
optional_fields = st.fixed_dictionaries(
    {},
    optional={
        "max_tokens": st.integers(1, 4096),
        "temperature": st.floats(0, 2, allow_nan=False),
        "top_p": st.floats(0, 1, allow_nan=False),
        "n": st.integers(1, 4),
        # Not an empty sequence: OpenAI stops at nothing for it, and it is not sent on.
        "stop": st.lists(text.filter(bool), min_size=1, max_size=4),
        "seed": st.integers(0, 2**31),
        "user": text,
        "tools": st.lists(tool, min_size=1, max_size=3),
        "tool_choice": st.sampled_from(
            ["auto", "none", "required", {"type": "function", "function": {"name": "f"}}]
        ),
        "parallel_tool_calls": st.booleans(),
        "response_format": st.sampled_from(
            [
                {"type": "text"},
                {"type": "json_object"},
                {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            ]
        ),
        "logprobs": st.booleans(),
        "metadata": st.dictionaries(names, text, max_size=2),
        "x_vendor_option": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(message, min_size=1, max_size=5), optional_fields)
def test_request_round_trip_is_identity(
    messages: list[dict[str, Any]], fields: dict[str, Any]
) -> None:
    body = {"model": "m", "messages": messages, **fields}
    if fields.get("tool_choice") not in (None, "auto", "none") and not fields.get("tools"):
        # Requiring a tool where none is offered is refused, as OpenAI refuses it.
        with pytest.raises(InvalidRequest, match="tool_choice"):
            request_from_wire(body)
        return
    assert request_to_wire(request_from_wire(body), "m") == body


def test_request_parts_become_canonical_types() -> None:
    request = request_from_wire(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
                        {"type": "file", "file": {"file_id": "f1"}},
                    ],
                }
            ],
        }
    )
    parts = request.messages[0].content
    assert isinstance(parts, list)
    assert parts[0] == TextPart("look")
    assert parts[1] == ImagePart(data="AAAA", media_type="image/jpeg")
    assert isinstance(parts[2], OpaquePart) and parts[2].type == "file"


def test_a_tools_own_function_fields_go_on_to_an_openai_upstream() -> None:
    function = {"name": "f", "parameters": {"type": "object"}, "examples": [{}], "x": None}
    tools = [{"type": "function", "function": function}]
    request = request_from_wire({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                 "tools": tools})  # fmt: skip
    assert request.tools is not None
    assert request.tools[0].function_extra == {"examples": [{}], "x": None}
    assert request_to_wire(request, "up")["tools"] == tools
    with pytest.raises(InvalidRequest) as caught:
        request_to_wire(replace(request, wire_format="anthropic"), "up")
    assert caught.value.param == "tools[0].function.examples"


def test_max_completion_tokens_keeps_its_name_and_follows_the_canonical_value() -> None:
    request = request_from_wire(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 100}
    )
    assert request.max_tokens == 100
    request.max_tokens = 40  # e.g. lowered by a budget policy
    wire = request_to_wire(request, "up")
    assert wire["max_completion_tokens"] == 40 and "max_tokens" not in wire


def test_streams_always_ask_the_upstream_for_usage() -> None:
    request = request_from_wire(
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    )
    assert not request.include_usage
    assert request_to_wire(request, "m")["stream_options"] == {"include_usage": True}


def test_include_obfuscation_reaches_only_an_upstream_that_obfuscates() -> None:
    options = {"include_usage": False, "include_obfuscation": False}
    request = request_from_wire(
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        | {"stream_options": options}
    )
    assert request.include_obfuscation is False
    to_openai = request_to_wire(request, "m", obfuscation=True)
    assert to_openai["stream_options"] == {"include_usage": True, "include_obfuscation": False}
    assert request_to_wire(request, "m")["stream_options"] == {"include_usage": True}
    unsaid = request_from_wire(
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    )
    assert request_to_wire(unsaid, "m", obfuscation=True)["stream_options"] == {
        "include_usage": True
    }
    with pytest.raises(InvalidRequest) as caught:
        request_from_wire(
            {"model": "m", "messages": [{"role": "user", "content": "x"}]}
            | {"stream_options": {"include_obfuscation": "no"}}
        )
    assert caught.value.param == "stream_options.include_obfuscation"


def test_a_clients_own_stream_options_go_where_stream_options_go() -> None:
    options = {"include_usage": False, "continuous_usage_stats": True}
    request = request_from_wire(
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        | {"stream_options": options}
    )
    assert request_to_wire(request, "m")["stream_options"] == {
        "continuous_usage_stats": True,
        "include_usage": True,
    }
    with pytest.raises(InvalidRequest) as caught:
        request_to_wire(request, "m", stream_options=False)
    assert caught.value.param == "stream_options.continuous_usage_stats"
    unasked = replace(request, stream_options_extra={"continuous_usage_stats": False})
    assert "stream_options" not in request_to_wire(unasked, "m", stream_options=False)
    # Not a stream: no stream_options are sent at all.
    assert "stream_options" not in request_to_wire(replace(request, stream=False), "m")


usage = st.builds(
    lambda p, c, cached, reasoning: {
        "prompt_tokens": p,
        "completion_tokens": c,
        "total_tokens": p + c,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    },
    st.integers(0, 10**6),
    st.integers(0, 10**5),
    st.integers(0, 1000),
    st.integers(0, 1000),
)
response_message = st.one_of(
    st.builds(lambda c: {"role": "assistant", "content": c, "refusal": None}, text),
    st.builds(
        lambda calls: {"role": "assistant", "content": None, "tool_calls": calls},
        st.lists(tool_call, min_size=1, max_size=3),
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(response_message, min_size=1, max_size=3),
    usage,
    st.sampled_from(["stop", "length", "tool_calls", "content_filter"]),
)
def test_response_round_trip_is_identity(
    messages: list[dict[str, Any]], usage: dict[str, Any], finish: str
) -> None:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "m",
        "choices": [
            {"index": i, "message": m, "finish_reason": finish, "logprobs": None}
            for i, m in enumerate(messages)
        ],
        "usage": usage,
        "system_fingerprint": "fp_1",
        "service_tier": "default",
    }
    assert response_to_wire(response_from_wire(body)) == body


@settings(max_examples=200, deadline=None)
@given(text, st.sampled_from([None, "stop", "length"]), st.booleans())
def test_chunk_round_trip_is_identity(content: str, finish: str | None, role: bool) -> None:
    delta: dict[str, Any] = {"role": "assistant"} if role else {}
    delta["content"] = content
    body = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }
    assert chunk_to_wire(chunk_from_wire(body), include_usage=True) == body


def test_a_chunk_choices_own_fields_round_trip() -> None:
    scored = {"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": []}
    filtered = {"hate": {"filtered": False, "severity": "safe"}}
    choices = [
        {
            "index": 0,
            "delta": {"content": "Hi"},
            "logprobs": {"content": [scored], "refusal": None},
            "finish_reason": None,
        },
        {
            "index": 1,
            "delta": {"content": "Yo"},
            "logprobs": None,
            "finish_reason": None,
            "content_filter_results": filtered,  # Azure's, per choice
        },
    ]
    body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    body = {**body, "choices": choices, "service_tier": "default", "system_fingerprint": "fp"}
    chunk = chunk_from_wire(body)
    assert chunk.choices[0].choice_extra == {"logprobs": {"content": [scored], "refusal": None}}
    assert chunk_to_wire(chunk, include_usage=False) == body
    # Written for another format's client, they are the other format's details: left out.
    assert chunk_for(chunk, "anthropic").choices[1].choice_extra is None


def test_tool_call_deltas_round_trip() -> None:
    first = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": ""},
        "extra_content": {"google": {"thought_signature": "sig"}},  # Gemini's, kept
    }
    later = {"index": 0, "function": {"arguments": '{"a":'}}
    for call in (first, later):
        body = {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [call]},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
        }
        assert chunk_to_wire(chunk_from_wire(body), include_usage=False) == body


def _calls_chunk(*calls: dict[str, Any], choice: int = 0) -> dict[str, Any]:
    delta = {"tool_calls": list(calls)}
    return {"id": "c", "model": "m", "choices": [{"index": choice, "delta": delta}]}


def test_tool_call_deltas_without_an_index_are_placed_by_their_id() -> None:
    # As Gemini's OpenAI-compatible API streams them: no index, each new call with its id
    # (sometimes repeated on its fragments), several calls in one chunk or one per chunk.
    slots = ToolCallSlots()
    chunks = [
        _calls_chunk({"id": "a", "function": {"name": "f", "arguments": '{"x":'}}),
        _calls_chunk({"function": {"arguments": "1}"}}),
        _calls_chunk(
            {"id": "b", "function": {"name": "g", "arguments": "{}"}},
            {"id": "c", "function": {"name": "h", "arguments": "{"}},
        ),
        _calls_chunk({"id": "c", "function": {"arguments": "}"}}),
        _calls_chunk({"id": "z", "function": {"name": "f", "arguments": "{}"}}, choice=1),
    ]
    placed = [
        [(choice.index, call.index, call.name, call.arguments) for call in choice.tool_calls or ()]
        for chunk in chunks
        for choice in chunk_from_wire(chunk, slots).choices
    ]
    assert placed == [
        [(0, 0, "f", '{"x":')],
        [(0, 0, None, "1}")],
        [(0, 1, "g", "{}"), (0, 2, "h", "{")],
        [(0, 2, None, "}")],
        [(1, 0, "f", "{}")],
    ]
    assert slots.placed
    # A server that sends the index is read as it says, and nothing is placed.
    indexed = ToolCallSlots()
    chunk = chunk_from_wire(_calls_chunk({"index": 3, "id": "d", "function": {}}), indexed)
    assert chunk.choices[0].tool_calls == [ToolCallDelta(3, "d", None, "")]
    assert not indexed.placed


def test_embedding_inputs_normalise_to_lists() -> None:
    assert embedding_request_from_wire({"model": "e", "input": "a"}).input == ["a"]
    assert embedding_request_from_wire({"model": "e", "input": [1, 2]}).input == [[1, 2]]
    assert embedding_request_from_wire({"model": "e", "input": [[1], [2]]}).input == [[1], [2]]


def test_an_answer_with_malformed_usage_is_the_upstreams_fault() -> None:
    # A 502 (and another deployment), never a 500: whichever way the answer is parsed.
    choice = {"index": 0, "message": {"role": "assistant", "content": "hi"}}
    answer = {"id": "c", "choices": [{**choice, "finish_reason": "stop"}]}
    for usage in ({"prompt_tokens": "many"}, {"prompt_tokens_details": 7}):
        for parse in (response_from_wire, usage_from_answer):
            with pytest.raises(UpstreamProtocolError, match="usage is malformed"):
                parse({**answer, "usage": usage})
        with pytest.raises(UpstreamProtocolError, match="usage is malformed"):
            chunk_from_wire({"id": "c", "choices": [], "usage": usage})


def test_an_answer_sent_as_it_came_without_usage_is_parsed_whole() -> None:
    choice = {"index": 0, "message": {"role": "assistant", "content": "hi"}}
    answer = {"id": "c", "model": "m", "choices": [{**choice, "finish_reason": "stop"}]}
    whole = usage_from_answer(answer)
    assert whole.usage is None and whole.choices[0].message.content == "hi"
    counted = usage_from_answer({**answer, "usage": {"prompt_tokens": 3, "completion_tokens": 1}})
    assert counted.choices == [] and counted.usage is not None
    assert (counted.usage.input_tokens, counted.usage.output_tokens) == (3, 1)


def test_an_error_type_or_code_in_other_words_than_openais_is_only_its_kind() -> None:
    openai_body = {"error": {"message": "m", "type": "invalid_request_error", "param": "max_tokens",
                             "code": "unsupported_parameter"}}  # fmt: skip
    assert error_from_wire(openai_body) == UpstreamErrorBody(
        "m", "invalid_request_error", "unsupported_parameter", "max_tokens", "unsupported_parameter"
    )
    # Azure's own gateway: the status as the code, or a name of its own.
    assert error_from_wire({"error": {"code": "429", "message": "slow down"}}) == (
        UpstreamErrorBody("slow down", kind="429")
    )
    not_found = {"error": {"code": "DeploymentNotFound", "message": "gone"}}
    assert error_from_wire(not_found) == UpstreamErrorBody("gone", kind="DeploymentNotFound")
    # Azure's content filter refusing a prompt speaks OpenAI's words.
    assert error_from_wire({"error": {"code": "content_filter", "message": "no"}}).code == (
        "content_filter"
    )
    # vLLM: a class name as the type, the status as a number.
    vllm = {"object": "error", "message": "bad", "type": "BadRequestError", "code": 400}
    assert error_from_wire(vllm) == UpstreamErrorBody("bad", kind="400")


def test_cache_hits_said_only_as_deepseeks_prompt_cache_hit_tokens_are_cached_input() -> None:
    usage = usage_from_wire(
        {
            "prompt_tokens": 1200,
            "completion_tokens": 10,
            "total_tokens": 1210,
            "prompt_cache_hit_tokens": 1024,
            "prompt_cache_miss_tokens": 176,
        }
    )
    assert usage is not None
    assert (usage.input_tokens, usage.cached_input_tokens) == (1200, 1024)
    # The details, where sent, are what counts.
    both = usage_from_wire(
        {
            "prompt_tokens": 1200,
            "completion_tokens": 10,
            "prompt_cache_hit_tokens": 1024,
            "prompt_tokens_details": {"cached_tokens": 1000},
        }
    )
    assert both is not None and both.cached_input_tokens == 1000


def test_openais_cache_writes_are_read_whether_the_answer_is_parsed_or_read_as_bytes() -> None:
    # GPT-5.6 on bills prompt tokens written to the cache at 1.25x input and says them in
    # prompt_tokens_details.cache_write_tokens: both readers dropped them, billed as input.
    details = {"cached_tokens": 40, "cache_write_tokens": 8}
    wire = {"prompt_tokens": 83, "completion_tokens": 16, "prompt_tokens_details": details}
    parsed = usage_from_wire(wire)
    assert parsed is not None and (parsed.cached_input_tokens, parsed.cache_write_tokens) == (
        40, 8,
    )  # fmt: skip
    body = {"id": "c", "choices": [], "usage": wire}
    read = usage_from_answer_bytes(orjson.dumps(body)).usage
    assert read is not None and (read.cached_input_tokens, read.cache_write_tokens) == (40, 8)


def _counts(response: ChatResponse) -> tuple[object, ...]:
    usage = response.usage
    assert usage is not None
    return (
        response.id, response.model, response.created, response.choices,
        usage.input_tokens, usage.output_tokens, usage.cached_input_tokens,
        usage.cache_write_tokens, usage.reasoning_tokens,
    )  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(response_message, min_size=0, max_size=3), usage)
def test_an_answer_read_from_its_bytes_is_read_as_from_its_parsed_json(
    messages: list[dict[str, Any]], usage: dict[str, Any]
) -> None:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "m",
        "choices": [
            {"index": i, "message": m, "finish_reason": "stop"} for i, m in enumerate(messages)
        ],
        "usage": usage,
    }
    raw = orjson.dumps(body)
    assert _counts(usage_from_answer_bytes(raw)) == _counts(usage_from_answer(body))


def test_an_answer_of_unusual_types_read_from_its_bytes_is_read_as_before() -> None:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": "hi"},
        "finish_reason": "stop",
    }
    for usage in (
        {"prompt_tokens": None, "completion_tokens": 2},
        {"prompt_tokens": "7", "completion_tokens": 2.0},
        {"prompt_tokens": 7, "completion_tokens": 2, "prompt_tokens_details": None},
        {"prompt_tokens": 7, "prompt_tokens_details": {"cached_tokens": None}},
        {"prompt_tokens": 7, "completion_tokens": 2, "prompt_cache_hit_tokens": 5},
    ):
        body = {"id": None, "created": "1700000000", "choices": [choice], "usage": usage}
        raw = orjson.dumps(body)
        assert _counts(usage_from_answer_bytes(raw)) == _counts(usage_from_answer(body))
    # Without usage the content is what the cost is estimated from: parsed whole.
    whole = usage_from_answer_bytes(orjson.dumps({"id": "c", "choices": [choice]}))
    assert whole.usage is None and whole.choices[0].message.content == "hi"


def test_an_answer_that_is_not_json_or_has_no_choices_is_the_upstreams_fault() -> None:
    for raw in (b'{"choices": [{"index": 0,}]}', b'{"choices": []} trailing', b"", b"[1"):
        with pytest.raises(ValueError):
            usage_from_answer_bytes(raw)
    for raw in (b'{"id": "c", "usage": {"prompt_tokens": 1}}', b"[1, 2]", b'{"choices": 3}'):
        with pytest.raises(UpstreamProtocolError, match="without a 'choices' array"):
            usage_from_answer_bytes(raw)
    with pytest.raises(UpstreamProtocolError, match="usage is malformed"):
        usage_from_answer_bytes(b'{"choices": [], "usage": {"prompt_tokens": "many"}}')


def test_only_a_plain_body_is_kept_to_be_sent_as_it_came() -> None:
    hello = {"role": "user", "content": "hi"}
    plain = {"model": "m", "messages": [hello], "max_tokens": 5, "temperature": 0.2, "x": [1]}
    assert request_from_wire(plain).wire_body is plain
    only_newer = {"model": "m", "messages": [hello], "max_completion_tokens": 5}
    assert request_from_wire(only_newer).wire_body is only_newer
    for changed in (
        {"messages": [hello, {"role": "user", "content": "x", "name": "n"}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
        {"temperature": 1},  # an integer, read as a float
        {"temperature": None},
        {"stop": "END"},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"response_format": {"type": "json_object"}},
        {"stream": True, "stream_options": {"include_usage": True}},
        {"max_tokens": 5, "max_completion_tokens": 6},
        {"max_completion_tokens": None},
    ):
        body = {"model": "m", "messages": [hello], **changed}
        assert request_from_wire(body).wire_body is None, changed


def test_cache_writes_are_told_in_openais_prompt_details() -> None:
    """Anthropic's and Bedrock's cache writes (billed above the input rate) reach a Chat
    Completions client as ``prompt_tokens_details.cache_write_tokens``; an answer with none
    keeps the details it came with."""
    written = usage_to_wire(
        Usage(input_tokens=100, output_tokens=5, cached_input_tokens=10, cache_write_tokens=80)
    )
    assert written["prompt_tokens_details"] == {"cached_tokens": 10, "cache_write_tokens": 80}
    plain = usage_to_wire(Usage(input_tokens=100, output_tokens=5))
    assert "prompt_tokens_details" not in plain
    upstream = {"prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}}
    kept = usage_to_wire(Usage(input_tokens=1, output_tokens=1, extra=upstream))
    assert kept["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}


@pytest.mark.parametrize(("stop", "kept"), [("", None), ([""], None), (["", "END"], ["END"])])
def test_an_empty_stop_sequence_is_dropped(stop: object, kept: list[str] | None) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stop": stop}
    assert request_from_wire(body).stop == kept
