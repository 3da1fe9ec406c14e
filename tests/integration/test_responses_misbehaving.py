"""A Responses request sent on to an upstream's Responses API (``responses_api: true``) that
answers 200 with something other than a response (an error object, an HTML page, nothing):
the client is told the upstream's words in OpenAI's error shape, with the status they mean,
plain and streamed, and the next deployment is tried."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import openai
import pytest
from aiohttp import web

from tests.integration.in_process import async_openai, bad_then_good, serving
from tests.integration.test_upstream_answers import ERRORS_WITH_200
from tests.integration.test_upstream_error_bodies import PAGE
from tests.support import running_gateway

RESPONSE = {
    "id": "resp_1", "object": "response", "created_at": 1, "status": "completed",
    "model": "good",
    "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": "from the fallback",
                             "annotations": []}]}],
    "usage": {"input_tokens": 1, "output_tokens": 3, "total_tokens": 4},
}  # fmt: skip


async def misbehave(request: web.Request) -> web.Response:
    """A 200 that is the error object, the page or the nothing the request's input names."""
    mode = (await request.json())["input"]
    if mode == "page":
        return web.Response(text=PAGE, content_type="text/html")
    if mode == "empty":
        return web.Response(body=b"", content_type="application/json")
    return web.json_response(ERRORS_WITH_200[mode])


async def answer(request: web.Request) -> web.StreamResponse:
    """A good response, whole or as its events."""
    body = await request.json()
    if not body.get("stream"):
        return web.json_response(RESPONSE)
    stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await stream.prepare(request)
    opened = {**RESPONSE, "status": "in_progress", "output": [], "usage": None}
    events = [
        {"type": "response.created", "sequence_number": 0, "response": opened},
        {"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_1",
         "output_index": 0, "content_index": 0, "delta": "from the fallback", "logprobs": []},
        {"type": "response.completed", "sequence_number": 2, "response": RESPONSE},
    ]  # fmt: skip
    for event in events:
        await stream.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
    await stream.write_eof()
    return stream


@pytest.fixture(scope="module")
async def upstream_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/bad/v1/responses", misbehave)
    app.router.add_post("/good/v1/responses", answer)
    async with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def gateway(log_dir: Path, upstream_url: str) -> Iterator[str]:
    bad = {"provider": "openai", "model": "bad", "api_base": f"{upstream_url}/bad/v1",
           "api_key": "not-checked-at-all", "responses_api": True,
           "price": {"input": 1.0, "output": 1.0}}  # fmt: skip
    good = {**bad, "model": "good", "api_base": f"{upstream_url}/good/v1"}
    config = {
        "routing": {"rate_limit_cooldown": "1ms", "retry_after_max": "1ms"},
        "upstream": {"timeouts": {"first_byte": "5s", "total": "8s"}},
        "models": bad_then_good(bad, good),
    }
    with running_gateway(log_dir, config) as (url, _process):
        yield url


@pytest.fixture
async def gpt(gateway: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with async_openai(gateway) as client:
        yield client


async def respond(gpt: openai.AsyncOpenAI, model: str, mode: str, stream: bool) -> str:
    if not stream:
        return (await gpt.responses.create(model=model, input=mode)).output_text
    said = []
    async for event in await gpt.responses.create(model=model, input=mode, stream=True):
        if event.type == "response.output_text.delta":
            said.append(event.delta)
    return "".join(said)


CASES = [
    ("rate-limited", 429, "Rate limit exceeded: free-models-per-min"),
    ("provider-failed", 502, "Provider returned error"),
    ("overloaded", 503, "The engine is overloaded"),
    ("page", 502, "502 Bad Gateway"),
    ("empty", 502, "upstream"),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("mode", "status", "said"), CASES)
async def test_a_200_that_is_no_response_is_told_in_openais_shape(
    gpt: openai.AsyncOpenAI, mode: str, status: int, said: str, stream: bool
) -> None:
    # Was "upstream answered without an 'output' array" (or "not a typed JSON object"), a 502.
    with pytest.raises(openai.APIStatusError) as raised:
        await respond(gpt, "bad", mode, stream)
    assert raised.value.status_code == status
    body = raised.value.body
    assert isinstance(body, dict) and said in body["message"]
    assert set(body) >= {"message", "type", "param", "code"}
    assert "<title>" not in body["message"] and "not-checked-at-all" not in json.dumps(body)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("mode", [case[0] for case in CASES])
async def test_a_200_that_is_no_response_fails_over(
    gpt: openai.AsyncOpenAI, mode: str, stream: bool
) -> None:
    assert await respond(gpt, "fallback", mode, stream) == "from the fallback"
