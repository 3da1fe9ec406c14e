"""Gemini answers the simulator does not give, from an upstream that answers as Google does
in rarer cases (a prompt's safety ratings on the event that closes a stream, finish reasons
that say the answer is unusable), through a gateway process and the real SDKs."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web

from tests.conftest import UPSTREAM_KEY
from tests.integration.sdk import user
from tests.support import free_port, running_gateway

USAGE = {"promptTokenCount": 5, "candidatesTokenCount": 2, "totalTokenCount": 7}


def _event(parts: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": USAGE, "modelVersion": "gemini-2.5-flash"}


RATED = {"safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]}
ANSWERS: dict[str, list[dict[str, Any]]] = {
    # A finished answer, then an event with only the usage and the prompt's safety ratings
    # (feedback without a blockReason: the prompt was not blocked).
    "rated prompt": [
        _event([{"text": "Hello"}]),
        _event([{"text": " there"}], "STOP"),
        {"promptFeedback": RATED, "usageMetadata": USAGE, "modelVersion": "gemini-2.5-flash"},
    ],
    "missing signature": [
        {
            "candidates": [{"finishReason": "MISSING_THOUGHT_SIGNATURE", "index": 0}],
            "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5},
        }
    ],
    "malformed response": [
        {
            "candidates": [{"finishReason": "MALFORMED_RESPONSE", "index": 0}],
            "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5},
        }
    ],
}


async def _answer(request: web.Request) -> web.StreamResponse:
    """The scripted answer whose name the request's text holds: the events as one SSE stream,
    or (``generateContent``) the last one alone."""
    body = await request.json()
    said = json.dumps(body["contents"])
    events = next(events for name, events in ANSWERS.items() if name in said)
    if "streamGenerateContent" not in request.path:
        return web.json_response(events[-1])
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for event in events:
        await response.write(b"data: " + json.dumps(event).encode() + b"\r\n\r\n")
    await response.write_eof()
    return response


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[str]:
    """The scripted upstream, on an event loop of its own thread (the tests are synchronous)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    app = web.Application()
    app.router.add_post("/v1beta/models/{call}", _answer)
    runner = web.AppRunner(app)
    port = free_port()

    async def serve() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    asyncio.run_coroutine_threadsafe(serve(), loop).result(10)
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture(scope="module")
def gateway_url(log_dir: Path, upstream_url: str) -> Iterator[str]:
    deployment = {
        "provider": "gemini",
        "model": "gemini-2.5-flash",
        "api_base": upstream_url,
        "api_key": "env:KEY",
    }
    config = {"models": [{"name": "scripted", "deployments": [deployment]}]}
    with running_gateway(log_dir, config, {"KEY": UPSTREAM_KEY}) as (url, _):
        yield url


def test_a_prompts_safety_ratings_after_the_answer_are_no_block(
    gpt: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    # Feedback without a blockReason was read as a blocked prompt: the OpenAI stream got a
    # second finish, content_filter, after the answer's stop, and the Anthropic stream ended
    # with stop_reason "refusal" for an answer the model finished.
    chunks = list(
        gpt.chat.completions.create(
            model="scripted",
            messages=user("rated prompt"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert [f for f in finishes if f is not None] == ["stop"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2
    with claude.messages.stream(
        model="scripted", max_tokens=50, messages=user("rated prompt")
    ) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "end_turn"
    assert [block.type for block in message.content] == ["text"]


@pytest.mark.parametrize("reason", ["MISSING_THOUGHT_SIGNATURE", "MALFORMED_RESPONSE"])
@pytest.mark.parametrize("stream", [False, True])
def test_finish_reasons_that_say_the_answer_is_unusable_are_failures(
    gpt: openai.OpenAI, claude: anthropic.Anthropic, reason: str, stream: bool
) -> None:
    # Both were read as "stop": an empty answer that said it was finished, a 200.
    prompt = {"MISSING_THOUGHT_SIGNATURE": "missing signature"}.get(reason, "malformed response")
    with pytest.raises(openai.APIStatusError) as caught:
        answer = gpt.chat.completions.create(model="scripted", messages=user(prompt), stream=stream)
        if stream:
            list(answer)  # the failure ends the stream
    assert caught.value.status_code == 502
    assert caught.value.code == "invalid_model_output"
    assert reason in caught.value.message
    with pytest.raises(anthropic.APIStatusError) as refused:
        claude.messages.create(model="scripted", max_tokens=50, messages=user(prompt))
    assert refused.value.status_code == 502
    assert reason in refused.value.message
