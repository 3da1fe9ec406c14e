"""Which upstream chunks only open an answer (held by the pipeline) and which say something."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tollway.core.types import ChatChunk
from tollway.wire import anthropic_stream, bedrock_stream
from tollway.wire.openai_response import chunk_from_wire
from tollway.wire.stream_head import opens_only


def _openai(delta: dict[str, Any], **choice: Any) -> ChatChunk:
    raw = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "system_fingerprint": "fp_1",
        "choices": [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None, **choice}
        ],
    }
    return chunk_from_wire(raw)


def _anthropic(*events: dict[str, Any]) -> list[ChatChunk | None]:
    reader = anthropic_stream.StreamReader()
    return [reader.feed(orjson.dumps(event)) for event in events]


MESSAGE_START = {
    "type": "message_start",
    "message": {"id": "msg_1", "model": "claude", "usage": {"input_tokens": 9}},
}
TEXT_START = {
    "type": "content_block_start",
    "index": 0,
    "content_block": {"type": "text", "text": ""},
}
PING = {"type": "ping"}


def test_openais_role_delta_and_azures_prompt_filter_chunk_open_the_answer() -> None:
    assert opens_only(_openai({"role": "assistant", "content": "", "refusal": None}))
    azure = chunk_from_wire(
        {"choices": [], "created": 0, "id": "", "model": "", "object": "",
         "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}
    )  # fmt: skip
    assert opens_only(azure)


@pytest.mark.parametrize(
    ("delta", "choice"),
    [
        ({"content": "Hi"}, {}),
        ({"role": "assistant", "content": "Hi"}, {}),
        ({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": ""}}]}, {}),
        ({}, {"finish_reason": "stop"}),
        ({"refusal": "I cannot"}, {}),
        ({"reasoning_content": "thinking..."}, {}),
    ],
)
def test_content_calls_finishes_refusals_and_reasoning_say_something(
    delta: dict[str, Any], choice: dict[str, Any]
) -> None:
    assert not opens_only(_openai(delta, **choice))


def test_a_usage_chunk_says_something() -> None:
    chunk = chunk_from_wire(
        {"id": "c", "model": "m", "created": 1, "choices": [],
         "usage": {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}}
    )  # fmt: skip
    assert not opens_only(chunk)


def test_anthropics_message_start_and_empty_text_block_open_the_answer() -> None:
    start, block, first_ping = _anthropic(MESSAGE_START, TEXT_START, PING)
    assert start is not None and opens_only(start)
    assert block is not None and opens_only(block)
    # The reader drops it: the client's first content_block_start is followed by its own.
    assert first_ping is None


def test_a_later_ping_is_a_keep_alive_the_client_must_get() -> None:
    *_, keep_alive = _anthropic(MESSAGE_START, PING, PING)
    assert keep_alive is not None and not opens_only(keep_alive)


@pytest.mark.parametrize(
    "block",
    [
        {"type": "thinking", "thinking": "", "signature": ""},
        {"type": "redacted_thinking", "data": "abc"},
        {"type": "text", "text": "Hello"},
    ],
)
def test_other_blocks_and_text_given_at_the_start_say_something(block: dict[str, Any]) -> None:
    start = {"type": "content_block_start", "index": 0, "content_block": block}
    _, chunk = _anthropic(MESSAGE_START, start)
    assert chunk is not None and not opens_only(chunk)


def test_a_thinking_delta_says_something() -> None:
    thinking = {"type": "content_block_start", "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""}}  # fmt: skip
    delta = {"type": "content_block_delta", "index": 0,
             "delta": {"type": "thinking_delta", "thinking": "Let me see"}}  # fmt: skip
    *_, chunk = _anthropic(MESSAGE_START, thinking, delta)
    assert chunk is not None and not opens_only(chunk)


def test_bedrocks_message_start_opens_the_answer() -> None:
    reader = bedrock_stream.StreamReader("claude")
    headers = {":message-type": "event", ":event-type": "messageStart"}
    chunk = reader.feed(headers, orjson.dumps({"role": "assistant"}))
    assert chunk is not None and opens_only(chunk)
    text = {":message-type": "event", ":event-type": "contentBlockDelta"}
    delta = reader.feed(text, orjson.dumps({"contentBlockIndex": 0, "delta": {"text": "Hi"}}))
    assert delta is not None and not opens_only(delta)


def test_bedrocks_reasoning_says_something() -> None:
    reader = bedrock_stream.StreamReader("claude")
    headers = {":message-type": "event", ":event-type": "contentBlockDelta"}
    delta = {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Let me see"}}}
    chunk = reader.feed(headers, orjson.dumps(delta))
    assert chunk is not None and not opens_only(chunk)
