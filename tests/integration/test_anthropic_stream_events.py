"""An Anthropic client's stream as Anthropic's API sends it, whichever family serves: the input
tokens in ``message_start`` (the gateway's own count until the upstream's, in
``message_delta``), and the first ``ping`` after the first ``content_block_start``.

The real ``anthropic`` SDK (and raw server-sent events, which show the pings the SDK skips)
against a gateway process and the simulator.
"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import orjson
import pytest

from tests.conftest import BEDROCK_MODEL
from tests.integration.sdk import user
from tests.support import CLIENT_KEY
from tollway.core.types import ChatRequest, Message
from tollway.pricing.tokens import TokenCounter

SERVED_BY = {
    "test-claude": ("anthropic", "sim-chat"),
    "test-chat": ("openai", "sim-chat"),
    "test-gemini": ("gemini", "sim-chat"),
    "test-bedrock": ("bedrock", BEDROCK_MODEL),
}


@pytest.fixture(scope="module")
def claude(gateway_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway_url, api_key=CLIENT_KEY, max_retries=0) as c:
        yield c


def raw_events(gateway_url: str, model: str, text: str) -> list[tuple[str, dict[str, object]]]:
    """The stream's events as sent: (``event:`` name, data)."""
    body = {"model": model, "max_tokens": 100, "messages": user(text), "stream": True}
    headers = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
    answer = httpx.post(f"{gateway_url}/v1/messages", json=body, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    events = []
    for block in answer.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], orjson.loads(lines["data"])))
    return events


@pytest.mark.parametrize("model", ["test-chat", "test-gemini", "test-bedrock"])
def test_message_start_states_the_input_tokens_of_another_familys_stream(
    claude: anthropic.Anthropic, model: str
) -> None:
    # Older SDKs and many tools read the input tokens from message_start alone: another
    # family's stream says them only at its end, so the gateway says its own count first.
    question = user("how many tokens is this question?")
    plain = claude.messages.create(model=model, max_tokens=100, messages=question)
    events = list(
        claude.messages.create(model=model, max_tokens=100, messages=question, stream=True)
    )
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and delta.type == "message_delta"
    provider, upstream_model = SERVED_BY[model]
    counted = TokenCounter().chat(
        ChatRequest(model=upstream_model, messages=[Message("user", question[0]["content"])]),
        provider,
        upstream_model,
    )
    if model == "test-gemini":
        # Gemini counts the prompt in every chunk's usageMetadata: its own count, from the start.
        assert start.message.usage.input_tokens == plain.usage.input_tokens
    else:
        assert start.message.usage.input_tokens == counted > 0
    assert start.message.usage.output_tokens == 0
    # The upstream's own count, at the end, as before.
    assert delta.usage.input_tokens == plain.usage.input_tokens


def test_message_start_of_an_anthropic_stream_is_the_upstreams(
    claude: anthropic.Anthropic,
) -> None:
    question = user("count me exactly")
    plain = claude.messages.create(model="test-claude", max_tokens=100, messages=question)
    events = list(
        claude.messages.create(model="test-claude", max_tokens=100, messages=question, stream=True)
    )
    assert events[0].type == "message_start"
    assert events[0].message.usage.input_tokens == plain.usage.input_tokens


@pytest.mark.parametrize("model", SERVED_BY)
def test_the_first_ping_follows_the_first_content_block_start(gateway_url: str, model: str) -> None:
    # Anthropic's order: message_start, content_block_start, ping, content_block_delta, ...
    names = [name for name, _ in raw_events(gateway_url, model, "ping order")]
    assert names[:4] == ["message_start", "content_block_start", "ping", "content_block_delta"]
    assert names.count("ping") == 1
    assert names[-2:] == ["message_delta", "message_stop"]
