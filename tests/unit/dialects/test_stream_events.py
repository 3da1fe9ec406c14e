"""``stream_events``: after the head is sent, every failure ends the stream in the client's
dialect, even one that is no ``GatewayError`` (a bug, an upstream shape nobody foresaw).

Served by a real aiohttp server on a real port and read by a real HTTP client.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from tests.support import free_port
from tollway.core.context import RequestContext
from tollway.core.types import ChatChunk, ChatRequest, ChunkChoice, Message
from tollway.dialects.anthropic import _Encoder as AnthropicEncoder
from tollway.dialects.http import EventEncoder, stream_events
from tollway.dialects.openai import ChunkEncoder
from tollway.dialects.responses import _Encoder as ResponsesEncoder
from tollway.pricing.metering import Metering
from tollway.pricing.tokens import TokenCounter

RID = "req_stream_events_test"


def _context() -> RequestContext:
    chat = ChatRequest(model="m", messages=[Message(role="user", content="hi")], stream=True)
    return RequestContext(RID, "chat", "m", {}, chat=chat)


async def _one_chunk_then_a_bug() -> AsyncIterator[ChatChunk]:
    yield ChatChunk("c1", "m", 1, [ChunkChoice(index=0, role="assistant", content="Hello")])
    raise TypeError("argument of type 'NoneType' is not iterable")


ENCODERS: dict[str, Callable[[RequestContext], EventEncoder]] = {
    "openai": lambda ctx: ChunkEncoder(include_usage=False),
    "anthropic": lambda ctx: AnthropicEncoder(ctx, Metering(TokenCounter())),
    "responses": lambda ctx: ResponsesEncoder({}, ctx),
}


@pytest.mark.parametrize("dialect", list(ENCODERS))
async def test_an_unexpected_failure_mid_stream_ends_it_with_the_dialects_error_event(
    dialect: str,
) -> None:
    contexts: list[RequestContext] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ctx = _context()
        contexts.append(ctx)
        encoder = ENCODERS[dialect](ctx)
        return await stream_events(request, ctx, _one_chunk_then_a_bug(), encoder, {})

    app = web.Application()
    app.router.add_post("/stream", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"http://127.0.0.1:{port}/stream", timeout=aiohttp.ClientTimeout(total=5)
            ) as response,
        ):
            assert response.status == 200
            body = (await response.read()).decode()
    finally:
        await runner.cleanup()

    # One well-formed stream: the text, then the error as its last event, nothing after.
    assert "HTTP/1.1" not in body and "Hello" in body
    events = [block for block in body.split("\n\n") if block]
    last = events[-1]
    data = json.loads(last.split("data: ", 1)[1])
    if dialect == "openai":
        assert data["error"]["type"] == "server_error" and RID in data["error"]["message"]
        assert "[DONE]" not in body
    elif dialect == "anthropic":
        assert last.startswith("event: error\n")
        assert data["error"]["type"] == "api_error" and data["request_id"] == RID
        assert "message_stop" not in body
    else:
        assert last.startswith("event: response.failed\n")
        assert data["response"]["status"] == "failed"
        error = json.loads(events[-2].split("data: ", 1)[1])
        assert error["type"] == "error" and RID in error["message"]
    (ctx,) = contexts
    assert ctx.error is not None and ctx.error.status == 500
