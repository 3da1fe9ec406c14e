"""Reasoning and refusals across client APIs and provider families, through the real SDKs.

Claude's extended thinking on Bedrock (``test-bedrock``: the simulator signs its reasoning and
checks what comes back), the reasoning text of OpenAI-compatible servers (``test-chat`` with
``x-sim-reasoning``) for Anthropic and Responses clients, and refusals both ways
(``x-sim-refusal``): OpenAI's ``message.refusal`` to Anthropic clients, Anthropic's
``stop_reason: "refusal"`` to OpenAI clients.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.integration.sdk import blocks, sent_upstream, user
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
DEEPSEEK = {"x-sim-reasoning": "reasoning_content"}
REFUSAL = "I can't help with that request."


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


# An OpenAI-compatible server's reasoning, for Anthropic clients.


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_compatible_reasoning_is_a_thinking_block_for_a_client_that_asked(
    claude: anthropic.Anthropic, field: str
) -> None:
    ask: Any = {
        "model": "test-chat",
        "max_tokens": 2048,
        "messages": user("deepseek style reasoning"),
        "extra_headers": {"x-sim-reasoning": field},
    }
    asked = claude.messages.create(thinking=THINKING, **ask)
    assert [block.type for block in asked.content] == ["thinking", "text"]
    thought = asked.content[0]
    assert thought.type == "thinking"
    assert thought.thinking.startswith("Simulated reasoning about: deepseek style reasoning")
    assert thought.signature == ""  # nobody signed it
    with claude.messages.stream(thinking=THINKING, **ask) as stream:
        assert blocks(stream.get_final_message()) == blocks(asked)
    # Not asked, Anthropic shows no thinking: nor does the gateway.
    unasked = claude.messages.create(**ask)
    assert [block.type for block in unasked.content] == ["text"]
    with claude.messages.stream(**ask) as stream:
        assert blocks(stream.get_final_message()) == blocks(unasked)


def test_unsigned_thinking_replayed_to_the_gateway_is_not_sent_upstream(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    ask: Any = {
        "model": "test-chat",
        "max_tokens": 2048,
        "thinking": THINKING,
        "tools": [WEATHER],
        "extra_headers": DEEPSEEK,
    }
    question = user("replayed weather in Bergen?")
    first = claude.messages.create(messages=question, **ask)
    assert [block.type for block in first.content] == ["thinking", "tool_use"]
    call = first.content[1]
    assert call.type == "tool_use"
    follow_up = [
        *question,
        {"role": "assistant", "content": blocks(first)},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Bergen rain"}],
        },
    ]
    second = claude.messages.create(messages=follow_up, **ask)
    assert second.stop_reason == "end_turn"
    sent = sent_upstream(simulator_url, "Bergen rain")["messages"][1]
    assert sent["role"] == "assistant" and "reasoning" not in json.dumps(sent)
    assert sent["tool_calls"][0]["id"] == call.id
    # The same conversation sent to Claude on Bedrock: the unsigned thinking is left out
    # (Claude would refuse it), the rest goes.
    claude.messages.create(model="test-bedrock", max_tokens=2048, messages=follow_up,
                           tools=[WEATHER])  # fmt: skip
    replayed = sent_upstream(simulator_url, "Bergen rain")["messages"][1]["content"]
    assert [next(iter(block)) for block in replayed] == ["toolUse"]


def test_a_long_unshown_reasoning_phase_keeps_the_stream_alive_with_pings(
    gateway_url: str,
) -> None:
    # 12 reasoning tokens 250 ms apart: three seconds in which the client, who did not ask
    # for thinking, would otherwise receive nothing after message_start.
    body = {
        "model": "test-chat",
        "max_tokens": 2048,
        "stream": True,
        "messages": user("think quietly for a while"),
    }
    headers = {
        "x-api-key": CLIENT_KEY,
        "anthropic-version": "2023-06-01",
        "x-sim-output-tokens": "12",
        "x-sim-tpot-ms": "250",
        **DEEPSEEK,
    }
    events: list[tuple[float, str]] = []
    with httpx.stream("POST", gateway_url + "/v1/messages", json=body, headers=headers) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("event: "):
                events.append((time.monotonic(), line[7:]))
    kinds = [kind for _, kind in events]
    first_text = kinds.index("content_block_start")
    assert kinds[0] == "message_start"
    assert "ping" in kinds[1:first_text]  # during the reasoning, before any block
    assert kinds[first_text + 1] == "ping"  # and Anthropic's own, after the first block's start
    assert "thinking" not in json.dumps(kinds)
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(events)]
    assert max(gaps[:first_text]) < 2.9


# An OpenAI-compatible server's reasoning, for Responses clients.


def test_compatible_reasoning_is_a_reasoning_item_for_responses_clients(gpt: openai.OpenAI) -> None:
    ask: Any = {
        "model": "test-chat",
        "input": "responses reasoning please",
        "extra_headers": DEEPSEEK,
    }
    response = gpt.responses.create(**ask)
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and reasoning.summary == []
    assert reasoning.content is not None
    assert reasoning.content[0].text.startswith("Simulated reasoning about: responses reasoning")
    assert message.type == "message"
    assert response.output_text.startswith("Simulated reply to: responses reasoning please")
    with gpt.responses.stream(**ask) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds.count("response.reasoning_text.delta") == 16
    assert kinds.index("response.reasoning_text.done") < kinds.index("response.output_text.delta")
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output[0].model_dump(exclude={"id"}) == reasoning.model_dump(exclude={"id"})
    assert final.output_text == response.output_text
    assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens == 16


# Refusals.


def test_an_openai_refusal_reaches_anthropic_clients_as_a_refusal(
    claude: anthropic.Anthropic,
) -> None:
    ask: Any = {
        "model": "test-chat",
        "max_tokens": 100,
        "messages": user("something declined"),
        "extra_headers": {"x-sim-refusal": REFUSAL},
    }
    message = claude.messages.create(**ask)
    assert message.stop_reason == "refusal"
    assert blocks(message) == [{"type": "text", "text": REFUSAL}]
    with claude.messages.stream(**ask) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == REFUSAL
    assert final.stop_reason == "refusal" and blocks(final) == blocks(message)


def test_an_anthropic_refusal_reaches_openai_clients_as_a_content_filter_stop(
    gpt: openai.OpenAI,
) -> None:
    # Anthropic's refusal is its safety system stopping the answer, which OpenAI calls a
    # content_filter finish: the words so far stay the content (no message.refusal: that is
    # a model declining a structured output, with no content).
    ask: Any = {
        "model": "test-claude",
        "messages": user("something declined"),
        "extra_headers": {"x-sim-refusal": REFUSAL},
    }
    completion = gpt.chat.completions.create(**ask)
    choice = completion.choices[0]
    assert choice.finish_reason == "content_filter"
    assert choice.message.content == REFUSAL and choice.message.refusal is None
    chunks = list(gpt.chat.completions.create(stream=True, **ask))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REFUSAL
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "content_filter"
    response = gpt.responses.create(
        model="test-claude", input="something declined", extra_headers=ask["extra_headers"]
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "content_filter"
    assert response.output_text == REFUSAL


def test_an_openai_refusal_reaches_openai_clients_unchanged(gpt: openai.OpenAI) -> None:
    ask: Any = {
        "model": "test-chat",
        "messages": user("something declined"),
        "extra_headers": {"x-sim-refusal": REFUSAL},
    }
    message = gpt.chat.completions.create(**ask).choices[0].message
    assert message.refusal == REFUSAL and message.content is None
    chunks = list(gpt.chat.completions.create(stream=True, **ask))
    pieces: Any = [getattr(c.choices[0].delta, "refusal", None) for c in chunks if c.choices]
    assert "".join(piece or "" for piece in pieces) == REFUSAL
