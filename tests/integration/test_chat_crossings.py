"""Chat Completions requests served by the other families, through the real ``openai`` SDK
against the session's gateway and the simulator: fields that only steer OpenAI's prompt cache."""

from __future__ import annotations

import uuid
from typing import Any

import openai
import pytest

from tests.integration.sdk import sent_upstream, user

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TIME: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}
OTHER_FAMILIES = ["test-claude", "test-gemini", "test-bedrock"]


def marker(words: str) -> str:
    """Words no other test sends, to find this test's request in the simulator's log."""
    return f"{words} {uuid.uuid4().hex[:10]}"


# --- prompt cache settings ----------------------------------------------------------------


@pytest.mark.parametrize("model", [*OTHER_FAMILIES, "test-mistral"])
def test_openais_prompt_cache_settings_are_left_out_where_they_mean_nothing(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    # They only say how long OpenAI keeps a prompt's cache: the answer is the same without
    # them, as with prompt_cache_key. A 400 for them broke every client that sets them.
    asked = marker("cache settings")
    completion = gpt.chat.completions.create(
        model=model,
        messages=user(asked),
        max_tokens=3,
        prompt_cache_key="tenant-7",
        prompt_cache_retention="24h",
        extra_body={"prompt_cache_options": {"mode": "implicit", "ttl": "30m"}},
    )
    assert completion.choices[0].message.content
    sent = sent_upstream(simulator_url, asked)
    assert not {"prompt_cache_retention", "prompt_cache_options"} & set(sent)


def test_openais_prompt_cache_settings_reach_an_openai_deployment(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    asked = marker("cache settings for openai")
    gpt.chat.completions.create(
        model="test-chat",
        messages=user(asked),
        max_tokens=3,
        prompt_cache_retention="24h",
        extra_body={"prompt_cache_options": {"ttl": "30m"}},
    )
    sent = sent_upstream(simulator_url, asked)
    assert sent["prompt_cache_retention"] == "24h"
    assert sent["prompt_cache_options"] == {"ttl": "30m"}
