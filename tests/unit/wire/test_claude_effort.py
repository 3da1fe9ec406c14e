"""``reasoning_effort`` as Claude's thinking: budgets, limits, and the requests sent without."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.core.errors import InvalidRequest
from tollway.core.types import ChatRequest, Message, ReasoningPart, Tool, ToolCall, ToolChoice
from tollway.wire import anthropic_request, bedrock_request
from tollway.wire.claude_effort import thinking_for_effort

CALL = ToolCall(id="c1", name="weather", arguments="{}")


def request(effort: Any = "low", **fields: Any) -> ChatRequest:
    fields.setdefault("messages", [Message(role="user", content="hi")])
    return ChatRequest(
        model="c", extra={"reasoning_effort": effort}, wire_format="openai", **fields
    )


def answering(first: Any) -> list[Message]:
    turn = Message(role="assistant", content=first, tool_calls=[CALL])
    return [
        Message(role="user", content="hi"),
        turn,
        Message(role="tool", content="sun", tool_call_id="c1"),
    ]


@pytest.mark.parametrize(
    ("effort", "limit", "budget", "max_tokens"),
    [
        ("minimal", None, 1024, 1024 + 4096),
        ("medium", None, 8192, 8192 + 4096),
        ("high", 30000, 24576, 30000),
        ("high", 2000, 1999, 2000),
    ],
)
def test_an_effort_is_a_budget_under_the_limit(
    effort: str, limit: int | None, budget: int, max_tokens: int
) -> None:
    asked = request(effort, max_tokens=limit)
    body = anthropic_request.request_to_wire(asked, "claude")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == max_tokens and "reasoning_effort" not in body
    assert asked.extra == {"reasoning_effort": effort} and asked.thinking is None
    converse = bedrock_request.request_to_wire(asked)
    assert converse["additionalModelRequestFields"]["thinking"]["budget_tokens"] == budget
    assert converse["inferenceConfig"]["maxTokens"] == max_tokens


def test_none_and_null_ask_for_no_thinking() -> None:
    for effort in ("none", None):
        thought = thinking_for_effort(request(effort))
        assert thought.thinking is None and thought.extra == {}


def test_what_claude_cannot_think_with_is_a_400_naming_the_field() -> None:
    for asked in (request("xhigh"), request("low", max_tokens=1024)):
        with pytest.raises(InvalidRequest) as caught:
            thinking_for_effort(asked)
        assert caught.value.param == "reasoning_effort"


def test_a_forced_call_is_sent_without_thinking() -> None:
    tools = [Tool(name="weather")]
    forced = request(tools=tools, tool_choice=ToolChoice(mode="required"))
    assert thinking_for_effort(forced).thinking is None
    free = request(tools=tools, tool_choice=ToolChoice(mode="auto"))
    assert thinking_for_effort(free).thinking is not None


def test_answering_calls_thinks_only_when_the_turn_kept_claudes_thinking() -> None:
    assert thinking_for_effort(request(messages=answering(None))).thinking is None
    unsigned = [ReasoningPart("no one signed this")]
    assert thinking_for_effort(request(messages=answering(unsigned))).thinking is None
    gemini = [ReasoningPart("", signature="gemini:c2ln")]
    assert thinking_for_effort(request(messages=answering(gemini))).thinking is None
    signed = [ReasoningPart("mine", signature="c2ln")]
    assert thinking_for_effort(request(messages=answering(signed))).thinking is not None
