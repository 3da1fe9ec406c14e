"""Gemini wire codec: round trips, call ids, usage, finish reasons, streams, 400s, provider."""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tollway.auth.vault import Vault
from tollway.config.schema import DeploymentConfig
from tollway.config.types import SecretRef
from tollway.core.errors import (
    InvalidModelOutput,
    InvalidRequest,
    UpstreamErrorBody,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from tollway.core.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Deployment,
    EmbeddingRequest,
    Message,
    ReasoningPart,
    TextPart,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    UpstreamTimeouts,
    Usage,
)
from tollway.dialects.http import HeaderForwarder
from tollway.providers.base import ProviderResources
from tollway.providers.gemini import GEMINI_API, VERTEX_AI, GeminiProvider
from tollway.providers.sse import SSEvent
from tollway.wire import anthropic_request, openai_request, openai_response
from tollway.wire.gemini_content import (
    FOREIGN_THOUGHT_SIGNATURE,
    ToolNames,
    answer_key,
    call_id,
)
from tollway.wire.gemini_embeddings import (
    batch_embed_to_wire,
    embedding_response_from_wire,
    predict_to_wire,
)
from tollway.wire.gemini_request import request_from_wire, request_to_wire
from tollway.wire.gemini_response import (
    error_from_wire,
    finish_from_wire,
    response_from_wire,
    response_to_wire,
    stream_error,
    usage_from_wire,
    usage_to_wire,
)
from tollway.wire.gemini_stream import StreamReader, StreamWriter

KEY = answer_key("resp-1")
"""The key of ``gemini_answer``'s calls' ids."""
text = st.text(max_size=20)
names = st.from_regex(r"[a-z_]{1,12}", fullmatch=True)
signature = st.sampled_from([{}, {"thoughtSignature": "c2lnbmF0dXJl"}])
args = st.sampled_from([{}, {"city": "Paris"}, {"n": 1, "nested": {"a": [1, 2]}}])

# Google refuses an empty text part, unless it carries a signature (a stream's last part).
text_part = st.builds(lambda t, s: {"text": t, **s}, text, signature).filter(
    lambda part: bool(part["text"]) or len(part) > 1
)
image_part = st.sampled_from(
    [
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
        {"fileData": {"mimeType": "video/mp4", "fileUri": "gs://bucket/clip.mp4"}},
    ]
)
call_part = st.builds(
    lambda n, a, s: {"functionCall": {"name": n, "args": a}, **s}, names, args, signature
)
thought_part = st.just({"text": "pondering", "thought": True})
model_turn = st.builds(
    lambda texts, calls: {"role": "model", "parts": texts + calls},
    st.lists(text_part | thought_part, max_size=2),
    st.lists(call_part, max_size=2),
).filter(lambda turn: bool(turn["parts"]))
user_turn = st.lists(text_part | image_part, min_size=1, max_size=3).map(
    lambda parts: {"role": "user", "parts": parts}
)


def answered(model: dict[str, Any], extra: list[dict[str, Any]]) -> dict[str, Any]:
    """A user turn answering every call of ``model`` (then ``extra`` parts), or plain text."""
    calls = [part["functionCall"]["name"] for part in model["parts"] if "functionCall" in part]
    results = [
        {"functionResponse": {"name": name, "response": {"output": f"result {i}"}}}
        for i, name in enumerate(calls)
    ]
    return {"role": "user", "parts": results + extra or [{"text": "next"}]}


conversation = st.lists(
    st.tuples(user_turn, model_turn, st.lists(text_part, max_size=1)), min_size=1, max_size=3
).map(
    lambda turns: (
        [turns[0][0]]
        + [item for _, model, extra in turns for item in (model, answered(model, extra))]
    )
)
declaration = st.builds(
    lambda n, d: {
        "name": n,
        **d,
        "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
    names,
    st.sampled_from([{}, {"description": "does things"}]),
)
optional_fields = st.fixed_dictionaries(
    {},
    optional={
        "systemInstruction": st.lists(text_part, min_size=1, max_size=2).map(
            lambda parts: {"parts": parts}
        ),
        "tools": st.builds(
            lambda decls, built_in: [{"functionDeclarations": decls}, *built_in],
            st.lists(declaration, min_size=1, max_size=3),
            st.sampled_from([[], [{"googleSearch": {}}], [{"codeExecution": {}}]]),
        ),
        "toolConfig": st.sampled_from(
            [
                {"functionCallingConfig": {"mode": "AUTO"}},
                {"functionCallingConfig": {"mode": "ANY"}},
                {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}},
                {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f", "g"]}},
                {
                    "functionCallingConfig": {"mode": "NONE"},
                    "retrievalConfig": {"languageCode": "en"},
                },
            ]
        ),
        "generationConfig": st.fixed_dictionaries(
            {},
            optional={
                "temperature": st.floats(0, 2, allow_nan=False),
                "topP": st.floats(0, 1, allow_nan=False),
                "topK": st.integers(1, 40),
                "maxOutputTokens": st.integers(1, 8192),
                "stopSequences": st.lists(text, min_size=1, max_size=3),
                "candidateCount": st.integers(1, 4),
                "seed": st.integers(0, 2**31),
                "responseMimeType": st.sampled_from(["application/json", "text/plain"]),
                "responseJsonSchema": st.just({"type": "object"}),
                "thinkingConfig": st.just({"thinkingBudget": 1024}),
            },
        ).filter(bool),
        "safetySettings": st.just(
            [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
        ),
        "cachedContent": st.just("cachedContents/abc"),
    },
)


@settings(max_examples=300, deadline=None)
@given(conversation, optional_fields)
def test_request_round_trip_is_identity(
    contents: list[dict[str, Any]], fields: dict[str, Any]
) -> None:
    body = {"contents": contents, **fields}
    if body.get("toolConfig") and not body.get("tools"):
        body.pop("toolConfig")  # a tool choice without tools is not written back
    request = request_from_wire(body, "gemini-x")
    assert request.wire_format == "gemini" and request.model == "gemini-x"
    assert request_to_wire(request) == body


def test_request_becomes_canonical_turns_with_synthesized_call_ids() -> None:
    body = {
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "weather?"}]},
            {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
                    {"functionCall": {"name": "get_time", "args": {}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_time", "response": {"t": "noon"}}},
                    {"functionResponse": {"name": "get_weather", "response": {"output": "sun"}}},
                ],
            },
        ],
        "generationConfig": {"maxOutputTokens": 9, "candidateCount": 2},
    }
    request = request_from_wire(body, "m", stream=True)
    system, question, turn, time_result, weather_result = request.messages
    assert system.role == "system" and question.role == "user"
    assert [(c.id, c.name, c.arguments) for c in turn.tool_calls or ()] == [
        ("call_0_get_weather", "get_weather", '{"city":"Oslo"}'),
        ("call_1_get_time", "get_time", "{}"),
    ]
    assert (time_result.role, time_result.tool_call_id) == ("tool", "call_1_get_time")
    assert time_result.content == '{"t":"noon"}'
    assert weather_result.tool_call_id == "call_0_get_weather"
    assert (request.max_tokens, request.n, request.stream) == (9, 2, True)


def openai_body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt", "messages": [{"role": "user", "content": "hi"}], **fields}


def test_openai_request_translates_to_gemini() -> None:
    body = openai_body(
        messages=[
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_abc", "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
                    {"id": "call_def", "type": "function",
                     "function": {"name": "get_time", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_def", "content": '{"t": "noon"}'},
            {"role": "tool", "tool_call_id": "call_abc", "content": "sunny"},
            {"role": "user", "content": "thanks"},
        ],
        tools=[{"type": "function", "function": {"name": "get_weather", "strict": True,
                                                 "parameters": {"type": "object"}}}],
        tool_choice="required",
        parallel_tool_calls=False,
        n=3,
        user="alice",
        store=True,
    )  # fmt: skip
    wire = request_to_wire(openai_request.request_from_wire(body))
    assert wire == {
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "weather?"}]},
            {
                "role": "model",
                "parts": [
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
                        "thoughtSignature": FOREIGN_THOUGHT_SIGNATURE,
                    },
                    {"functionCall": {"name": "get_time", "args": {}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_time", "response": {"t": "noon"}}},
                    {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}},
                    {"text": "thanks"},
                ],
            },
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {"name": "get_weather", "parametersJsonSchema": {"type": "object"}}
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        "generationConfig": {"candidateCount": 3},
    }


def test_tool_results_find_their_function_even_when_ids_repeat_or_the_call_was_trimmed() -> None:
    def turn(call_id: str, name: str) -> list[Message]:
        call = ToolCall(id=call_id, name=name, arguments="{}")
        return [
            Message(role="assistant", tool_calls=[call]),
            Message(role="tool", tool_call_id=call_id, content="ok"),
        ]

    messages = [Message(role="user", content="go"), *turn("x", "first"), *turn("x", "second")]
    # A client that trimmed the call away still names the function through a made-up id.
    messages.append(Message(role="tool", tool_call_id="call_3_get_time", content="noon"))
    wire = request_to_wire(ChatRequest(model="m", messages=messages))
    results = [
        part["functionResponse"]["name"]
        for content in wire["contents"]
        for part in content["parts"]
        if "functionResponse" in part
    ]
    assert results == ["first", "second", "get_time"]
    orphan = [Message(role="user", content="go"), Message(role="tool", tool_call_id="nope")]
    with pytest.raises(InvalidRequest) as caught:
        request_to_wire(ChatRequest(model="m", messages=orphan))
    assert caught.value.param == "messages[1].tool_call_id"


def test_json_output_and_anthropic_requests_translate() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = openai_body(
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    )
    config = request_to_wire(openai_request.request_from_wire(body))["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    body = openai_body(response_format={"type": "json_object"})
    config = request_to_wire(openai_request.request_from_wire(body))["generationConfig"]
    assert config == {"responseMimeType": "application/json"}
    claude = anthropic_request.request_from_wire(
        {
            "model": "c",
            "max_tokens": 10,
            "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hi"}],
            "tool_choice": {"type": "tool", "name": "f"},
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "metadata": {"user_id": "u"},
        }
    )
    wire = request_to_wire(claude)
    assert wire["systemInstruction"] == {"parts": [{"text": "sys"}]}
    assert wire["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}
    }
    assert wire["generationConfig"] == {"maxOutputTokens": 10}


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (openai_body(logprobs=True, top_logprobs=21), "top_logprobs"),  # Gemini's most: 20
        (openai_body(top_logprobs=2), "top_logprobs"),  # only with logprobs, as OpenAI says
        (openai_body(presence_penalty=1), "presence_penalty"),
        (
            openai_body(
                messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]
            ),
            "input_audio",
        ),
        (
            openai_body(
                messages=[
                    {
                        "role": "system",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                    },
                    {"role": "user", "content": "hi"},
                ]
            ),
            "system messages",
        ),
        (
            openai_body(
                messages=[
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "tool_calls": [
                        {"id": "c", "type": "function",
                         "function": {"name": "f", "arguments": "[1]"}}
                    ]},
                ]
            ),
            "arguments",
        ),
        (openai_body(tools=[{"type": "web_search"}]), "web_search"),
    ],
)  # fmt: skip
def test_untranslatable_features_are_400s_naming_them(body: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        request_to_wire(openai_request.request_from_wire(body))


def test_logprobs_are_response_logprobs_and_their_result_the_choices() -> None:
    body = request_to_wire(
        openai_request.request_from_wire(openai_body(logprobs=True, top_logprobs=3))
    )
    assert body["generationConfig"] == {"responseLogprobs": True, "logprobs": 3}
    plain = request_to_wire(openai_request.request_from_wire(openai_body(logprobs=False)))
    assert "generationConfig" not in plain
    # Google leaves out a logProbability of 0 (a default value).
    result = {
        "chosenCandidates": [{"token": "Hi", "logProbability": -0.5}, {"token": "!"}],
        "topCandidates": [{"candidates": [{"token": "Hi", "logProbability": -0.5}]}],
    }
    candidate = {"content": {"parts": [{"text": "Hi!"}]}, "logprobsResult": result}
    (choice,) = response_from_wire({"candidates": [candidate]}).choices
    assert choice.logprobs == [
        TokenLogprob("Hi", -0.5, [TokenLogprob("Hi", -0.5)]),
        TokenLogprob("!", 0.0),
    ]


def test_gemini_only_features_are_400s_for_other_formats() -> None:
    body = {
        "contents": [{"parts": [{"text": "hi"}]}],
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "labels": {"team": "a"},
    }
    request = request_from_wire(body, "m")
    with pytest.raises(InvalidRequest, match="safetySettings"):
        openai_request.request_to_wire(request, "gpt")
    del body["safetySettings"]
    assert "labels" not in openai_request.request_to_wire(request_from_wire(body, "m"), "gpt")
    search = {"contents": [{"parts": [{"text": "hi"}]}], "tools": [{"googleSearch": {}}]}
    with pytest.raises(InvalidRequest, match="googleSearch"):
        openai_request.request_to_wire(request_from_wire(search, "m"), "gpt")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "contents"),
        ({"contents": []}, "contents"),
        ({"contents": [{"role": "system", "parts": []}]}, "contents[0].role"),
        ({"contents": [{"parts": "hi"}]}, "contents[0].parts"),
        ({"contents": [{"parts": [{"text": 1}]}]}, "contents[0].parts[0].text"),
        ({"contents": [{"parts": []}], "generationConfig": {"topP": "x"}}, "generationConfig.topP"),
    ],
)
def test_invalid_requests_are_400s_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        request_from_wire(body, "m")
    assert caught.value.param == param


def test_usage_counts_thoughts_as_output_and_tool_prompts_as_input() -> None:
    raw = {
        "promptTokenCount": 100,
        "cachedContentTokenCount": 40,
        "toolUsePromptTokenCount": 5,
        "candidatesTokenCount": 20,
        "thoughtsTokenCount": 30,
        "totalTokenCount": 155,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 100}],
    }
    usage = usage_from_wire(raw)
    assert usage is not None
    assert (usage.input_tokens, usage.cached_input_tokens) == (105, 40)
    assert (usage.output_tokens, usage.reasoning_tokens) == (50, 30)
    assert usage.total_tokens == raw["totalTokenCount"]
    assert usage_to_wire(usage) == raw
    assert usage_from_wire(None) is None
    assert usage_to_wire(Usage(3, 4)) == {
        "promptTokenCount": 3,
        "candidatesTokenCount": 4,
        "totalTokenCount": 7,
    }


@pytest.mark.parametrize(
    ("reason", "called", "finish", "extra"),
    [
        ("STOP", False, "stop", {}),
        ("STOP", True, "tool_calls", {}),
        ("MAX_TOKENS", False, "length", {}),
        ("SAFETY", False, "content_filter", {}),
        ("RECITATION", False, "content_filter", {"finishReason": "RECITATION"}),
        ("MALFORMED_FUNCTION_CALL", False, "stop", {"finishReason": "MALFORMED_FUNCTION_CALL"}),
        (None, False, None, {}),
    ],
)
def test_finish_reasons(reason: str | None, called: bool, finish: str | None, extra: Any) -> None:
    assert finish_from_wire(reason, called) == (finish, extra)


def gemini_answer(**fields: Any) -> dict[str, Any]:
    return {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "thinking...", "thought": True},
                        {"text": "Here"},
                        {"text": " it is", "thoughtSignature": "c2ln"},
                        {
                            "functionCall": {"name": "f", "args": {"a": 1}},
                            "thoughtSignature": "c2ln",
                        },
                    ],
                },
                "finishReason": "STOP",
                "index": 0,
                "safetyRatings": [],
            }
        ],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 7, "totalTokenCount": 12},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-1",
        **fields,
    }


def test_response_becomes_canonical_with_thoughts_as_reasoning() -> None:
    response = response_from_wire(gemini_answer(promptFeedback={"safetyRatings": []}))
    choice = response.choices[0]
    assert choice.message.text() == "Here it is" and choice.finish_reason == "tool_calls"
    assert choice.message.content == [
        ReasoningPart("thinking..."),
        TextPart("Here"),
        ReasoningPart(signature="gemini:c2ln"),
        TextPart(" it is"),
        ReasoningPart(signature="gemini:c2ln"),
    ]
    call = (choice.message.tool_calls or [])[0]
    # Named by the answer (its responseId's hash) and the call's place: no two answers share.
    assert (call.id, call.name, call.arguments) == (f"call_{KEY}_0_f", "f", '{"a":1}')
    assert (response.id, response.model) == ("resp-1", "gemini-2.5-flash")
    assert response.usage == Usage(5, 7)
    openai = openai_response.response_to_wire(response)
    assert "promptFeedback" not in openai and "safetyRatings" not in openai["choices"][0]
    # The call's signature where Google's OpenAI-compatible API puts it (thought_signatures).
    assert openai["choices"][0]["message"]["tool_calls"][0] == {
        "id": f"call_{KEY}_0_f",
        "type": "function",
        "function": {"name": "f", "arguments": '{"a":1}'},
        "extra_content": {"google": {"thought_signature": "c2ln"}},
    }


def test_response_round_trip_keeps_what_gemini_clients_need() -> None:
    raw = gemini_answer()
    again = response_to_wire(response_from_wire(raw))
    assert again["candidates"][0]["content"]["parts"] == raw["candidates"][0]["content"]["parts"]
    assert again["candidates"][0]["finishReason"] == "STOP"
    assert again["candidates"][0]["safetyRatings"] == []
    assert again["usageMetadata"] == raw["usageMetadata"]
    assert (again["modelVersion"], again["responseId"]) == ("gemini-2.5-flash", "resp-1")


def test_a_blocked_prompt_is_an_empty_content_filter_answer() -> None:
    raw = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}
    choice = response_from_wire(raw).choices[0]
    assert (choice.message.content, choice.finish_reason) == ("", "content_filter")
    with pytest.raises(UpstreamProtocolError):
        response_from_wire({"usageMetadata": {}})
    with pytest.raises(UpstreamProtocolError):
        response_from_wire([])


@pytest.mark.parametrize("asked", [2, 3])
def test_a_blocked_prompt_ends_every_candidate_asked_for(asked: int) -> None:
    # One choice was answered to a client that asked for n: it read n - 1 choices missing.
    raw = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}
    choices = response_from_wire(raw, asked).choices
    assert [(c.index, c.message.content, c.finish_reason) for c in choices] == [
        (index, "", "content_filter") for index in range(asked)
    ]
    reader = StreamReader(asked)
    chunk = reader.feed(orjson.dumps(raw))
    assert chunk is not None and reader.done
    assert [(c.index, c.finish_reason) for c in chunk.choices] == [
        (index, "content_filter") for index in range(asked)
    ]


def test_error_bodies_and_stream_errors() -> None:
    body = {"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}}
    assert error_from_wire(body) == UpstreamErrorBody(
        "Resource exhausted", kind="RESOURCE_EXHAUSTED"
    )
    assert error_from_wire([body])[0] == "Resource exhausted"
    assert error_from_wire("Bad Gateway") == UpstreamErrorBody("Bad Gateway")
    error = stream_error(body)
    assert isinstance(error, UpstreamStatusError) and error.status == 429
    assert (error.kind, error.code) == ("RESOURCE_EXHAUSTED", "rate_limit_exceeded")
    reader = StreamReader()
    with pytest.raises(UpstreamStatusError, match="Resource exhausted"):
        reader.feed(orjson.dumps(body))
    with pytest.raises(UpstreamProtocolError):
        reader.feed(b"{not json")


def test_a_retry_delay_in_the_error_details_is_the_retry_after() -> None:
    # Google says how long to wait in a google.rpc.RetryInfo detail, never in a header.
    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "22.5s"},
    ]
    body = {"error": {"code": 429, "message": "Quota", "status": "RESOURCE_EXHAUSTED"}}
    body["error"]["details"] = details
    assert error_from_wire(body).retry_after == "22.5"  # to the millisecond
    error = stream_error(body)
    assert isinstance(error, UpstreamStatusError)
    assert error.headers == {"retry-after": "23", "retry-after-ms": "22500"}
    for delay in ("soon", "-1s", "nans", 5):
        details[1]["retryDelay"] = delay
        assert error_from_wire(body).retry_after is None


@pytest.mark.parametrize(
    "reason", ["MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"]
)
def test_a_failed_function_call_is_a_failure_naming_the_reason(reason: str) -> None:
    # It was finish_reason "stop" with empty content: a finished answer that said nothing.
    usage = {"promptTokenCount": 9, "totalTokenCount": 9}
    answer = {"candidates": [{"finishReason": reason, "index": 0}], "usageMetadata": usage}
    with pytest.raises(InvalidModelOutput) as caught:
        response_from_wire(answer)
    error = caught.value
    assert (error.status, error.code, error.reason) == (502, "invalid_model_output", reason)
    assert error.retryable and f"Gemini ended it with {reason}" in error.message
    with pytest.raises(InvalidModelOutput, match=reason):
        read([{**answer, "modelVersion": "g"}])
    with pytest.raises(InvalidModelOutput, match=reason):  # after some text, mid-stream
        read([event([{"text": "Calling"}]), event([], reason)])


def event(parts: list[dict[str, Any]], finish: str | None = None, **fields: Any) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "modelVersion": "g", "responseId": "r", **fields}


def read(events: list[dict[str, Any]], candidates: int = 1) -> tuple[list[ChatChunk], bool]:
    reader = StreamReader(candidates)
    chunks = [c for e in events if (c := reader.feed(orjson.dumps(e))) is not None]
    return [*chunks, reader.last()], reader.done


def test_stream_reader_gives_role_text_whole_calls_finish_then_usage() -> None:
    usage = {"promptTokenCount": 4, "candidatesTokenCount": 3, "totalTokenCount": 7}
    events = [
        event([{"text": "Hel", "thought": True}], usageMetadata={"promptTokenCount": 4}),
        event([{"text": "Hello"}]),
        event([{"functionCall": {"name": "a", "args": {}}}, {"functionCall": {"name": "b"}}]),
        event([{"text": "", "thoughtSignature": "c2ln"}], "STOP", usageMetadata=usage),
    ]
    chunks, done = read(events)
    assert done
    choices = [chunk.choices[0] for chunk in chunks[:-1]]
    assert (choices[0].role, choices[0].content) == ("assistant", None)
    assert (choices[1].role, choices[1].content) == (None, "Hello")
    assert choices[2].tool_calls == [
        ToolCallDelta(0, f"call_{answer_key('r')}_0_a", "a", "{}"),
        ToolCallDelta(1, f"call_{answer_key('r')}_1_b", "b", "{}"),
    ]
    assert choices[3].finish_reason == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage == Usage(4, 3)
    assert {chunk.id for chunk in chunks} == {"r"}


def test_each_candidates_calls_have_ids_of_their_own_streamed_or_not() -> None:
    call = {"functionCall": {"name": "f", "args": {}}}
    answer = {
        "responseId": "r",
        "candidates": [
            {"content": {"role": "model", "parts": [call]}, "finishReason": "STOP"},
            {"content": {"role": "model", "parts": [call]}, "finishReason": "STOP", "index": 1},
        ],
    }
    complete = [
        [c.id for c in choice.message.tool_calls or ()]
        for choice in response_from_wire(answer).choices
    ]
    chunks, done = read([answer], candidates=2)
    streamed = [c.tool_calls[0].id for c in chunks[0].choices if c.tool_calls]
    assert done and complete == [[streamed[0]], [streamed[1]]]
    assert streamed[0] == f"call_{answer_key('r')}_0_f" != streamed[1]


def test_a_stream_cut_before_every_candidate_finished_is_not_done() -> None:
    _, done = read([event([{"text": "Hi"}])])
    assert not done
    two = {
        "candidates": [
            {"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP", "index": 0},
            {"content": {"parts": [{"text": "b"}]}, "index": 1},
        ]
    }
    chunks, done = read([two], candidates=2)
    assert not done and [c.index for c in chunks[0].choices] == [0, 1]
    chunks, done = read([{"promptFeedback": {"blockReason": "OTHER"}}], candidates=2)
    assert done and chunks[0].choices[0].finish_reason == "content_filter"


def test_google_search_queries_are_the_usages_web_searches() -> None:
    grounding = {"groundingMetadata": {"webSearchQueries": ["euro 2024", "who won"]}}
    usage = {"promptTokenCount": 4, "candidatesTokenCount": 3}
    answer = event([{"text": "Spain"}], "STOP", usageMetadata=usage)
    answer["candidates"][0].update(grounding)
    whole = response_from_wire(answer)
    assert whole.usage is not None and whole.usage.tool_calls == {"web_search": 2}
    # Streamed: charged from the event that says so, in the usage told on later chunks too
    # (a cut stream keeps them); an event repeating the list counts it once.
    first = event([{"text": "Sp"}], usageMetadata={"promptTokenCount": 4})
    first["candidates"][0].update(grounding)
    more = event([{"text": "ain"}], usageMetadata={"promptTokenCount": 4})
    last = event([{"text": ""}], "STOP", usageMetadata=usage)
    last["candidates"][0].update(grounding)
    chunks, _ = read([first, more])
    assert chunks[1].usage_so_far is not None
    assert chunks[1].usage_so_far.tool_calls == {"web_search": 2}
    chunks, _ = read([first, more, last])
    assert chunks[-1].usage == Usage(4, 3, tool_calls={"web_search": 2})
    chunks, _ = read([event([{"text": "Hi"}], "STOP", usageMetadata=usage)])
    assert chunks[-1].usage is not None and chunks[-1].usage.tool_calls is None


def test_web_search_options_are_the_google_search_tool() -> None:
    body = openai_body(web_search_options={})
    wire = request_to_wire(openai_request.request_from_wire(body))
    assert wire["tools"] == [{"googleSearch": {}}]
    default = openai_body(web_search_options={"search_context_size": "medium"})
    assert request_to_wire(openai_request.request_from_wire(default))["tools"] == wire["tools"]
    location = {"type": "approximate", "approximate": {"country": "GB"}}
    for options, param in (
        ({"user_location": location}, "web_search_options.user_location"),
        ({"search_context_size": "high"}, "web_search_options.search_context_size"),
    ):
        request = openai_request.request_from_wire(openai_body(web_search_options=options))
        with pytest.raises(InvalidRequest) as caught:
            request_to_wire(request)
        assert caught.value.param == param
    # The canonical request keeps them, for a fallback of another family.
    request = openai_request.request_from_wire(body)
    request_to_wire(request)
    assert request.extra["web_search_options"] == {} and not request.tools


def test_stream_writer_holds_calls_until_the_end_and_reads_back() -> None:
    chunks = [
        ChatChunk("id", "m", 0, [ChunkChoice(0, role="assistant", content="Hi")]),
        ChatChunk("id", "m", 0, [ChunkChoice(0, tool_calls=[ToolCallDelta(0, "x", "f", '{"a"')])]),
        ChatChunk("id", "m", 0, [ChunkChoice(0, tool_calls=[ToolCallDelta(0, arguments=":1}")])]),
        ChatChunk("id", "m", 0, [ChunkChoice(0, finish_reason="tool_calls")]),
        ChatChunk("id", "m", 0, [], usage=Usage(2, 3)),
    ]
    writer = StreamWriter()
    events = [e for chunk in chunks for e in writer.feed(chunk)] + [writer.finish()]
    assert len(events) == 2
    assert events[-1]["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "f", "args": {"a": 1}}}
    ]
    again, done = read(events)
    assert done and again[0].choices[0].content == "Hi"
    call = ToolCallDelta(0, f"call_{answer_key('id')}_0_f", "f", '{"a":1}')
    assert again[1].choices[0].tool_calls == [call]
    assert again[1].choices[0].finish_reason == "tool_calls"
    assert again[-1].usage == Usage(2, 3)


def test_embedding_bodies_and_answers() -> None:
    request = EmbeddingRequest(
        model="e", input=["a b", "c"], dimensions=4, encoding_format="base64"
    )
    assert batch_embed_to_wire(request, "emb")["requests"][1] == {
        "model": "models/emb",
        "content": {"parts": [{"text": "c"}]},
        "outputDimensionality": 4,
    }
    assert predict_to_wire(request, "emb") == {
        "instances": [{"content": "a b"}, {"content": "c"}],
        "parameters": {"outputDimensionality": 4},
    }
    raw = {"embeddings": [{"values": [0.5, -1.0]}, {"values": [0.25, 0.0]}]}
    answer = embedding_response_from_wire(raw, request, "emb")
    assert isinstance(answer.data[0], str)
    assert struct.unpack("<2f", base64.b64decode(answer.data[0])) == (0.5, -1.0)
    predictions = {
        "predictions": [
            {"embeddings": {"values": [1.0], "statistics": {"token_count": 2}}},
            {"embeddings": {"values": [2.0], "statistics": {"token_count": 1}}},
        ]
    }
    request.encoding_format = None
    answer = embedding_response_from_wire(predictions, request, "emb")
    assert answer.data == [[1.0], [2.0]] and answer.usage.input_tokens == 3
    # Token ids (cl100k_base, as OpenAIEmbeddings sends them) go as the text they encode.
    hello = [15339, 1917]  # "hello world"
    sent = batch_embed_to_wire(EmbeddingRequest(model="e", input=[hello]), "emb")
    assert sent["requests"][0]["content"] == {"parts": [{"text": "hello world"}]}
    assert predict_to_wire(EmbeddingRequest(model="e", input=[hello]), "emb")["instances"] == [
        {"content": "hello world"}
    ]
    with pytest.raises(InvalidRequest, match="token id") as refused:
        batch_embed_to_wire(EmbeddingRequest(model="e", input=[hello, [10**7]]), "emb")
    assert refused.value.param == "input[1]"
    with pytest.raises(InvalidRequest, match="input_type"):
        batch_embed_to_wire(
            EmbeddingRequest(model="e", input=["a"], extra={"input_type": "q"}), "e"
        )
    with pytest.raises(UpstreamProtocolError):
        embedding_response_from_wire({"embeddings": [{"values": [1.0]}]}, request, "emb")


class FakeUpstream:
    """Stands in for ``UpstreamClient``: records the call, answers with canned data."""

    def __init__(self, answer: Any = None, events: list[dict[str, Any]] | None = None) -> None:
        self.answer = answer
        self.events = events or []
        self.url = ""
        self.headers: dict[str, str] = {}
        self.body: Any = None

    async def post_json(self, url: str, body: Any, headers: dict[str, str], *args: Any) -> Any:
        self.url, self.body, self.headers = url, body, headers
        return self.answer

    async def post_stream(
        self, url: str, body: Any, headers: dict[str, str], *args: Any
    ) -> AsyncIterator[SSEvent]:
        self.url, self.body, self.headers = url, body, headers
        for item in self.events:
            yield SSEvent(None, orjson.dumps(item))


def deployment(api_base: str) -> Deployment:
    return Deployment(
        id="d",
        provider="gemini",
        model="gemini-x",
        api_base=api_base,
        timeouts=UpstreamTimeouts(1, 1, 1),
        api_key=SecretRef("env:KEY"),
    )


def provider(upstream: FakeUpstream, vertex: bool = False) -> GeminiProvider:
    resources = ProviderResources(client=upstream, vault=Vault({"KEY": "sk-g"}))  # type: ignore[arg-type]
    return GeminiProvider(resources, VERTEX_AI if vertex else GEMINI_API)


HI = ChatRequest(model="g", messages=[Message(role="user", content="hi")])


async def test_provider_addresses_the_gemini_api_and_vertex_ai() -> None:
    upstream = FakeUpstream(gemini_answer())
    answer = await provider(upstream).chat(HI, deployment("https://g.example"))
    assert isinstance(answer, ChatResponse) and answer.choices[0].message.text() == "Here it is"
    assert upstream.url == "https://g.example/v1beta/models/gemini-x:generateContent"
    assert upstream.headers["x-goog-api-key"] == "sk-g"
    base = "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1"
    await provider(upstream, vertex=True).chat(HI, deployment(base))
    assert upstream.url == base + "/publishers/google/models/gemini-x:generateContent"
    assert upstream.headers["Authorization"] == "Bearer sk-g"
    assert "x-goog-api-key" not in upstream.headers


async def test_provider_counts_tokens_in_each_flavors_body() -> None:
    upstream = FakeUpstream({"totalTokens": 11})
    assert await provider(upstream).count_tokens(HI, deployment("https://g")) == 11
    assert upstream.body == {
        "generateContentRequest": {
            "model": "models/gemini-x",
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        }
    }
    assert await provider(upstream, vertex=True).count_tokens(HI, deployment("https://v")) == 11
    assert upstream.body == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    with pytest.raises(UpstreamProtocolError):
        await provider(FakeUpstream({})).count_tokens(HI, deployment("https://g"))


async def test_provider_stream_ends_with_usage_or_fails_when_cut() -> None:
    usage = {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2}
    events = [event([{"text": "Hi"}]), event([{"text": ""}], "STOP", usageMetadata=usage)]
    upstream = FakeUpstream(events=events)
    chunks = [c async for c in provider(upstream).stream(HI, deployment("https://g"))]
    assert upstream.url.endswith("/v1beta/models/gemini-x:streamGenerateContent?alt=sse")
    assert "stream" not in upstream.body
    assert chunks[-1].usage == Usage(1, 1) and chunks[-2].choices[0].finish_reason == "stop"
    cut = FakeUpstream(events=events[:1])
    with pytest.raises(UpstreamProtocolError, match="finishReason"):
        _ = [c async for c in provider(cut).stream(HI, deployment("https://g"))]


async def test_provider_embeds_through_each_flavor() -> None:
    request = EmbeddingRequest(model="e", input=["a"])
    upstream = FakeUpstream({"embeddings": [{"values": [1.0]}]})
    answer = await provider(upstream).embed(request, deployment("https://g"))
    assert answer.data == [[1.0]] and answer.model == "gemini-x"
    assert upstream.url == "https://g/v1beta/models/gemini-x:batchEmbedContents"
    upstream.answer = {"predictions": [{"embeddings": {"values": [1.0]}}]}
    await provider(upstream, vertex=True).embed(request, deployment("https://v"))
    assert upstream.url == "https://v/publishers/google/models/gemini-x:predict"


def test_canonical_answers_render_for_gemini_clients() -> None:
    response = ChatResponse(
        id="x",
        model="m",
        created=0,
        choices=[
            Choice(0, Message(role="assistant", content="a"), "length"),
            Choice(1, Message(role="assistant", content="b"), "content_filter"),
        ],
        usage=Usage(1, 2, reasoning_tokens=1),
        wire_format="openai",
        extra={"system_fingerprint": "fp"},
    )
    wire = response_to_wire(response)
    assert [c["finishReason"] for c in wire["candidates"]] == ["MAX_TOKENS", "SAFETY"]
    assert "system_fingerprint" not in wire
    assert wire["usageMetadata"] == {
        "promptTokenCount": 1,
        "candidatesTokenCount": 1,
        "thoughtsTokenCount": 1,
        "totalTokenCount": 3,
    }


def test_a_clients_google_key_is_never_forwarded() -> None:
    forwarder = HeaderForwarder(["x-*"])
    assert forwarder.select({"x-goog-api-key": "client", "x-sim-fault": "none"}) == {
        "x-sim-fault": "none"
    }


def test_max_completion_tokens_crosses_as_max_output_tokens() -> None:
    body = openai_body(max_completion_tokens=5)
    wire = request_to_wire(openai_request.request_from_wire(body))
    assert wire["generationConfig"] == {"maxOutputTokens": 5}


@pytest.mark.parametrize(
    ("api_base", "valid"),
    [
        (
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/p/locations/europe-west4",
            True,
        ),
        ("http://127.0.0.1:9/v1/projects/p/locations/l", True),
        ("embedded-simulator", True),
        ("https://europe-west4-aiplatform.googleapis.com/v1", False),
        (None, False),
    ],
)
def test_a_vertex_deployment_needs_project_and_region_in_its_api_base(
    api_base: str | None, valid: bool
) -> None:
    fields = {"provider": "vertex_ai", "model": "gemini-x", "api_base": api_base}
    if valid:
        DeploymentConfig(**fields)  # type: ignore[arg-type]
    else:
        with pytest.raises(ValidationError, match="vertex_ai"):
            DeploymentConfig(**fields)  # type: ignore[arg-type]


def test_a_data_url_without_base64_is_a_400_naming_the_part() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/svg+xml,<svg/>"}}
    body = openai_body(messages=[{"role": "user", "content": [image]}])
    with pytest.raises(InvalidRequest, match="base64") as caught:
        request_to_wire(openai_request.request_from_wire(body))
    assert caught.value.param == "messages[0].content[0]"


def test_an_answers_call_ids_are_its_own_within_40_characters_and_name_their_function() -> None:
    first, second = answer_key("resp-1"), answer_key("resp-2")
    assert first != second and first.isalpha() and len(first) == 8
    # Each of n candidates makes calls of its own; the first keeps the answer's key.
    assert answer_key("resp-1", 0) == first
    assert len({first, answer_key("resp-1", 1), answer_key("resp-1", 2)}) == 3
    assert call_id(0, "f", first) != call_id(0, "f", second)
    long = "f" * 40
    assert len(call_id(3, long, first)) <= 40
    names = ToolNames()
    for made, name in ((call_id(1, "get_time", first), "get_time"), ("call_0_f", "f")):
        assert names.name_of(made, "messages[0]") == name  # the turn trimmed: from the id
    with pytest.raises(InvalidRequest):
        names.name_of(call_id(3, long, first), "messages[0]")  # too long to hold the name
