"""Upstreams of each family that answer with an error where an answer or a stream was asked
for (Anthropic's or Google's error object with a 200, a whole JSON error or an HTML page for a
stream, a stream event without a type, a 429 that says its wait only in OpenAI's
``x-ratelimit-reset-*`` headers, a proxy in front of Bedrock): the client is told the
upstream's words, in its own dialect with the status they mean, and the next deployment is
tried (test_upstream_answers.py has OpenAI's error objects with a 200)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from aiohttp import web

from tests.conftest import BEDROCK_MODEL
from tests.integration.in_process import async_anthropic, async_openai, bad_then_good, serving
from tests.support import CLIENT_KEY, running_gateway

OVERLOADED = {
    "type": "error",
    "error": {"type": "overloaded_error", "message": "Overloaded, says Claude"},
}
EXHAUSTED = {
    "error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded, says Gemini"}
}
LIMITED = {"error": {"message": "Rate limit exceeded: per-minute, says the JSON", "code": 429}}
TYPELESS = {"error": {"message": "Upstream hiccup, says the typeless event", "code": 503}}
PAGE = "<html><head><title>502 Bad Gateway</title></head><body><h1>nginx</h1></body></html>"
# A captive portal's page, quoting the request's key as such pages may quote what they caught.
CAPTIVE = (
    "<!DOCTYPE html><html><head><title>Sign in to Hotel Wi-Fi (not-checked-at-all)</title>"
    "</head><body><p>" + "Accept the terms. " * 5000 + "</p></body></html>"
)
TOKENS_SPENT = {
    "error": {
        "message": "Rate limit reached for tokens per min (TPM)",
        "type": "tokens",
        "code": "rate_limit_exceeded",
    }
}
# Only OpenAI's reset headers say the wait: the token limit is spent, resetting in 6 minutes.
RESET_HEADERS = {
    "x-ratelimit-remaining-requests": "59",
    "x-ratelimit-reset-requests": "1s",
    "x-ratelimit-remaining-tokens": "0",
    "x-ratelimit-reset-tokens": "6m0s",
}
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "good",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "from the fallback"},
        }
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
}
CHUNK = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "good",
    "choices": [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": "from the fallback"},
            "finish_reason": "stop",
        }
    ],
}  # fmt: skip


def _mode(body: Any) -> str:
    """The misbehaviour the request's text names."""
    said = json.dumps(body)
    return next(mode for mode in ("overloaded", "exhausted", "limited", "typeless", "page",
                                  "reset", "proxied", "captive") if mode in said)  # fmt: skip


async def _sse(request: web.Request, events: list[Any]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        await response.write(f"data: {data}\n\n".encode())
    await response.write_eof()
    return response


async def misbehave(request: web.Request) -> web.StreamResponse:
    """The error the request's text names, as the upstream family of its path sends it."""
    body = await request.json()
    mode = _mode(body)
    if mode == "typeless":
        return await _sse(request, [TYPELESS])
    if mode == "page":
        return web.Response(text=PAGE, content_type="text/html")
    if mode == "captive":
        return web.Response(text=CAPTIVE, content_type="text/html")
    if mode == "reset":
        return web.json_response(TOKENS_SPENT, status=429, headers=RESET_HEADERS)
    if mode == "proxied":
        return web.json_response({"error": {"message": "Slow down, says the proxy"}}, status=429)
    answers = {"overloaded": OVERLOADED, "exhausted": EXHAUSTED, "limited": LIMITED}
    return web.json_response(answers[mode])  # a 200, streamed or not


async def answer(request: web.Request) -> web.StreamResponse:
    """A good answer, whole or streamed."""
    body = await request.json()
    if body.get("stream"):
        return await _sse(request, [CHUNK, "[DONE]"])
    return web.json_response(ANSWER)


@pytest.fixture(scope="module")
async def upstream_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/bad/v1/chat/completions", misbehave)
    app.router.add_post("/bad/v1/messages", misbehave)
    app.router.add_post("/bad/v1beta/models/{call}", misbehave)
    app.router.add_post("/bad/model/{model}/{action}", misbehave)
    app.router.add_post("/good/v1/chat/completions", answer)
    async with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def gateway(log_dir: Path, upstream_url: str) -> Iterator[str]:
    price = {"input": 1.0, "output": 1.0}
    bad = {
        "gpt": {"provider": "openai", "model": "bad", "api_base": f"{upstream_url}/bad/v1"},
        "claude": {"provider": "anthropic", "model": "bad", "api_base": f"{upstream_url}/bad"},
        "gemini": {"provider": "gemini", "model": "bad", "api_base": f"{upstream_url}/bad"},
        "bedrock": {"provider": "bedrock", "model": BEDROCK_MODEL, "region": "us-east-1",
                    "api_base": f"{upstream_url}/bad"},
    }  # fmt: skip
    good = {"provider": "openai", "model": "good", "api_base": f"{upstream_url}/good/v1"}
    models = []
    for family, deployment in bad.items():
        deployment = {**deployment, "api_key": "not-checked-at-all", "price": price}
        fallback = {**good, "api_key": "not-checked-at-all", "price": price}
        models += bad_then_good(deployment, fallback, prefix=f"{family}-")
    # Its own group: the wait it says rests it for the tests that follow.
    models.append({"name": "gpt-reset", "deployments": models[0]["deployments"]})
    config = {
        # A 429 without a wait rests its deployment for no longer than a test; one that says
        # its wait, up to 2 s.
        "routing": {"rate_limit_cooldown": "1ms", "retry_after_max": "2s"},
        "upstream": {"timeouts": {"first_byte": "5s", "total": "8s"}},
        "models": models,
    }
    with running_gateway(log_dir, config) as (url, _process):
        yield url


@pytest.fixture
async def gpt(gateway: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with async_openai(gateway) as client:
        yield client


@pytest.fixture
async def claude(gateway: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with async_anthropic(gateway) as client:
        yield client


async def ask(gpt: openai.AsyncOpenAI, model: str, mode: str, stream: bool = False) -> str:
    messages: Any = [{"role": "user", "content": mode}]
    if not stream:
        answered = await gpt.chat.completions.create(model=model, messages=messages)
        return answered.choices[0].message.content or ""
    chunks = await gpt.chat.completions.create(model=model, messages=messages, stream=True)
    return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])


async def failure(gpt: openai.AsyncOpenAI, model: str, mode: str, stream: bool) -> Any:
    with pytest.raises(openai.APIStatusError) as raised:
        await ask(gpt, model, mode, stream)
    return raised.value


CASES = [("claude", "overloaded", 503, "Overloaded, says Claude"),
         ("gemini", "exhausted", 429, "Quota exceeded, says Gemini")]  # fmt: skip


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("family", "mode", "status", "said"), CASES)
async def test_a_providers_error_object_with_200_is_that_error(
    gpt: openai.AsyncOpenAI, family: str, mode: str, status: int, said: str, stream: bool
) -> None:
    # Was "upstream answered without a 'content' array" / "without candidates" (a 502), and
    # a stream's whole JSON "stream ended before message_stop".
    error = await failure(gpt, f"{family}-bad", mode, stream)
    assert error.status_code == status
    assert said in json.dumps(error.body)


async def test_an_overload_with_200_reaches_an_anthropic_client_as_its_kind(
    claude: anthropic.AsyncAnthropic,
) -> None:
    with pytest.raises(anthropic.InternalServerError) as raised:
        await claude.messages.create(
            model="claude-bad", max_tokens=8, messages=[{"role": "user", "content": "overloaded"}]
        )
    assert raised.value.status_code == 529 and "Overloaded, says Claude" in str(raised.value)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("family", "mode"), [("claude", "overloaded"), ("gemini", "exhausted")])
async def test_a_providers_error_object_with_200_fails_over(
    gpt: openai.AsyncOpenAI, family: str, mode: str, stream: bool
) -> None:
    assert await ask(gpt, f"{family}-fallback", mode, stream) == "from the fallback"


@pytest.mark.parametrize(
    ("family", "mode", "status", "said"),
    [("gpt", "limited", 429, "per-minute, says the JSON"), ("gpt", "page", 502, "502 Bad Gateway"),
     ("claude", "page", 502, "502 Bad Gateway"), ("gemini", "page", 502, "502 Bad Gateway")],
)  # fmt: skip
async def test_a_stream_answered_by_a_whole_body_is_told_in_the_upstreams_words(
    gpt: openai.AsyncOpenAI, family: str, mode: str, status: int, said: str
) -> None:
    # Was "upstream stream ended before [DONE]", the upstream's words lost.
    error = await failure(gpt, f"{family}-bad", mode, stream=True)
    assert error.status_code == status
    assert said in json.dumps(error.body)
    assert "<title>" not in json.dumps(error.body)


@pytest.mark.parametrize(("family", "mode"), [("gpt", "limited"), ("gpt", "page")])
async def test_a_stream_answered_by_a_whole_body_fails_over(
    gpt: openai.AsyncOpenAI, family: str, mode: str
) -> None:
    assert await ask(gpt, f"{family}-fallback", mode, stream=True) == "from the fallback"


async def test_an_anthropic_error_event_without_a_type_is_told_in_its_words(
    gpt: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic
) -> None:
    # Was "upstream stream event is malformed: KeyError('type')".
    error = await failure(gpt, "claude-bad", "typeless", stream=True)
    assert error.status_code == 503
    assert "Upstream hiccup, says the typeless event" in json.dumps(error.body)
    assert "KeyError" not in json.dumps(error.body)
    assert await ask(gpt, "claude-fallback", "typeless", stream=True) == "from the fallback"


async def test_a_429_that_says_its_wait_in_openais_reset_headers_rests_for_it(
    gpt: openai.AsyncOpenAI, gateway: str
) -> None:
    # Without retry-after the deployment rested for rate_limit_cooldown, whatever OpenAI said.
    error = await failure(gpt, "gpt-reset", "reset", stream=False)
    assert error.status_code == 429
    # The token limit is the one spent: its reset (6m0s), not the requests' (1s).
    assert error.response.headers["retry-after"] == "360"
    async with httpx.AsyncClient() as admin:
        answered = await admin.get(
            gateway + "/admin/deployments", headers={"Authorization": f"Bearer {CLIENT_KEY}"}
        )
    rows = {row["id"]: row for row in answered.json()["data"]}
    assert 1 < rows["gpt-reset#0"]["rate_limited_for_s"] <= 2  # the wait, cut to retry_after_max


async def test_a_proxy_in_front_of_bedrock_is_told_in_its_words(
    gpt: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic
) -> None:
    # Was Python's repr of the body: {'error': {'message': ...}}.
    error = await failure(gpt, "bedrock-bad", "proxied", stream=False)
    assert error.status_code == 429
    assert error.message.endswith("Slow down, says the proxy") or "Slow down, says the proxy" in (
        json.dumps(error.body)
    )
    assert "{'error'" not in json.dumps(error.body)
    with pytest.raises(anthropic.RateLimitError) as raised:
        await claude.messages.create(
            model="bedrock-bad", max_tokens=8, messages=[{"role": "user", "content": "proxied"}]
        )
    assert "Slow down, says the proxy" in str(raised.value)
    assert await ask(gpt, "bedrock-fallback", "proxied") == "from the fallback"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("model", "mode", "status", "said"),
    [("gpt-bad", "limited", 429, "per-minute, says the JSON"),
     ("claude-bad", "overloaded", 503, "Overloaded, says Claude"),
     ("gemini-bad", "exhausted", 429, "Quota exceeded, says Gemini")],
)  # fmt: skip
async def test_a_responses_client_is_told_the_upstreams_error_in_openais_shape(
    gpt: openai.AsyncOpenAI, model: str, mode: str, status: int, said: str, stream: bool
) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        if stream:
            async for _event in await gpt.responses.create(model=model, input=mode, stream=True):
                pass
        else:
            await gpt.responses.create(model=model, input=mode)
    assert raised.value.status_code == status
    assert isinstance(raised.value.body, dict) and said in raised.value.body["message"]


@pytest.mark.parametrize("family", ["gpt", "claude", "gemini", "bedrock"])
async def test_an_answer_that_is_a_page_is_told_in_its_words(
    gpt: openai.AsyncOpenAI, family: str
) -> None:
    # Was "upstream answered with invalid JSON", the page's words lost (a stream's were told).
    error = await failure(gpt, f"{family}-bad", "page", stream=False)
    assert error.status_code == 502
    assert "502 Bad Gateway" in json.dumps(error.body)
    assert "<title>" not in json.dumps(error.body)


async def test_a_captive_page_is_told_bounded_with_the_key_masked(gpt: openai.AsyncOpenAI) -> None:
    error = await failure(gpt, "gpt-bad", "captive", stream=False)
    assert error.status_code == 502
    said = json.dumps(error.body)
    assert "Sign in to Hotel Wi-Fi" in said
    assert "not-checked-at-all" not in said
    assert len(said) < 2000


@pytest.mark.parametrize("family", ["gpt", "bedrock"])
async def test_an_answer_that_is_a_page_fails_over(gpt: openai.AsyncOpenAI, family: str) -> None:
    assert await ask(gpt, f"{family}-fallback", "page") == "from the fallback"


@pytest.mark.parametrize(
    ("mode", "status", "said"),
    [("limited", 429, "per-minute, says the JSON"), ("page", 502, "502 Bad Gateway")],
)
async def test_a_bedrock_stream_answered_by_a_whole_body_is_told_in_its_words(
    gpt: openai.AsyncOpenAI, mode: str, status: int, said: str
) -> None:
    # Was "upstream event stream is corrupt", the body read as AWS event-stream framing.
    error = await failure(gpt, "bedrock-bad", mode, stream=True)
    assert error.status_code == status
    assert said in json.dumps(error.body)
    assert "<title>" not in json.dumps(error.body)
    assert await ask(gpt, "bedrock-fallback", mode, stream=True) == "from the fallback"
