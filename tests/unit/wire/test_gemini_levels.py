"""Which Gemini models think at a ``thinkingLevel`` (Gemini 3 and later) and what each
client's thinking request becomes for them (``wire/gemini_thinking.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.core.errors import InvalidRequest
from tollway.core.types import ChatRequest, Message
from tollway.wire.gemini_thinking import thinking_config, thinks_in_levels


@pytest.mark.parametrize(
    "model",
    [
        "gemini-3-pro-preview",
        "gemini-3-flash-preview",
        "gemini-3.1-pro-preview",
        "models/gemini-3-flash",
        "publishers/google/models/gemini-3-pro",
        "gemini-4-ultra",
        "gemini-10-pro",
        "Gemini-3-Flash",
    ],
)
def test_gemini_3_and_later_think_in_levels(model: str) -> None:
    assert thinks_in_levels(model)


@pytest.mark.parametrize(
    "model",
    ["gemini-2.5-pro", "gemini-2.5-flash-lite", "gemini-flash-latest", "sim-chat", "gemini-30x"],
)
def test_other_models_think_within_a_budget(model: str) -> None:
    assert not thinks_in_levels(model)


def effort(level: str) -> ChatRequest:
    messages = [Message(role="user", content="hi")]
    return ChatRequest(
        model="m", messages=messages, extra={"reasoning_effort": level}, wire_format="openai"
    )


def test_an_effort_is_a_level_on_gemini_3_and_a_budget_before() -> None:
    plain, config = thinking_config(effort("medium"), "gemini-3-flash-preview")
    assert config == {"thinkingLevel": "MEDIUM"} and "reasoning_effort" not in plain.extra
    assert thinking_config(effort("medium"), "gemini-2.5-flash")[1] == {"thinkingBudget": 8192}


def test_adaptive_thinking_is_gemini_3s_default_dynamic_thinking() -> None:
    request = ChatRequest(
        model="m",
        messages=[Message(role="user", content="hi")],
        thinking={"type": "adaptive"},
        wire_format="anthropic",
    )
    expected: dict[str, Any] = {"includeThoughts": True}
    assert thinking_config(request, "gemini-3-pro-preview")[1] == expected
    budget = thinking_config(request, "gemini-2.5-pro")[1]
    assert budget == {"thinkingBudget": -1, "includeThoughts": True}


def test_a_budget_stays_the_clients_number_on_gemini_3() -> None:
    request = ChatRequest(
        model="m",
        messages=[Message(role="user", content="hi")],
        thinking={"type": "enabled", "budget_tokens": 2048},
        wire_format="anthropic",
    )
    config = thinking_config(request, "gemini-3-pro-preview")[1]
    assert config == {"thinkingBudget": 2048, "includeThoughts": True}


def test_an_effort_gemini_3_has_no_level_for_is_a_400_naming_it() -> None:
    with pytest.raises(InvalidRequest) as caught:
        thinking_config(effort("xhigh"), "gemini-3-pro-preview")
    assert caught.value.param == "reasoning_effort"


@pytest.mark.parametrize(
    ("model", "minimal", "none"),
    [("gemini-2.5-pro", 128, 128), ("gemini-pro-latest", 128, 128),
     ("gemini-2.5-flash", 128, 0), ("gemini-flash-latest", 128, 0),
     ("gemini-2.5-flash-lite", 512, 0), ("sim-chat", 512, 0)],
)  # fmt: skip
def test_minimal_is_the_least_budget_the_model_thinks_within(
    model: str, minimal: int, none: int
) -> None:
    assert thinking_config(effort("minimal"), model)[1] == {"thinkingBudget": minimal}
    assert thinking_config(effort("none"), model)[1] == {"thinkingBudget": none}


def test_minimal_is_low_on_a_gemini_3_pro_model() -> None:
    assert thinking_config(effort("minimal"), "gemini-3-pro-preview")[1] == {"thinkingLevel": "LOW"}
    flash = thinking_config(effort("minimal"), "gemini-3-flash-preview")[1]
    assert flash == {"thinkingLevel": "MINIMAL"}
