"""Mistral's content chunks (Magistral) rewritten as text and ``reasoning_content``."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.core.errors import UpstreamProtocolError
from tollway.wire.mistral_content import reasoning_in_content


def thinking(*texts: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": [{"type": "text", "text": t} for t in texts]}


def test_a_message_of_chunks_is_text_and_reasoning() -> None:
    answer: dict[str, Any] = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": [
                        thinking("first, ", "then"),
                        {"type": "text", "text": "Paris"},
                        {"type": "text", "text": "."},
                    ],
                }
            }
        ]
    }
    assert reasoning_in_content(answer)
    message = answer["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "Paris.", "reasoning_content": "first, then"}


def test_reasoning_before_tool_calls_leaves_no_content() -> None:
    calls = [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    answer: dict[str, Any] = {
        "choices": [{"message": {"content": [thinking("call f")], "tool_calls": calls}}]
    }
    assert reasoning_in_content(answer)
    assert answer["choices"][0]["message"]["content"] is None


def test_a_stream_delta_of_thinking_has_no_content() -> None:
    chunk: dict[str, Any] = {"choices": [{"index": 0, "delta": {"content": [thinking("hm")]}}]}
    assert reasoning_in_content(chunk)
    assert chunk["choices"][0]["delta"] == {"content": None, "reasoning_content": "hm"}


def test_chunks_without_answer_text_are_left_out() -> None:
    reference = {"type": "reference", "reference_ids": [1]}
    answer: dict[str, Any] = {"choices": [{"message": {"content": [reference, thinking("x")]}}]}
    assert reasoning_in_content(answer)
    assert answer["choices"][0]["message"]["content"] == ""


def test_text_content_is_left_as_it_came() -> None:
    answer: dict[str, Any] = {"choices": [{"message": {"content": "plain"}}]}
    assert not reasoning_in_content(answer)
    assert answer == {"choices": [{"message": {"content": "plain"}}]}


def test_a_text_chunk_without_text_is_a_protocol_error() -> None:
    answer: dict[str, Any] = {"choices": [{"message": {"content": [{"type": "text"}]}}]}
    with pytest.raises(UpstreamProtocolError):
        reasoning_in_content(answer)
