"""A client's reasoning effort to Amazon Nova 2 on Bedrock: OpenAI's ``reasoning_effort`` and
Anthropic's ``output_config.effort`` become Nova's own
``additionalModelRequestFields.reasoningConfig`` (``maxReasoningEffort`` low, medium or
high); the unsigned ``reasoningContent`` Nova answers with is read as reasoning. Nova's
first models have no reasoning: asking them is still a 400 naming the field. The simulator
checks ``reasoningConfig`` as Bedrock does (``bedrock_api.check_model_fields``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import UPSTREAM_KEY, gateway_config
from tests.integration.sdk import sent_upstream, user
from tests.integration.test_bedrock_families import deployment
from tests.support import running_gateway

NOVA_2 = "us.amazon.nova-2-lite-v1:0"  # an inference profile's id
NOVA_1 = "amazon.nova-lite-v1:0"


@pytest.fixture(scope="module")
def gateway_url(log_dir: Path, simulator_url: str) -> Iterator[str]:
    config = gateway_config(simulator_url)
    config["models"] += [
        {"name": "nova-2", "deployments": [deployment(simulator_url, NOVA_2)]},
        {"name": "nova-1", "deployments": [deployment(simulator_url, NOVA_1)]},
    ]
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, _):
        yield url


def marker(words: str) -> str:
    """Words no other test sends, to find this test's request in the simulator's log."""
    return f"{words} {uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize(
    ("effort", "level"),
    [("minimal", "low"), ("low", "low"), ("medium", "medium"), ("high", "high"),
     ("xhigh", "high")],
)  # fmt: skip
def test_reasoning_effort_is_novas_reasoning_config(
    gpt: openai.OpenAI, simulator_url: str, effort: Any, level: str
) -> None:
    asked = marker(f"nova effort {effort}")
    answer = gpt.chat.completions.create(
        model="nova-2", messages=user(asked), reasoning_effort=effort
    )
    body = sent_upstream(simulator_url, asked)
    config = {"type": "enabled", "maxReasoningEffort": level}
    assert body["additionalModelRequestFields"] == {"reasoningConfig": config}
    assert "reasoning_effort" not in body
    assert answer.choices[0].message.content


def test_reasoning_effort_none_is_no_reasoning(gpt: openai.OpenAI, simulator_url: str) -> None:
    asked = marker("nova effort none")
    answer = gpt.chat.completions.create(
        model="nova-2", messages=user(asked), reasoning_effort="none"
    )
    body = sent_upstream(simulator_url, asked)
    assert "additionalModelRequestFields" not in body and "reasoning_effort" not in body
    assert answer.choices[0].message.content


def test_streamed_reasoning_reaches_an_openai_client(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    asked = marker("nova effort streamed")
    stream = gpt.chat.completions.create(
        model="nova-2", messages=user(asked), reasoning_effort="low", stream=True
    )
    deltas = [chunk.choices[0].delta for chunk in stream if chunk.choices]
    assert "".join(d.content or "" for d in deltas)  # Nova's unsigned reasoning deltas read
    assert sent_upstream(simulator_url, asked)["additionalModelRequestFields"] == {
        "reasoningConfig": {"type": "enabled", "maxReasoningEffort": "low"}
    }


@pytest.mark.parametrize(
    ("effort", "level"),
    [("low", "low"), ("medium", "medium"), ("high", "high"), ("xhigh", "high"), ("max", "high")],
)
def test_output_effort_is_novas_reasoning_config(
    claude: anthropic.Anthropic, simulator_url: str, effort: str, level: str
) -> None:
    asked = marker(f"nova output effort {effort}")
    answer = claude.messages.create(
        model="nova-2",
        max_tokens=512,
        messages=user(asked),
        output_config={"effort": effort},  # type: ignore[typeddict-item]
    )
    body = sent_upstream(simulator_url, asked)
    config = {"type": "enabled", "maxReasoningEffort": level}
    assert body["additionalModelRequestFields"] == {"reasoningConfig": config}
    assert "output_config" not in body
    # Anthropic shows thinking only to a client that asked for it (``thinking``).
    assert [block.type for block in answer.content] == ["text"]


def test_novas_first_models_are_refused_effort_naming_the_field(
    gpt: openai.OpenAI, claude: anthropic.Anthropic, simulator_url: str
) -> None:
    asked = marker("nova 1 effort")
    with pytest.raises(openai.BadRequestError) as refused:
        gpt.chat.completions.create(model="nova-1", messages=user(asked), reasoning_effort="low")
    assert refused.value.param == "reasoning_effort" and "Amazon Nova" in refused.value.message
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model="nova-1",
            max_tokens=64,
            messages=user(asked),
            output_config={"effort": "low"},  # type: ignore[typeddict-item]
        )
    assert "'output_config.effort'" in caught.value.message
    with pytest.raises(AssertionError):
        sent_upstream(simulator_url, asked)  # refused before any call
