"""A Responses client's ``reasoning.summary``: parsed and checked, the reasoning item's
``summary`` in answers and streams (``wire/responses_*.py``), and what Gemini and Claude are
asked for it (``wire/gemini_thinking.py``, ``wire/anthropic_request.py``)."""

from __future__ import annotations

from typing import Any

import pytest
from openai import omit
from openai.lib.streaming.responses import ResponseStreamState
from openai.types.responses import Response

from tests.unit.wire.test_responses_codec import EVENTS, parse, run
from tollway.core.errors import InvalidRequest
from tollway.core.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    Message,
    ReasoningPart,
    TextPart,
)
from tollway.wire.anthropic_request import request_to_wire as anthropic_request
from tollway.wire.gemini_thinking import thinking_config
from tollway.wire.openai_response import chunk_from_wire
from tollway.wire.responses_response import response_to_wire


def test_summary_and_its_deprecated_name_ask_for_a_summary() -> None:
    parsed = parse(reasoning={"effort": "low", "summary": "detailed"})
    assert parsed.chat.reasoning_summary == "detailed"
    assert parsed.echo["reasoning"] == {"effort": "low", "summary": "detailed"}
    assert parse(reasoning={"generate_summary": "concise"}).chat.reasoning_summary == "concise"
    assert parse(reasoning={"effort": "low"}).chat.reasoning_summary is None
    # Chat Completions has no such field: it is no extra a Chat Completions upstream is sent.
    assert "summary" not in str(parse(reasoning={"summary": "auto"}).chat.extra)


@pytest.mark.parametrize(("key", "value"), [("summary", "none"), ("generate_summary", 1)])
def test_a_summary_openai_does_not_take_is_a_400_naming_it(key: str, value: Any) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse(reasoning={key: value})
    assert caught.value.param == f"reasoning.{key}" and caught.value.code == "invalid_value"


def thought(*parts: Any) -> ChatResponse:
    message = Message(role="assistant", content=list(parts))
    return ChatResponse("msg_1", "claude", 1700000000, [Choice(0, message, "stop")])


def test_each_block_of_reasoning_is_a_summary_part_and_there_is_no_content() -> None:
    parts = [ReasoningPart("first", "sig"), ReasoningPart("", "sig2"), ReasoningPart("second")]
    answer = thought(*parts, TextPart("Hi."))
    body = response_to_wire(answer, parse(reasoning={"summary": "auto"}).echo)
    reasoning = body["output"][0]
    assert reasoning["summary"] == [
        {"type": "summary_text", "text": "first"},
        {"type": "summary_text", "text": "second"},
    ]
    assert "content" not in reasoning
    assert Response.model_validate(body).output_text == "Hi."
    # Not asked: the reasoning as content, as before.
    unasked = response_to_wire(answer, parse().echo)["output"][0]
    assert unasked["summary"] == [] and [p["text"] for p in unasked["content"]] == [
        "first",
        "second",
    ]


def compatible(delta: dict[str, Any], finish: str | None = None) -> ChatChunk:
    return chunk_from_wire(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "deepseek-reasoner",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def test_a_streamed_summary_has_openais_events_in_order() -> None:
    chunks = [
        compatible({"role": "assistant", "content": ""}),
        compatible({"reasoning_content": "Think"}),
        compatible({"reasoning_content": "ing."}),
        compatible({"content": "Done."}),
        compatible({}, "stop"),
    ]
    events = run(chunks, parse(reasoning={"summary": "auto"}).echo)
    assert [e["type"] for e in events][2:9] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
    ]
    where = {"item_id": events[2]["item"]["id"], "output_index": 0, "summary_index": 0}
    assert events[2]["item"]["summary"] == [] and "content" not in events[2]["item"]
    assert events[3] == {**events[3], **where, "part": {"type": "summary_text", "text": ""}}
    assert [e["delta"] for e in events[4:6]] == ["Think", "ing."]
    assert events[6] == {**events[6], **where, "text": "Thinking."}
    assert events[7] == {
        **events[7],
        **where,
        "part": {"type": "summary_text", "text": "Thinking."},
    }
    assert "status" not in events[7]
    assert events[8]["item"]["summary"] == [{"type": "summary_text", "text": "Thinking."}]
    # The SDK's stream helper assembles it as it assembles the real API's stream.
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=[], text_format=omit)
    for event in events:
        state.handle_event(EVENTS.validate_python(event))
    final = Response.model_validate(events[-1]["response"])
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output_text == "Done."


def request(**fields: Any) -> ChatRequest:
    hi = [Message(role="user", content="hi")]
    return ChatRequest(model="m", messages=hi, wire_format="openai", **fields)


def test_gemini_is_asked_for_its_thought_summaries() -> None:
    effort = {"reasoning_effort": "low"}
    summary = {"reasoning_summary": "auto"}
    _, budget = thinking_config(request(extra=effort, **summary), "gemini-2.5-flash")
    assert budget == {"thinkingBudget": 1024, "includeThoughts": True}
    _, level = thinking_config(request(extra=effort, **summary), "gemini-3-flash-preview")
    assert level == {"thinkingLevel": "LOW", "includeThoughts": True}
    assert thinking_config(request(**summary), "gemini-3-pro")[1] == {"includeThoughts": True}
    # Thinking turned off shows nothing; unasked, nothing is shown.
    off = {"reasoning_effort": "none"}
    assert thinking_config(request(extra=off, **summary), "gemini-2.5-flash")[1] == {
        "thinkingBudget": 0
    }
    assert thinking_config(request(extra=effort), "gemini-2.5-flash")[1] == {"thinkingBudget": 1024}


def test_claude_is_asked_for_summarized_thinking_only_when_it_thinks() -> None:
    asked = request(extra={"reasoning_effort": "low"}, reasoning_summary="auto")
    thinking = anthropic_request(asked, "claude-opus-4-7")["thinking"]
    assert thinking == {"type": "enabled", "budget_tokens": 1024, "display": "summarized"}
    unasked = request(extra={"reasoning_effort": "low"})
    assert "display" not in anthropic_request(unasked, "claude-opus-4-7")["thinking"]
    assert "thinking" not in anthropic_request(request(reasoning_summary="auto"), "claude")
