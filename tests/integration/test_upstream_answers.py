"""Upstreams that answer 200 with something other than an answer: the client is told what the
upstream said, with the status it means, and the next deployment is tried."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anthropic
import openai
import pytest
from aiohttp import web

from tests.integration.in_process import async_anthropic, async_openai, bad_then_good, serving
from tests.support import running_gateway

# Error objects sent with a 200, as OpenRouter and some OpenAI-compatible servers send them.
ERRORS_WITH_200 = {
    "rate-limited": {"error": {"message": "Rate limit exceeded: free-models-per-min", "code": 429}},
    "provider-failed": {"error": {"message": "Provider returned error", "code": 502}},
    "overloaded": {"error": {"message": "The engine is overloaded", "type": "server_error",
                             "code": "server_is_overloaded"}},
}  # fmt: skip
ANSWER = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "good",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "from the fallback"}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
}  # fmt: skip


async def answer_with_an_error(request: web.Request) -> web.Response:
    """A 200 whose JSON is the error object the first user message names."""
    body = await request.json()
    return web.json_response(ERRORS_WITH_200[body["messages"][0]["content"]])


async def answer(request: web.Request) -> web.Response:
    """A good answer."""
    await request.read()
    return web.json_response(ANSWER)


@pytest.fixture(scope="module")
async def upstream_url() -> AsyncIterator[str]:
    """An upstream answering errors with a 200 under ``/bad``, good answers under ``/good``."""
    app = web.Application()
    app.router.add_post("/bad/v1/chat/completions", answer_with_an_error)
    app.router.add_post("/good/v1/chat/completions", answer)
    async with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def gateway(log_dir: Path, upstream_url: str) -> Iterator[str]:
    """``bad``: the erring upstream alone; ``fallback``: it, then a good one."""
    bad = {"provider": "openai", "model": "bad", "api_base": f"{upstream_url}/bad/v1",
           "api_key": "not-checked", "price": {"input": 1.0, "output": 1.0}}  # fmt: skip
    good = {**bad, "model": "good", "api_base": f"{upstream_url}/good/v1"}
    config = {
        # A 429 rests the deployment: not for longer than a test.
        "routing": {"retry_after_max": "1ms"},
        "upstream": {"timeouts": {"first_byte": "5s", "total": "8s"}},
        "models": bad_then_good(bad, good),
    }
    with running_gateway(log_dir, config) as (url, _process):
        yield url


# The SDKs' async clients: the upstream serves on the tests' own event loop.
@pytest.fixture
async def gpt(gateway: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with async_openai(gateway) as client:
        yield client


@pytest.fixture
async def claude(gateway: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with async_anthropic(gateway) as client:
        yield client


async def ask(gpt: openai.AsyncOpenAI, model: str, mode: str) -> str | None:
    answered = await gpt.chat.completions.create(
        model=model, messages=[{"role": "user", "content": mode}]
    )
    return answered.choices[0].message.content


@pytest.mark.parametrize(
    ("mode", "status"), [("rate-limited", 429), ("provider-failed", 502), ("overloaded", 503)]
)
async def test_an_error_object_answered_with_200_reaches_an_openai_client_in_its_words(
    gpt: openai.AsyncOpenAI, mode: str, status: int
) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        await ask(gpt, "bad", mode)
    assert raised.value.status_code == status
    said = ERRORS_WITH_200[mode]["error"]["message"]
    assert said in json.dumps(raised.value.body)


async def test_an_error_object_answered_with_200_reaches_an_anthropic_client_as_its_kind(
    claude: anthropic.AsyncAnthropic,
) -> None:
    with pytest.raises(anthropic.RateLimitError) as raised:
        await claude.messages.create(
            model="bad", max_tokens=8, messages=[{"role": "user", "content": "rate-limited"}]
        )
    assert "free-models-per-min" in str(raised.value)


@pytest.mark.parametrize("mode", list(ERRORS_WITH_200))
async def test_an_error_object_answered_with_200_fails_over(
    gpt: openai.AsyncOpenAI, mode: str
) -> None:
    assert await ask(gpt, "fallback", mode) == "from the fallback"
