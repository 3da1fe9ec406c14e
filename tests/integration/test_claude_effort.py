"""OpenAI clients' ``reasoning_effort`` (Responses: ``reasoning.effort``) to Claude, on
Anthropic's API (``test-claude``) and on Bedrock (``test-bedrock``, whose simulator checks
``thinking`` as Claude does: budget at least 1024 and under the limit, and the turn whose calls
a request answers starting with its thinking)."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.integration.sdk import sent_upstream

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def test_reasoning_effort_is_claudes_thinking_budget(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    completion = gpt.chat.completions.create(
        model="test-claude",
        messages=[{"role": "user", "content": "claude effort medium"}],
        reasoning_effort="medium",
    )
    assert completion.choices[0].message.content
    body = sent_upstream(simulator_url, "claude effort medium")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert body["max_tokens"] == 8192 + 4096  # the budget, and room for the answer
    assert "reasoning_effort" not in body


def test_a_limit_cuts_the_budget_to_fit_under_it(gpt: openai.OpenAI, simulator_url: str) -> None:
    response = gpt.responses.create(
        model="test-bedrock",
        input="bedrock effort high under a limit",
        reasoning={"effort": "high"},
        max_output_tokens=3000,
    )
    assert response.output_text
    body = sent_upstream(simulator_url, "bedrock effort high under a limit")
    thinking = {"type": "enabled", "budget_tokens": 2999}
    assert body["additionalModelRequestFields"] == {"thinking": thinking}
    assert body["inferenceConfig"]["maxTokens"] == 3000
    # Claude thought: a Responses client is shown its reasoning as a reasoning item.
    assert [item.type for item in response.output] == ["reasoning", "message"]


def test_none_is_no_thinking(gpt: openai.OpenAI, simulator_url: str) -> None:
    gpt.chat.completions.create(
        model="test-claude",
        messages=[{"role": "user", "content": "claude effort none"}],
        reasoning_effort="none",
    )
    body = sent_upstream(simulator_url, "claude effort none")
    assert "thinking" not in body and body["max_tokens"] == 4096


def test_a_tool_loop_goes_on_without_the_thinking_the_client_did_not_keep(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    # An OpenAI client cannot give Claude its thinking back; with thinking on, Claude would
    # refuse the turn that answers the calls (the simulator does too), so that one is sent
    # without thinking.
    question: Any = [{"role": "user", "content": "effort weather in Oslo?"}]
    ask: Any = {"model": "test-bedrock", "reasoning_effort": "low", "tools": [WEATHER]}
    first = gpt.chat.completions.create(messages=question, **ask)
    calls = first.choices[0].message.tool_calls
    assert calls and first.choices[0].finish_reason == "tool_calls"
    thinking = sent_upstream(simulator_url, "effort weather in Oslo?")
    assert thinking["additionalModelRequestFields"]["thinking"]["budget_tokens"] == 1024
    marker = "Oslo: sleet, with effort"
    second = gpt.chat.completions.create(
        messages=[
            *question,
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": calls[0].id, "content": marker},
        ],
        **ask,
    )
    assert second.choices[0].finish_reason == "stop"
    assert "additionalModelRequestFields" not in sent_upstream(simulator_url, marker)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"reasoning_effort": "xhigh"}, "cannot be translated"),
        ({"reasoning_effort": "low", "max_tokens": 1000}, "token limit above 1024"),
    ],
)
def test_an_effort_claude_cannot_think_with_is_a_400_naming_it(
    gpt: openai.OpenAI, fields: dict[str, Any], says: str
) -> None:
    with pytest.raises(openai.BadRequestError, match=says) as caught:
        gpt.chat.completions.create(
            model="test-claude", messages=[{"role": "user", "content": "x"}], **fields
        )
    assert caught.value.param == "reasoning_effort"
