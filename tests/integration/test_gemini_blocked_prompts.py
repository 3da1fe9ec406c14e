"""A prompt Gemini blocks (``promptFeedback.blockReason``, no candidates), through the real
``openai`` and ``anthropic`` SDKs against the session's gateway and the simulator
(``x-sim-content-filter: prompt``): every one of the ``n`` choices an OpenAI client asked for
ends with ``content_filter`` and no content, streamed or not, as the one choice of ``n`` = 1
does; an Anthropic client's answer is a refusal."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.integration.sdk import user

BLOCK: Any = {"x-sim-content-filter": "prompt"}


@pytest.mark.parametrize("model", ["test-gemini", "test-vertex"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_every_choice_of_a_blocked_prompt_is_content_filtered(
    gpt: openai.OpenAI, model: str, n: int
) -> None:
    answer = gpt.chat.completions.create(
        model=model, messages=user("a prompt to block"), n=n, extra_headers=BLOCK
    )
    assert [choice.index for choice in answer.choices] == list(range(n))
    for choice in answer.choices:
        assert choice.finish_reason == "content_filter"
        assert not choice.message.content and not choice.message.tool_calls
    assert answer.usage is not None and answer.usage.prompt_tokens > 0
    assert answer.usage.completion_tokens == 0


@pytest.mark.parametrize("n", [1, 2, 3])
def test_every_choice_of_a_blocked_prompts_stream_is_content_filtered(
    gpt: openai.OpenAI, n: int
) -> None:
    chunks = list(
        gpt.chat.completions.create(
            model="test-gemini",
            messages=user("a prompt to block"),
            n=n,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=BLOCK,
        )
    )
    finishes: dict[int, list[str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            assert not choice.delta.content
            if choice.finish_reason is not None:
                finishes.setdefault(choice.index, []).append(choice.finish_reason)
    assert finishes == {index: ["content_filter"] for index in range(n)}
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0


@pytest.mark.parametrize("stream", [False, True])
def test_an_anthropic_clients_blocked_prompt_is_a_refusal(
    claude: anthropic.Anthropic, stream: bool
) -> None:
    fields: Any = {
        "model": "test-gemini",
        "max_tokens": 50,
        "messages": user("a prompt to block"),
        "extra_headers": BLOCK,
    }
    if stream:
        with claude.messages.stream(**fields) as events:
            message = events.get_final_message()
    else:
        message = claude.messages.create(**fields)
    assert message.stop_reason == "refusal"
