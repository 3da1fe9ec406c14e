"""Claude's extended thinking over HTTP end to end: an Anthropic deployment (``test-claude``)
on the simulator, which thinks when ``thinking`` asks, signs its thinking, streams it as Claude
does, and refuses a thinking block it did not sign (``simulator/anthropic_api.py``)."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.support import CLIENT_KEY
from tollway.simulator.bedrock_api import thinking_signature

THINKING: Any = {"type": "enabled", "budget_tokens": 2048}


def test_a_streamed_thinking_block_comes_in_claudes_event_order(gateway_url: str) -> None:
    body = {
        "model": "test-claude",
        "max_tokens": 4096,
        "stream": True,
        "thinking": THINKING,
        "messages": [{"role": "user", "content": "claude streams its thinking"}],
    }
    headers = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
    answer = httpx.post(gateway_url + "/v1/messages", json=body, headers=headers, timeout=30)
    assert answer.status_code == 200
    events = [
        orjson.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: ")
    ]
    kinds = [e["type"] + ":" + e.get("delta", e.get("content_block", {})).get("type", "")
             for e in events if e["type"] != "ping"]  # fmt: skip
    thinking_deltas = kinds.count("content_block_delta:thinking_delta")
    assert thinking_deltas > 1
    assert kinds[: 5 + thinking_deltas] == [
        "message_start:",
        "content_block_start:thinking",
        *["content_block_delta:thinking_delta"] * thinking_deltas,
        "content_block_delta:signature_delta",
        "content_block_stop:",
        "content_block_start:text",
    ]
    text = "".join(e["delta"]["thinking"] for e in events if e.get("delta", {}).get("thinking"))
    signature = next(e["delta"]["signature"] for e in events if "signature" in e.get("delta", {}))
    assert text.startswith("Simulated reasoning about: claude streams its thinking")
    assert signature == thinking_signature(text)


@pytest.mark.parametrize("stream", [False, True])
def test_claudes_thinking_reaches_a_responses_client_as_a_reasoning_item(
    gpt: openai.OpenAI, stream: bool
) -> None:
    question = f"claude reasons for responses, stream={stream}"
    if stream:
        with gpt.responses.stream(
            model="test-claude", input=question, reasoning={"effort": "low"}
        ) as events:
            response = events.get_final_response()
    else:
        response = gpt.responses.create(
            model="test-claude", input=question, reasoning={"effort": "low"}
        )
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and message.type == "message"
    assert reasoning.content is not None
    text = "".join(part.text for part in reasoning.content)
    assert text.startswith(f"Simulated reasoning about: {question}")
    assert response.output_text.startswith(f"Simulated reply to: {question}")


def test_a_thinking_block_claude_did_not_sign_is_claudes_400(claude: anthropic.Anthropic) -> None:
    messages: Any = [
        {"role": "user", "content": "forged thinking"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "I made this up", "signature": "forged"},
                {"type": "text", "text": "Hello."},
            ],
        },
        {"role": "user", "content": "and then?"},
    ]
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model="test-claude", max_tokens=4096, thinking=THINKING, messages=messages
        )
    assert "signature" in caught.value.message


def test_claudes_signed_thinking_goes_back_to_claude(claude: anthropic.Anthropic) -> None:
    first = claude.messages.create(
        model="test-claude",
        max_tokens=4096,
        thinking=THINKING,
        messages=[{"role": "user", "content": "think, then answer"}],
    )
    thought = first.content[0]
    assert thought.type == "thinking" and thought.signature == thinking_signature(thought.thinking)
    second = claude.messages.create(
        model="test-claude",
        max_tokens=4096,
        thinking=THINKING,
        messages=[
            {"role": "user", "content": "think, then answer"},
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {"role": "user", "content": "and once more"},
        ],
    )
    assert [block.type for block in second.content] == ["thinking", "text"]


F_TOOL: Any = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}


@pytest.mark.parametrize("model", ["test-claude", "test-bedrock"])
@pytest.mark.parametrize("stream", [False, True])
def test_claudes_thinking_goes_back_through_a_responses_tool_loop(
    gpt: openai.OpenAI, simulator_url: str, model: str, stream: bool
) -> None:
    # With thinking on, Claude wants the turn of the calls it is sent results of to start
    # with its signed thinking: the reasoning item carries it, as encrypted_content, so the
    # loop goes on thinking (without it, the gateway had to turn thinking off there).
    question = f"look it up for responses, {model}, stream={stream}"
    asked: Any = {"model": model, "reasoning": {"effort": "low"}, "tools": [F_TOOL]}
    if stream:
        with gpt.responses.stream(input=question, **asked) as events:
            first = events.get_final_response()
    else:
        first = gpt.responses.create(input=question, **asked)
    reasoning = first.output[0]
    assert reasoning.type == "reasoning" and reasoning.encrypted_content
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls
    follow_up: list[Any] = [{"role": "user", "content": question}]
    follow_up += [item.model_dump(exclude_none=True) for item in first.output]
    follow_up += [
        {"type": "function_call_output", "call_id": call.call_id, "output": "found: 42"}
        for call in calls
    ]
    second = gpt.responses.create(input=follow_up, **asked)
    assert second.status == "completed" and "found: 42" in second.output_text
    sent = next(
        request["json"]
        for request in reversed(httpx.get(simulator_url + "/_sim/requests").json())
        if "found: 42" in orjson.dumps(request["json"]).decode()
    )
    assert sent.get("thinking") or sent["additionalModelRequestFields"]["thinking"]
    turn = sent["messages"][1]["content"][0]
    assert turn.get("type") == "thinking" or "reasoningContent" in turn
