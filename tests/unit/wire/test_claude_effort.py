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


def _own_thinking(call_id: str) -> ChatRequest:
    """An Anthropic client's request with its own ``thinking``, answering a turn of calls
    without thinking."""
    turn = Message(role="assistant", content=None, tool_calls=[ToolCall(call_id, "w", "{}")])
    messages = [
        Message(role="user", content="hi"),
        turn,
        Message(role="tool", content="sun", tool_call_id=call_id),
    ]
    thinking = {"type": "enabled", "budget_tokens": 1024}
    return ChatRequest(
        model="c", messages=messages, thinking=thinking, wire_format="anthropic", max_tokens=2048
    )


@pytest.mark.parametrize("call_id", ["call_abc", "t1"])
def test_a_clients_thinking_is_left_out_answering_calls_another_family_made(call_id: str) -> None:
    assert thinking_for_effort(_own_thinking(call_id)).thinking is None


@pytest.mark.parametrize("call_id", ["toolu_01A", "tooluse_x1"])
def test_a_clients_thinking_stays_on_claudes_own_calls_for_claude_to_judge(call_id: str) -> None:
    # Claude made these calls: a turn of its without its thinking is the client's to mend,
    # as it would be calling Claude directly; the gateway sends the request as it came.
    assert thinking_for_effort(_own_thinking(call_id)).thinking == {
        "type": "enabled",
        "budget_tokens": 1024,
    }
