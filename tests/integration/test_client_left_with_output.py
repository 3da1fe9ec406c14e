"""A client that leaves as its stream begins pays for the output its upstream had sent.

The upstream here (a small aiohttp server of this module's, in a thread) answers the stream's
head, then, in one step, closes the client's connection and sends the first content and a few
more tokens in one write, and falls silent (no usage, no end). The gateway has them all by the
time it would write its response head to a client already gone: the provider generated those
tokens and bills them, so the request (logged 499 ``client_disconnected``) is charged them,
counted by the gateway (marked estimated), in the request log and the key's budget. Charged
only the prompt, a client that hung up as soon as its stream began had its first tokens free.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.integration.in_process import serving_in_thread
from tests.support import (
    CLIENT_KEY,
    admin_request,
    budgeted_key,
    logged_row,
    running_gateway,
)

ADMIN = {"Authorization": f"Bearer {CLIENT_KEY}"}
PRICE = {"input": 1000.0, "output": 4000.0}  # USD per 1M tokens: whole micro-dollars a token
WORDS = ["Tokens ", "the ", "upstream ", "generated ", "before ", "its ", "client ", "left. "]
"""The output the upstream sends before it falls silent: at least one token a word."""
REPORTED = {"input": 9, "output": 11}
"""The usage an upstream that sends its whole answer at once reports."""
LEAVERS = web.AppKey("leavers", dict[str, socket.socket])


def _openai_events(whole: bool) -> bytes:
    def chunk(delta: dict[str, Any], **more: Any) -> bytes:
        choices = [{"index": 0, "delta": delta, "finish_reason": None}] if delta else []
        body = {"id": "chatcmpl-left", "object": "chat.completion.chunk", "created": 1,
                "model": "sim-chat", "choices": choices, **more}  # fmt: skip
        return b"data: " + orjson.dumps(body) + b"\n\n"

    events = chunk({"role": "assistant", "content": ""}) + b"".join(
        chunk({"content": word}) for word in WORDS
    )
    if whole:
        usage = {"prompt_tokens": REPORTED["input"], "completion_tokens": REPORTED["output"],
                 "total_tokens": REPORTED["input"] + REPORTED["output"]}  # fmt: skip
        events += chunk({}, usage=usage) + b"data: [DONE]\n\n"
    return events


def _anthropic_events(whole: bool) -> bytes:
    def event(name: str, body: dict[str, Any]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"

    message = {"id": "msg_left", "type": "message", "role": "assistant", "model": "sim-chat",
               "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": 12, "output_tokens": 1}}  # fmt: skip
    head = event("message_start", {"type": "message_start", "message": message})
    head += event(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    events = head + b"".join(
        event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                      "delta": {"type": "text_delta", "text": word}})
        for word in WORDS
    )  # fmt: skip
    if whole:
        events += event("content_block_stop", {"type": "content_block_stop", "index": 0})
        ending = {"stop_reason": "end_turn", "stop_sequence": None}
        usage = {"output_tokens": REPORTED["output"]}
        events += event("message_delta", {"type": "message_delta", "delta": ending, "usage": usage})
        events += event("message_stop", {"type": "message_stop"})
    return events


async def _answer(request: web.Request) -> web.StreamResponse:
    """The stream's head; then the client's connection closed and the first tokens sent at
    once; then silence until the gateway hangs up (5 s at most: the tokens it read without
    waiting are all it counts), or (``x-leave-whole``) the rest of the answer and its usage
    in the same write."""
    leaver = request.app[LEAVERS].pop(request.headers["x-leave-id"])
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    whole = "x-leave-whole" in request.headers
    claude = request.path == "/v1/messages"
    events = _anthropic_events(whole) if claude else _openai_events(whole)
    leaver.shutdown(socket.SHUT_RDWR)  # the client's FIN, and the tokens right behind it
    await response.write(events)
    if not whole:
        await asyncio.sleep(5)  # cancelled when the gateway hangs up (``handler_cancellation``)
    await response.write_eof()
    return response


@pytest.fixture(scope="module")
def leavers() -> dict[str, socket.socket]:
    """The client connections the upstream is to close, by ``x-leave-id``."""
    return {}


@pytest.fixture(scope="module")
def upstream(leavers: dict[str, socket.socket]) -> Iterator[str]:
    """The upstream on a real port, served from a thread of its own (the test's client
    blocks)."""
    app = web.Application()
    app[LEAVERS] = leavers
    app.router.add_post("/{path:.*}", _answer)
    with serving_in_thread(app, handler_cancellation=True) as url:
        yield url


@pytest.fixture(scope="module")
def gateway(log_dir: Path, upstream: str) -> Iterator[str]:
    config = {
        "upstream": {
            "timeouts": {"connect": "2s", "first_byte": "10s", "total": "30s"},
            "forward_headers": ["x-leave-*"],
        },
        "models": [
            {"name": "gpt", "deployments": [{"provider": "openai", "model": "sim-chat",
                                             "api_base": upstream + "/v1", "price": PRICE}]},
            {"name": "claude", "deployments": [{"provider": "anthropic", "model": "sim-chat",
                                                "api_base": upstream, "price": PRICE}]},
        ],
        "limits": {"spend_flush_interval": "200ms"},
        "telemetry": {"request_log": {"flush_interval": "100ms"}},
    }  # fmt: skip
    with running_gateway(log_dir, config) as (url, _):
        yield url


def _leave(gateway: str, leavers: dict[str, socket.socket], ingress: str, model: str,
           key: str, request_id: str, whole: bool = False) -> None:  # fmt: skip
    """One streamed request whose connection the upstream closes as it sends the first tokens."""
    body = orjson.dumps(
        {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 200,
         "stream": True}
    )  # fmt: skip
    path = "/v1/chat/completions" if ingress == "openai" else "/v1/messages"
    host, port = gateway.removeprefix("http://").split(":")
    client = socket.create_connection((host, int(port)))
    leave_id = uuid.uuid4().hex
    leavers[leave_id] = client
    try:
        client.sendall(
            f"POST {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {key}\r\n".encode()
            + f"anthropic-version: 2023-06-01\r\nx-request-id: {request_id}\r\n".encode()
            + f"x-leave-id: {leave_id}\r\nContent-Type: application/json\r\n".encode()
            + (b"x-leave-whole: 1\r\n" if whole else b"")
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        client.settimeout(10)
        with contextlib.suppress(OSError):
            while client.recv(65536):  # nothing, once the upstream has closed the connection
                pass
    finally:
        client.close()


def _spent_micros(url: str, key_id: str, micros: int) -> int:
    """What the key's budget was charged, once it is ``micros`` (within 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        (row,) = admin_request(url, "GET", f"/admin/budgets?scope=key&scope_id={key_id}")["data"]
        spent = round(row["spent_usd"] * 1e6)
        if spent == micros or time.monotonic() > deadline:
            assert row["reserved_usd"] == 0
            return spent
        time.sleep(0.1)


def _left(
    gateway: str, leavers: dict[str, socket.socket], ingress: str, model: str, whole: bool
) -> tuple[str, dict[str, Any]]:
    """The budgeted key's id and the request log's row of a request whose client left as its
    stream began, once the gateway had its first tokens (asked again, a few times at most,
    when its watchdog saw the client gone first: seldom, and then nothing was read)."""
    for _ in range(5):
        key_id, key = budgeted_key(gateway, "leaver")
        request_id = f"t-left-{uuid.uuid4().hex[:12]}"
        _leave(gateway, leavers, ingress, model, key, request_id, whole)
        record = logged_row(gateway, request_id, ADMIN)
        assert (record["status"], record["error_code"]) == (499, "client_disconnected")
        if record["ttft_ms"] is not None:
            return key_id, record
    pytest.fail("the gateway never had the tokens before it saw its client gone")


@pytest.mark.parametrize("model", ["gpt", "claude"], ids=["openai-upstream", "claude-upstream"])
@pytest.mark.parametrize("ingress", ["openai", "anthropic"])
def test_a_client_that_leaves_as_its_stream_begins_pays_for_the_output_already_sent(
    gateway: str, leavers: dict[str, socket.socket], ingress: str, model: str
) -> None:
    key_id, record = _left(gateway, leavers, ingress, model, whole=False)
    # Counted as soon as the client was gone: not after the upstream's silence.
    assert record["latency_ms"] < 4000
    # Every word is at least a token; no usage came, so the gateway counted them.
    assert record["output_tokens"] >= len(WORDS)
    assert record["usage_estimated"] is True
    least = record["input_tokens"] * 1000 + len(WORDS) * 4000
    assert record["cost_micros"] >= least
    assert _spent_micros(gateway, key_id, record["cost_micros"]) == record["cost_micros"]


@pytest.mark.parametrize("model", ["gpt", "claude"], ids=["openai-upstream", "claude-upstream"])
@pytest.mark.parametrize("ingress", ["openai", "anthropic"])
def test_a_client_that_leaves_as_its_whole_answer_arrives_pays_its_reported_usage(
    gateway: str, leavers: dict[str, socket.socket], ingress: str, model: str
) -> None:
    # The answer's end and usage came in the same read as its first content: exact.
    key_id, record = _left(gateway, leavers, ingress, model, whole=True)
    reported_input = REPORTED["input"] if model == "gpt" else 12  # Claude's message_start's
    assert record["input_tokens"] == reported_input
    assert record["output_tokens"] == REPORTED["output"]
    assert record["usage_estimated"] is False
    assert record["cost_micros"] == reported_input * 1000 + REPORTED["output"] * 4000
    assert _spent_micros(gateway, key_id, record["cost_micros"]) == record["cost_micros"]
