"""Gemini thinking in the codecs: the thinking request, thought parts and signatures as
reasoning (whole and streamed), signatures given back to Gemini only, thoughts billed."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tollway.core.errors import InvalidRequest
from tollway.core.types import ChatRequest, Message, ReasoningPart
from tollway.wire import (
    anthropic_request,
    anthropic_response,
    bedrock_request,
    gemini_request,
    gemini_response,
    openai_request,
)
from tollway.wire.gemini_content import FOREIGN_THOUGHT_SIGNATURE
from tollway.wire.gemini_stream import StreamReader

CALL = {"type": "tool_use", "id": "call_0_weather", "name": "weather", "input": {"city": "Oslo"}}
GEMINI_SIGNED = {"type": "thinking", "thinking": "check it", "signature": "gemini:c2ln"}
CLAUDE_SIGNED = {"type": "thinking", "thinking": "check it", "signature": "Q2xhdWRl"}


def anthropic(turn: list[dict[str, Any]], **fields: Any) -> Any:
    """A parsed Messages request whose assistant turn is ``turn``, answered by a tool result."""
    result = {"type": "tool_result", "tool_use_id": "call_0_weather", "content": "snow"}
    body = {
        "model": "g",
        "max_tokens": 4096,
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": turn},
            {"role": "user", "content": [result]},
        ],
        "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
        **fields,
    }
    return anthropic_request.request_from_wire(body)


def openai(**fields: Any) -> ChatRequest:
    body = {"model": "g", "messages": [{"role": "user", "content": "hi"}], **fields}
    return openai_request.request_from_wire(body)


@pytest.mark.parametrize(
    ("thinking", "config"),
    [
        ({"type": "enabled", "budget_tokens": 2048}, {"thinkingBudget": 2048}),
        ({"type": "adaptive"}, {"thinkingBudget": -1}),
    ],
)
def test_thinking_is_a_thinking_budget_with_thoughts_shown(
    thinking: dict[str, Any], config: dict[str, Any]
) -> None:
    body = gemini_request.request_to_wire(anthropic([CALL], thinking=thinking))
    assert body["generationConfig"]["thinkingConfig"] == {**config, "includeThoughts": True}
    off = gemini_request.request_to_wire(anthropic([CALL], thinking={"type": "disabled"}))
    assert "thinkingConfig" not in off["generationConfig"]


def test_reasoning_effort_is_googles_budget_for_it() -> None:
    request = openai(reasoning_effort="medium")
    body = gemini_request.request_to_wire(request)
    assert body["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 8192}}
    assert "reasoning_effort" not in body and request.extra == {"reasoning_effort": "medium"}
    with pytest.raises(InvalidRequest) as caught:
        gemini_request.request_to_wire(openai(reasoning_effort="xhigh"))
    assert caught.value.param == "reasoning_effort"


def test_a_thought_summary_and_a_signed_call_become_a_signed_thinking_block() -> None:
    raw = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "check it", "thought": True},
                        {
                            "functionCall": {"name": "weather", "args": {}},
                            "thoughtSignature": "c2ln",
                        },
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 4,
            "candidatesTokenCount": 3,
            "thoughtsTokenCount": 9,
        },
    }
    response = gemini_response.response_from_wire(raw)
    message = response.choices[0].message
    assert message.content == [ReasoningPart("check it", signature="gemini:c2ln")]
    assert message.tool_calls is not None and message.tool_calls[0].extra == {}
    # Thoughts are billed as output.
    assert response.usage is not None
    assert (response.usage.output_tokens, response.usage.reasoning_tokens) == (12, 9)
    shown = anthropic_response.response_to_wire(response, thinking=True)
    assert [block["type"] for block in shown["content"]] == ["thinking", "tool_use"]
    assert shown["content"][0]["signature"] == "gemini:c2ln"
    assert shown["usage"]["output_tokens"] == 12
    hidden = anthropic_response.response_to_wire(response)
    assert [block["type"] for block in hidden["content"]] == ["tool_use"]
    # Given back whole to a Gemini client.
    again = gemini_response.response_to_wire(response)
    assert again["candidates"][0]["content"]["parts"] == raw["candidates"][0]["content"]["parts"]


def test_a_gemini_signature_goes_back_to_gemini_on_the_part_it_came_on() -> None:
    turn = [GEMINI_SIGNED, {"type": "text", "text": "Looking."}, CALL]
    parts = gemini_request.request_to_wire(anthropic(turn))["contents"][1]["parts"]
    assert parts == [
        {"text": "Looking.", "thoughtSignature": "c2ln"},
        {
            "functionCall": {"name": "weather", "args": {"city": "Oslo"}},
            "thoughtSignature": FOREIGN_THOUGHT_SIGNATURE,  # its call was not the signed part
        },
    ]
    parts = gemini_request.request_to_wire(anthropic([GEMINI_SIGNED, CALL]))["contents"][1]
    assert parts["parts"][0]["thoughtSignature"] == "c2ln"


def test_claudes_signature_is_not_sent_to_gemini_nor_geminis_to_claude() -> None:
    to_gemini = gemini_request.request_to_wire(anthropic([CLAUDE_SIGNED, CALL]))
    assert to_gemini["contents"][1]["parts"][0]["thoughtSignature"] == FOREIGN_THOUGHT_SIGNATURE
    assert "Q2xhdWRl" not in orjson.dumps(to_gemini).decode()
    request = anthropic([GEMINI_SIGNED, CALL])
    to_claude = anthropic_request.request_to_wire(request, "claude")
    assert [b["type"] for b in to_claude["messages"][1]["content"]] == ["tool_use"]
    to_bedrock = bedrock_request.request_to_wire(request)
    assert [next(iter(b)) for b in to_bedrock["messages"][1]["content"]] == ["toolUse"]


def test_a_stream_reads_thoughts_and_signatures_as_reasoning() -> None:
    reader = StreamReader()
    events: list[Any] = [
        {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": "hm", "thought": True}]}}
            ]
        },
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [{"functionCall": {"name": "f"}, "thoughtSignature": "c2ln"}],
                    },
                    "finishReason": "STOP",
                }
            ]
        },
    ]
    first, second = (reader.feed(orjson.dumps(event)) for event in events)
    assert first is not None and second is not None
    reasoning = first.choices[0].reasoning
    assert reasoning is not None and (reasoning.text, reasoning.signature) == ("hm", None)
    choice = second.choices[0]
    assert choice.reasoning is not None and choice.reasoning.signature == "gemini:c2ln"
    assert choice.tool_calls is not None and choice.tool_calls[0].name == "f"
    assert choice.finish_reason == "tool_calls"


def test_a_plain_answer_stays_plain_text() -> None:
    raw = {"candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]}}]}
    assert gemini_response.response_from_wire(raw).choices[0].message == Message(
        role="assistant", content="hi"
    )
