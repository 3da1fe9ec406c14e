"""Reasoning across client APIs and provider families, through the real SDKs.

Claude's extended thinking on Bedrock (``test-bedrock``: the simulator signs its reasoning and
checks what comes back).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.support import CLIENT_KEY
from tollway.simulator.bedrock_api import REDACTED_THINKING, thinking_signature

THINKING: Any = {"type": "enabled", "budget_tokens": 1024}
WEATHER: Any = {
    "name": "get_weather",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def claude(gateway_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway_url, api_key=CLIENT_KEY, max_retries=0) as c:
        yield c


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def sent_upstream(simulator_url: str, marker: str) -> dict[str, Any]:
    """The body of the last request the simulator received that mentions ``marker``."""
    for request in reversed(httpx.get(simulator_url + "/_sim/requests").json()):
        if marker in json.dumps(request["json"]):
            return dict(request["json"])
    raise AssertionError(f"the simulator received no request mentioning {marker!r}")


def blocks(message: anthropic.types.Message) -> list[dict[str, Any]]:
    return [block.model_dump(exclude_none=True) for block in message.content]


# Claude's thinking on Bedrock, for Anthropic clients.


def test_thinking_reaches_claude_on_bedrock_and_comes_back_signed(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    message = claude.messages.create(
        model="test-bedrock",
        max_tokens=2048,
        thinking=THINKING,
        messages=user("bedrock thinking please"),
    )
    first, *rest = message.content
    assert first.type == "thinking"
    assert first.thinking.startswith("Simulated reasoning about: bedrock thinking please")
    assert first.signature == thinking_signature(first.thinking)
    assert [block.type for block in rest] == ["text"]
    assert message.stop_reason == "end_turn"
    body = sent_upstream(simulator_url, "bedrock thinking please")
    assert body["additionalModelRequestFields"] == {"thinking": THINKING}
    assert body["inferenceConfig"] == {"maxTokens": 2048}


def test_streamed_thinking_assembles_into_the_message_a_plain_request_gets(
    claude: anthropic.Anthropic,
) -> None:
    ask: Any = {
        "model": "test-bedrock",
        "max_tokens": 2048,
        "thinking": THINKING,
        "messages": user("stream a redacted thought"),
    }
    plain = claude.messages.create(**ask)
    with claude.messages.stream(**ask) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert blocks(final) == blocks(plain)
    assert [block["type"] for block in blocks(final)] == [
        "thinking", "redacted_thinking", "text"
    ]  # fmt: skip
    assert blocks(final)[1]["data"] == REDACTED_THINKING
    assert "thinking" in kinds and "signature" in kinds  # the SDK's own events


@pytest.mark.parametrize("stream", [False, True])
def test_thinking_survives_a_tool_round_trip_to_bedrock(
    claude: anthropic.Anthropic, simulator_url: str, stream: bool
) -> None:
    # With thinking on, Claude needs the turn that called the tool back with its reasoning
    # first, signed as it was given: the simulator refuses anything else, as Claude does.
    question = user(f"weather in Oslo, stream={stream}? redacted")
    ask: Any = {
        "model": "test-bedrock",
        "max_tokens": 2048,
        "thinking": THINKING,
        "tools": [WEATHER],
    }
    if stream:
        with claude.messages.stream(messages=question, **ask) as events:
            first = events.get_final_message()
    else:
        first = claude.messages.create(messages=question, **ask)
    assert [block.type for block in first.content] == [
        "thinking", "redacted_thinking", "tool_use"
    ]  # fmt: skip
    call = first.content[-1]
    assert call.type == "tool_use" and first.stop_reason == "tool_use"
    marker = f"Oslo: snow, stream={stream}"
    follow_up = [
        *question,
        {"role": "assistant", "content": blocks(first)},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": marker}],
        },
    ]
    second = claude.messages.create(messages=follow_up, **ask)
    assert second.stop_reason == "end_turn"
    assert "Simulated reply to tool result" in "".join(
        block.text for block in second.content if block.type == "text"
    )
    replayed = sent_upstream(simulator_url, marker)["messages"][1]["content"]
    thought = blocks(first)[0]
    assert replayed[0] == {
        "reasoningContent": {
            "reasoningText": {"text": thought["thinking"], "signature": thought["signature"]}
        }
    }
    assert replayed[1] == {"reasoningContent": {"redactedContent": REDACTED_THINKING}}
    assert next(iter(replayed[2])) == "toolUse"


def test_tampered_thinking_is_claudes_400(claude: anthropic.Anthropic) -> None:
    turn = [{"type": "thinking", "thinking": "I made this up", "signature": "forged"}]
    messages: Any = [
        *user("first"),
        {"role": "assistant", "content": [*turn, {"type": "text", "text": "ok"}]},
        *user("second"),
    ]
    with pytest.raises(anthropic.BadRequestError, match="Invalid signature"):
        claude.messages.create(
            model="test-bedrock", max_tokens=2048, thinking=THINKING, messages=messages
        )
