"""OpenAI-compatible servers' documented quirks, over real sockets: a gateway in this process
(``create_app`` on a real port) in front of an aiohttp upstream written here that answers as
vLLM, a FastAPI-based server, a proxy in front of one, or a server without ``stream_options``
does; the client is the ``openai`` SDK.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web

from tests.integration.in_process import gateway_in_process, serving
from tests.support import CLIENT_KEY

HI: Any = [{"role": "user", "content": "hello there"}]
CHUNK = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
BODIES: list[dict[str, Any]] = []
"""Every body the ``no-stream-options`` and ``ollama`` upstreams got."""
USAGE = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
# FastAPI's answer to a body its pydantic model refuses (vLLM's and SGLang's routes, most
# self-hosted servers): a 422 listing each error with where it is.
FASTAPI_422 = {
    "detail": [
        {"type": "missing", "loc": ["body", "messages", 0, "content"], "msg": "Field required",
         "input": {"role": "user"}},
        {"type": "less_than_equal", "loc": ["body", "temperature"],
         "msg": "Input should be less than or equal to 2", "input": 3, "ctx": {"le": 2}},
    ]
}  # fmt: skip
NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n"
    "</body>\r\n</html>\r\n"
)


def _events(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


async def upstream(request: web.Request) -> web.StreamResponse:
    """Answers as the deployment's ``x-quirk`` header says."""
    body = await request.json()
    quirk = request.headers.get("x-quirk", "")
    if quirk == "fastapi-422":
        return web.json_response(FASTAPI_422, status=422)
    if quirk == "proxy-502":
        return web.Response(text=NGINX_502, status=502, content_type="text/html")
    if quirk in ("no-stream-options", "ollama"):
        BODIES.append(body)
        # A strict schema: extra fields forbidden.
        if quirk == "no-stream-options" and "stream_options" in body:
            error = {"object": "error", "type": "BadRequestError", "code": 400, "param": None,
                     "message": "stream_options: Extra inputs are not permitted"}  # fmt: skip
            return web.json_response(error, status=400)
    if not body.get("stream"):
        message = {"role": "assistant", "content": "hi"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        answer = {**CHUNK, "object": "chat.completion", "usage": USAGE, "choices": [choice]}
        return web.json_response(answer)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(
        _events(
            {**CHUNK, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}]},
            {**CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        )
        + b"data: [DONE]\n\n"
    )
    await response.write_eof()
    return response


@pytest.fixture(scope="module")
async def upstream_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", upstream)
    async with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
async def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream_url: str
) -> AsyncIterator[str]:
    tmp: Path = tmp_path_factory.mktemp("compat-quirks")
    models = [
        {"name": quirk, "retries": 0, "deployments": [
            {"provider": "ollama" if quirk == "ollama" else "vllm", "model": "m",
             "api_base": upstream_url + "/v1", "api_key": "sk-test-key", "id": quirk,
             "headers": {"x-quirk": quirk}}]}
        for quirk in ("fastapi-422", "proxy-502", "no-stream-options", "ollama")
    ]  # fmt: skip
    config = {
        "store": {"url": f"sqlite+aiosqlite:///{tmp / 'gw.db'}"},
        "server": {"reload_interval": None},
        "upstream": {"timeouts": {"connect": "2s", "first_byte": "2s", "total": "5s"}},
        "models": models,
    }
    async with gateway_in_process(config) as (url, _):
        yield url


def _client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)


async def test_a_fastapi_validation_error_is_said_in_words_naming_the_field(gateway: str) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        await _client(gateway).chat.completions.create(model="fastapi-422", messages=HI)
    error = caught.value
    assert error.status_code == 422
    assert error.body == {
        "message": "messages[0].content: Field required; "
        "temperature: Input should be less than or equal to 2",
        "type": "invalid_request_error",
        "param": "messages[0].content",
        "code": None,
    }


async def test_a_proxys_html_error_page_is_told_by_its_title(gateway: str) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await _client(gateway).chat.completions.create(model="proxy-502", messages=HI)
    error = caught.value
    assert error.status_code == 502
    assert "upstream answered 502: 502 Bad Gateway" in error.message
    assert "<" not in error.message and "nginx" not in error.message  # the page's title only


async def test_a_server_refusing_stream_options_is_asked_again_without(gateway: str) -> None:
    BODIES.clear()
    stream = await _client(gateway).chat.completions.create(
        model="no-stream-options", messages=HI, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hi"
    assert [("stream_options" in body) for body in BODIES] == [True, False]
    # The server said no usage without stream_options: the gateway counted it.
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0


@pytest.mark.parametrize("stream", [False, True])
async def test_a_clients_max_completion_tokens_reaches_ollama_as_max_tokens(
    gateway: str, stream: bool
) -> None:
    # Ollama's Chat Completions request knows only max_tokens and ignores other fields
    # silently: the newer name the openai SDK's users write would leave the answer unlimited
    # (past what a budget reserved for it).
    BODIES.clear()
    answer = await _client(gateway).chat.completions.create(
        model="ollama", messages=HI, max_completion_tokens=7, stream=stream
    )
    if stream:
        [chunk async for chunk in answer]  # type: ignore[union-attr]
    assert len(BODIES) == 1
    assert BODIES[0]["max_tokens"] == 7 and "max_completion_tokens" not in BODIES[0]
