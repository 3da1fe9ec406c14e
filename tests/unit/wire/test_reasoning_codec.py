"""Reasoning and refusals crossing formats: Claude's thinking to and from Bedrock, the
reasoning text of OpenAI-compatible servers for Anthropic and Responses clients, OpenAI's
refusals for Anthropic clients."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from openai import omit
from openai.lib.streaming.responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tollway.core.errors import UpstreamProtocolError
from tollway.core.types import ChatChunk, ChatResponse
from tollway.providers.eventstream import EventStreamDecoder
from tollway.simulator import eventstream
from tollway.wire import (
    anthropic_request,
    anthropic_response,
    anthropic_stream,
    bedrock_request,
    bedrock_response,
    gemini_request,
    openai_request,
    openai_response,
    responses_request,
    responses_response,
    responses_stream,
)
from tollway.wire.bedrock_stream import StreamReader as BedrockReader
from tollway.wire.gemini_content import FOREIGN_THOUGHT_SIGNATURE

SIGNED = {"type": "thinking", "thinking": "check the weather", "signature": "c2ln"}
REDACTED = {"type": "redacted_thinking", "data": "AQIDBA=="}
UNSIGNED = {"type": "thinking", "thinking": "a compatible server's", "signature": ""}
CALL = {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}
THINKING = {"type": "enabled", "budget_tokens": 1024}
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


def anthropic(turn: list[dict[str, Any]], **fields: Any) -> Any:
    """A parsed Messages request whose assistant turn is ``turn``, answered by a tool result."""
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "snow"}
    body = {
        "model": "claude",
        "max_tokens": 2048,
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": turn},
            {"role": "user", "content": [result]},
        ],
        "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
        **fields,
    }
    return anthropic_request.request_from_wire(body)


# Requests: thinking and a turn's reasoning, to each family.


def test_thinking_and_a_signed_turn_reach_bedrock_as_claude_takes_them() -> None:
    body = bedrock_request.request_to_wire(anthropic([SIGNED, REDACTED, CALL], thinking=THINKING))
    assert body["additionalModelRequestFields"] == {"thinking": THINKING}
    assert body["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "check the weather", "signature": "c2ln"}}},
        {"reasoningContent": {"redactedContent": "AQIDBA=="}},
        {"toolUse": {"toolUseId": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}},
    ]
    # Turned off, thinking crosses as absent: only Claude knows the field.
    off = bedrock_request.request_to_wire(anthropic([CALL], thinking={"type": "disabled"}))
    assert "additionalModelRequestFields" not in off


def test_unsigned_reasoning_is_sent_back_to_no_provider() -> None:
    # Thinking the gateway made of a compatible server's reasoning: no provider can verify
    # it, so it is left out of the turn (the call keeps its place after the text).
    turn = [UNSIGNED, {"type": "text", "text": "Looking."}, CALL]
    request = anthropic(turn, thinking=THINKING)
    to_claude = anthropic_request.request_to_wire(request, "claude")["messages"][1]["content"]
    assert [block["type"] for block in to_claude] == ["text", "tool_use"]
    to_bedrock = bedrock_request.request_to_wire(request)["messages"][1]["content"]
    assert [next(iter(block)) for block in to_bedrock] == ["text", "toolUse"]
    to_openai = openai_request.request_to_wire(request, "deepseek")["messages"][1]
    assert to_openai["content"] == [{"type": "text", "text": "Looking."}]
    assert to_openai["tool_calls"][0]["id"] == "toolu_1"
    # A turn of nothing else (cut off while reasoning) is left out: it says nothing, and
    # Anthropic refuses empty content.
    turns = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [UNSIGNED]},
        {"role": "user", "content": "b"},
    ]
    alone = anthropic_request.request_from_wire({"model": "c", "max_tokens": 9, "messages": turns})
    assert [m["role"] for m in anthropic_request.request_to_wire(alone, "c")["messages"]] == [
        "user", "user"
    ]  # fmt: skip
    to_gpt = openai_request.request_to_wire(alone, "gpt")["messages"]
    assert [m["role"] for m in to_gpt] == ["user", "user"]
    to_converse = bedrock_request.request_to_wire(alone)["messages"]
    assert to_converse == [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}]


def test_signed_reasoning_goes_back_only_to_claude() -> None:
    request = anthropic([SIGNED, CALL], thinking=THINKING)
    sent = openai_request.request_to_wire(request, "gpt")
    assert "thinking" not in orjson.dumps(sent).decode()
    assert sent["messages"][1]["content"] is None and sent["messages"][1]["tool_calls"]
    to_gemini = gemini_request.request_to_wire(request)
    assert [next(iter(part)) for part in to_gemini["contents"][1]["parts"]] == ["functionCall"]
    assert to_gemini["contents"][1]["parts"][0]["thoughtSignature"] == FOREIGN_THOUGHT_SIGNATURE
    without = anthropic([SIGNED, CALL])
    contents = gemini_request.request_to_wire(without)["contents"]
    assert [next(iter(part)) for part in contents[1]["parts"]] == ["functionCall"]


# Answers: Bedrock's reasoning for Anthropic clients.


def converse(content: list[dict[str, Any]], stop: str = "end_turn") -> ChatResponse:
    raw = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": {"inputTokens": 2, "outputTokens": 3, "totalTokens": 5},
    }
    return bedrock_response.response_from_wire(raw, "anthropic.claude")


def test_bedrock_reasoning_is_thinking_for_a_client_that_asked() -> None:
    answer = converse(
        [
            {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "c2ln"}}},
            {"reasoningContent": {"redactedContent": "AQIDBA=="}},
            {"toolUse": {"toolUseId": "t", "name": "f", "input": {}}},
            {"text": "hi"},
        ],
        "tool_use",
    )
    asked = anthropic_response.response_to_wire(answer, thinking=True)
    assert asked["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": "c2ln"},
        {"type": "redacted_thinking", "data": "AQIDBA=="},
        {"type": "tool_use", "id": "t", "name": "f", "input": {}},
        {"type": "text", "text": "hi"},
    ]
    unasked = anthropic_response.response_to_wire(answer)
    assert [block["type"] for block in unasked["content"]] == ["tool_use", "text"]


def bedrock_stream(frames: list[bytes]) -> list[ChatChunk]:
    reader = BedrockReader("m")
    chunks = []
    for message in EventStreamDecoder().feed(b"".join(frames)):
        chunk = reader.feed(message.headers, message.payload)
        if chunk is not None:
            chunks.append(chunk)
    return chunks


def delta(index: int, reasoning: dict[str, Any]) -> bytes:
    body = {"contentBlockIndex": index, "delta": {"reasoningContent": reasoning}}
    return eventstream.event("contentBlockDelta", body)


def stop(index: int) -> bytes:
    return eventstream.event("contentBlockStop", {"contentBlockIndex": index})


CONVERSE_REASONING = [
    eventstream.event("messageStart", {"role": "assistant"}),
    delta(0, {"text": "Let me "}),
    delta(0, {"text": "think."}),
    delta(0, {"signature": "c2ln"}),
    delta(0, {"signature": "bmVk"}),  # a signature in pieces is whole at the block's end
    stop(0),
    delta(1, {"redactedContent": base64.b64encode(b"\x01\x02").decode()}),
    delta(1, {"redactedContent": base64.b64encode(b"\x03\x04").decode()}),
    stop(1),
    eventstream.event("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"text": "Hi."}}),
    stop(2),
    eventstream.event("messageStop", {"stopReason": "end_turn"}),
    eventstream.event("metadata", {"usage": {"inputTokens": 1, "outputTokens": 9}}),
]


def test_converse_stream_reasoning_becomes_reasoning_chunks() -> None:
    reasoning = [c.choices[0].reasoning for c in bedrock_stream(CONVERSE_REASONING) if c.choices]
    pieces = [(r.text, r.signature, r.redacted) for r in reasoning if r is not None]
    assert pieces == [
        ("Let me ", None, None),
        ("think.", None, None),
        ("", "c2lnbmVk", None),
        ("", None, "AQIDBA=="),  # the pieces' bytes joined, in base64 again
    ]
    bad = [delta(0, {"redactedContent": "AQ"}), delta(0, {"redactedContent": "!!"}), stop(0)]
    with pytest.raises(UpstreamProtocolError, match="not base64"):
        bedrock_stream([CONVERSE_REASONING[0], *bad])


def anthropic_events(chunks: list[ChatChunk], thinking: bool) -> list[tuple[str, Any]]:
    writer = anthropic_stream.StreamWriter(thinking)
    data = b"".join(writer.feed(c) for c in chunks) + writer.finish()
    out = []
    for block in data.decode().strip().split("\n\n"):
        name, payload = block.split("\n")
        out.append((name[7:], orjson.loads(payload[6:])))
    return out


def test_streamed_bedrock_reasoning_is_thinking_blocks_for_a_client_that_asked() -> None:
    events = anthropic_events(bedrock_stream(CONVERSE_REASONING), thinking=True)
    blocks = [(e["index"], e["content_block"]) for n, e in events if n == "content_block_start"]
    assert blocks == [
        (0, {"type": "thinking", "thinking": "", "signature": ""}),
        (1, {"type": "redacted_thinking", "data": "AQIDBA=="}),
        (2, {"type": "text", "text": ""}),
    ]
    deltas = [(e["index"], e["delta"]) for n, e in events if n == "content_block_delta"]
    assert deltas == [
        (0, {"type": "thinking_delta", "thinking": "Let me "}),
        (0, {"type": "thinking_delta", "thinking": "think."}),
        (0, {"type": "signature_delta", "signature": "c2lnbmVk"}),
        (2, {"type": "text_delta", "text": "Hi."}),
    ]
    assert [n for n, _ in events].count("content_block_stop") == 3
    unasked = anthropic_events(bedrock_stream(CONVERSE_REASONING), thinking=False)
    assert [e["content_block"]["type"] for n, e in unasked if n == "content_block_start"] == [
        "text"
    ]


# An OpenAI-compatible server's reasoning and OpenAI's refusals, for Anthropic clients.


def openai_chunk(delta: dict[str, Any], finish: str | None = None) -> ChatChunk:
    return openai_response.chunk_from_wire(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "deepseek-reasoner",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
    )


def openai_answer(message: dict[str, Any], finish: str = "stop") -> ChatResponse:
    return openai_response.response_from_wire(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "deepseek-reasoner",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12},
        }
    )


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_compatible_reasoning_is_unsigned_thinking_for_a_client_that_asked(field: str) -> None:
    message = {"role": "assistant", "content": "Four.", field: "2 + 2 is 4."}
    asked = anthropic_response.response_to_wire(openai_answer(message), thinking=True)
    assert asked["content"] == [
        {"type": "thinking", "thinking": "2 + 2 is 4.", "signature": ""},
        {"type": "text", "text": "Four."},
    ]
    unasked = anthropic_response.response_to_wire(openai_answer(message))
    assert unasked["content"] == [{"type": "text", "text": "Four."}]
    chunks = [
        openai_chunk({"role": "assistant", "content": None, field: ""}),
        openai_chunk({"content": None, field: "2 + 2 "}),
        openai_chunk({"content": None, field: "is 4."}),
        openai_chunk({"content": "Four.", field: None}),
        openai_chunk({}, "stop"),
    ]
    events = anthropic_events(chunks, thinking=True)
    assert [(n, e.get("delta")) for n, e in events if n == "content_block_delta"] == [
        ("content_block_delta", {"type": "thinking_delta", "thinking": "2 + 2 "}),
        ("content_block_delta", {"type": "thinking_delta", "thinking": "is 4."}),
        ("content_block_delta", {"type": "text_delta", "text": "Four."}),
    ]
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    quiet = anthropic_events(chunks, thinking=False)
    assert [n for n, _ in quiet] == [
        "message_start", "content_block_start", "ping", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip


def test_an_openai_refusal_is_text_ending_in_refusal_for_anthropic_clients() -> None:
    refused = openai_answer({"role": "assistant", "content": None, "refusal": "I can't."})
    body = anthropic_response.response_to_wire(refused)
    assert body["content"] == [{"type": "text", "text": "I can't."}]
    assert body["stop_reason"] == "refusal"
    chunks = [
        openai_chunk({"role": "assistant", "content": None, "refusal": ""}),
        openai_chunk({"refusal": "I "}),
        openai_chunk({"refusal": "can't."}),
        openai_chunk({}, "stop"),
    ]
    events = anthropic_events(chunks, thinking=False)
    text = [e["delta"]["text"] for n, e in events if n == "content_block_delta"]
    assert text == ["I ", "can't."]
    assert events[-2][1]["delta"]["stop_reason"] == "refusal"
    # An answer that was not refused stops as it said.
    plain = anthropic_events([openai_chunk({"content": "ok"}), openai_chunk({}, "stop")], False)
    assert plain[-2][1]["delta"]["stop_reason"] == "end_turn"


# An OpenAI-compatible server's reasoning, for Responses clients.


def test_compatible_reasoning_is_a_reasoning_item_before_the_answer() -> None:
    echo = responses_request.request_from_wire({"model": "m", "input": "hi"}).echo
    message = {"role": "assistant", "content": "Four.", "reasoning_content": "2 + 2 is 4."}
    wire = responses_response.response_to_wire(openai_answer(message), echo)
    response = Response.model_validate(wire)
    reasoning = response.output[0]
    assert reasoning.type == "reasoning" and reasoning.summary == []
    assert reasoning.model_dump(exclude={"id"}, exclude_none=True) == {
        "type": "reasoning",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": "2 + 2 is 4."}],
        "status": "completed",
    }
    assert response.output_text == "Four."


def test_streamed_compatible_reasoning_is_a_reasoning_item_with_its_events() -> None:
    echo = responses_request.request_from_wire({"model": "m", "input": "hi"}).echo
    writer = responses_stream.StreamWriter(echo)
    chunks = [
        openai_chunk({"role": "assistant", "content": None, "reasoning_content": ""}),
        openai_chunk({"content": None, "reasoning_content": "2 + 2 "}),
        openai_chunk({"content": None, "reasoning_content": "is 4."}),
        openai_chunk({"content": "Four."}),
        openai_chunk({}, "stop"),
    ]
    data = b"".join(writer.feed(c) for c in chunks) + writer.finish()
    events = [orjson.loads(f.split("\n")[1][6:]) for f in data.decode().split("\n\n")[:-1]]
    kinds = [e["type"] for e in events]
    assert kinds[2:11] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert events[6]["text"] == "2 + 2 is 4."
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=[], text_format=omit)
    for event in events:
        state.handle_event(EVENTS.validate_python(event))
    final = Response.model_validate(events[-1]["response"])
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output_text == "Four."
    # Reasoning, then nothing: the answer is still one (empty) message after it.
    writer = responses_stream.StreamWriter(echo)
    data = writer.feed(chunks[1]) + writer.finish()
    done = orjson.loads(data.decode().split("\n\n")[-2].split("\n")[1][6:])
    assert [item["type"] for item in done["response"]["output"]] == ["reasoning", "message"]
