"""An Anthropic client's Claude-only settings on other families, through the real SDK:
``thinking.display: "omitted"`` on OpenAI-compatible reasoning (DeepSeek/vLLM style, Magistral),
``output_config.effort`` where a family has an equivalent, and more stop sequences than a
family takes (a 400 naming ``stop_sequences`` before any call)."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.sdk import sent_upstream, user

OMITTED: Any = {"type": "enabled", "budget_tokens": 2048, "display": "omitted"}


def _answer(claude: anthropic.Anthropic, stream: bool, **request: Any) -> anthropic.types.Message:
    if stream:
        with claude.messages.stream(**request) as events:
            return events.get_final_message()
    return claude.messages.create(**request)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("model", "headers"),
    [
        ("test-chat", {"x-sim-reasoning": "reasoning_content"}),
        ("test-chat", {"x-sim-reasoning": "reasoning"}),
        ("test-magistral", {}),
    ],
)
def test_thinking_display_omitted_hides_compatible_reasoning_text(
    claude: anthropic.Anthropic, model: str, headers: dict[str, str], stream: bool
) -> None:
    """Claude omits the text and keeps the block: an OpenAI-compatible server's reasoning is
    one empty thinking block (unsigned: its signature is empty), then the answer."""
    message = _answer(
        claude,
        stream,
        model=model,
        max_tokens=4096,
        thinking=OMITTED,
        messages=user(f"omitted reasoning {model} {headers} {stream}"),
        extra_headers=headers,
    )
    assert [block.type for block in message.content] == ["thinking", "text"]
    thought, answer = message.content
    assert thought.type == "thinking" and answer.type == "text"
    assert thought.thinking == "" and thought.signature == ""
    assert answer.text.startswith("Simulated reply to: omitted reasoning")


# output_config.effort


@pytest.mark.parametrize(
    ("effort", "sent"),
    [("low", "low"), ("medium", "medium"), ("high", "high"), ("xhigh", "xhigh"), ("max", "xhigh")],
)
def test_output_effort_reaches_openai_as_reasoning_effort(
    claude: anthropic.Anthropic, simulator_url: str, effort: str, sent: str
) -> None:
    marker = f"effort to openai {effort}"
    message = claude.messages.create(
        model="test-chat",
        max_tokens=256,
        messages=user(marker),
        output_config={"effort": effort},  # type: ignore[typeddict-item]
    )
    assert message.content[0].type == "text"
    body = sent_upstream(simulator_url, marker)
    assert body["reasoning_effort"] == sent
    assert "output_config" not in body


@pytest.mark.parametrize(
    ("model", "effort", "config"),
    [
        ("test-gemini", "low", {"thinkingBudget": 1024}),
        ("test-gemini", "high", {"thinkingBudget": 24576}),
        ("test-gemini", "max", {"thinkingBudget": 24576}),
        ("test-gemini-3", "medium", {"thinkingLevel": "MEDIUM"}),
        ("test-gemini-3", "max", {"thinkingLevel": "HIGH"}),
    ],
)
def test_output_effort_reaches_gemini_as_its_thinking(
    claude: anthropic.Anthropic, simulator_url: str, model: str, effort: str, config: Any
) -> None:
    marker = f"effort to {model} {effort}"
    claude.messages.create(
        model=model,
        max_tokens=256,
        messages=user(marker),
        output_config={"effort": effort},  # type: ignore[typeddict-item]
    )
    body = sent_upstream(simulator_url, marker)
    assert body["generationConfig"]["thinkingConfig"] == config


def test_output_effort_reaches_claude_on_bedrock_as_its_own_field(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    marker = "effort to bedrock claude"
    claude.messages.create(
        model="test-bedrock",
        max_tokens=256,
        messages=user(marker),
        output_config={"effort": "medium"},  # type: ignore[typeddict-item]
    )
    body = sent_upstream(simulator_url, marker)
    assert body["additionalModelRequestFields"]["output_config"] == {"effort": "medium"}


def test_an_unknown_output_effort_is_a_400_naming_it(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model="test-chat",
            max_tokens=256,
            messages=user("effort unknown"),
            output_config={"effort": "extreme"},  # type: ignore[typeddict-item]
        )
    assert "output_config.effort" in caught.value.message


# stop_sequences beyond a family's limit


@pytest.mark.parametrize(("model", "most"), [("test-chat", 4), ("test-gemini", 5)])
def test_more_stop_sequences_than_a_family_takes_is_a_400_naming_stop_sequences(
    claude: anthropic.Anthropic, simulator_url: str, model: str, most: int
) -> None:
    marker = f"too many stops {model}"
    stops = [f"STOP{i}" for i in range(most + 1)]
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model=model, max_tokens=64, messages=user(marker), stop_sequences=stops
        )
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert "'stop_sequences'" in caught.value.message and str(most) in caught.value.message
    with pytest.raises(AssertionError):
        sent_upstream(simulator_url, marker)  # refused before any call
    # As many as it takes go on.
    claude.messages.create(
        model=model, max_tokens=64, messages=user(marker), stop_sequences=stops[:most]
    )
    assert len(sent_upstream(simulator_url, marker)) > 0


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        (
            "/v1/chat/completions",
            {"model": "sim-chat", "messages": user("hi"), "stop": list("abcde")},
            "array_above_max_length",
        ),
        (
            "/v1beta/models/sim-chat:generateContent",
            {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
             "generationConfig": {"stopSequences": list("abcdef")}},
            "stop_sequences",
        ),
    ],
)  # fmt: skip
def test_the_simulator_refuses_too_many_stop_sequences(
    simulator_url: str, path: str, body: dict[str, Any], words: str
) -> None:
    headers = {"authorization": f"Bearer {UPSTREAM_KEY}", "x-goog-api-key": UPSTREAM_KEY}
    answer = httpx.post(simulator_url + path, json=body, headers=headers)
    assert answer.status_code == 400
    assert words in answer.text
