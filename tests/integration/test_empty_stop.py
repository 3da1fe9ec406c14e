"""An OpenAI client's empty stop sequence (``stop: ""``, ``[""]``): OpenAI takes it and stops
nowhere for it (an empty sequence matches no text the model writes), so it is not sent to a
provider that refuses it (Bedrock's Converse: each sequence at least one character; Claude:
"each stop sequence must be non-empty") or may read it otherwise (Gemini); the other sequences
beside it go on."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.integration.sdk import sent_upstream

# Where each deployment's body says its stop sequences.
STOPS = {
    "test-gemini": lambda body: body["generationConfig"].get("stopSequences"),
    "test-bedrock": lambda body: body.get("inferenceConfig", {}).get("stopSequences"),
    "test-claude": lambda body: body.get("stop_sequences"),
    "test-chat": lambda body: body.get("stop"),
}


@pytest.mark.parametrize("model", list(STOPS))
@pytest.mark.parametrize(("stop", "sent"), [("", None), ([""], None), (["", "END"], ["END"])])
def test_an_empty_stop_sequence_is_not_sent(
    gpt: openai.OpenAI, simulator_url: str, model: str, stop: Any, sent: list[str] | None
) -> None:
    # Was sent as it came: Bedrock's and Claude's 400, and a sequence Gemini may stop at.
    marker = f"empty stop {model} {stop!r}"
    completion = gpt.chat.completions.create(
        model=model, messages=[{"role": "user", "content": marker}], stop=stop, max_tokens=64
    )
    assert completion.choices[0].message.content
    assert STOPS[model](sent_upstream(simulator_url, marker)) == sent
