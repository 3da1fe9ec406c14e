"""Upstream streams framed every way server-sent events allow reach clients unchanged.

A relay in this module (a small aiohttp server) passes the simulator's streams on with the
framing ``x-sim-framing`` names: CRLF or CR line ends, comment and keep-alive lines, ``id:``
and ``retry:`` fields, one event's JSON over several ``data:`` lines, ``data:`` without its
space, the stream written a few bytes at a time (cutting UTF-8 characters and ``data:`` in
two), and events after the stream's end; a UTF-8 byte order mark before it (which the SSE
spec ignores; whole and cut across reads) and empty events (``data:`` with nothing, which it
does not dispatch). Each SDK's stream parser must read through the
gateway the same answer as from the plain stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web

from tests.integration.in_process import serving_in_thread
from tests.support import CLIENT_KEY, running_gateway, running_simulator

FRAMINGS = [
    "plain", "crlf", "cr", "comments", "fields", "multiline", "nospace", "bytewise", "after-end",
    "bom", "bom-bytewise", "empty",
]  # fmt: skip
BOM = b"\xef\xbb\xbf"
PROMPT = "héllo wörld € 😀 naïve"  # the simulator's reply quotes it: multi-byte characters
SIM = web.AppKey("sim", str)


def _events(body: bytes) -> list[tuple[str | None, bytes]]:
    """The simulator's events (its plain framing): name and data."""
    events = []
    for block in body.split(b"\n\n"):
        name, data = None, b""
        for line in block.split(b"\n"):
            if line.startswith(b"event: "):
                name = line[7:].decode()
            elif line.startswith(b"data: "):
                data = line[6:]
        if data:
            events.append((name, data))
    return events


def _framed(name: str | None, data: bytes, framing: str) -> bytes:
    lines = [] if name is None else [b"event: " + name.encode()]
    if framing == "multiline" and data.startswith(b"{"):
        pretty = json.dumps(json.loads(data), indent=1, ensure_ascii=False).encode()
        lines += [b"data: " + line for line in pretty.split(b"\n")]
    elif framing == "nospace":
        lines.append(b"data:" + data)
    else:
        lines.append(b"data: " + data)
    if framing == "comments":
        lines = [b": keep-alive", *lines, b":ping"]
    elif framing == "fields":
        lines = [b"id: 7", b"retry: 1000", *lines]
    elif framing == "empty":
        lines = [*lines, b"", b"data:", b"", b"event: ping", b"data:"]
    end = {"crlf": b"\r\n", "cr": b"\r"}.get(framing, b"\n")
    event = end.join(lines) + end + end
    return (b": keep-alive" + end + end + event) if framing == "comments" else event


async def _relay(request: web.Request) -> web.StreamResponse:
    """The simulator's answer to the same request, streams framed as ``x-sim-framing`` says."""
    framing = request.headers.get("x-sim-framing", "plain")
    headers = {k: v for k, v in request.headers.items() if k.lower() in _PASSED}
    sim = request.app[SIM]
    async with (
        aiohttp.ClientSession() as session,
        session.post(sim + request.path, data=await request.read(), headers=headers) as answer,
    ):
        body = await answer.read()
        if not answer.content_type.startswith("text/event-stream"):
            if framing.startswith("bom"):
                body = BOM + body
            return web.Response(body=body, status=answer.status, content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    stream = b"".join(_framed(name, data, framing) for name, data in _events(body))
    if framing.startswith("bom"):
        stream = BOM + stream
    if framing == "after-end":
        # The terminal event twice, then an event that is not even JSON.
        last = _events(body)[-1]
        stream += _framed(*last, "plain") + b"data: {not json\n\n"
    if framing == "bom-bytewise":
        for start in range(0, len(stream), 2):  # the mark cut across two reads
            await response.write(stream[start : start + 2])
            await asyncio.sleep(0)
    elif framing == "bytewise":
        for start in range(0, len(stream), 3):
            await response.write(stream[start : start + 3])
    else:
        await response.write(stream)
    await response.write_eof()
    return response


_PASSED = {"authorization", "x-api-key", "anthropic-version", "content-type", "x-sim-fault"}


@pytest.fixture(scope="module")
def sim(log_dir: Path) -> Iterator[str]:
    with running_simulator(log_dir) as url:
        yield url


@pytest.fixture(scope="module")
def relay(sim: str) -> Iterator[str]:
    """The relay on a real port, served from a thread of its own (the tests' SDKs block)."""
    app = web.Application()
    app[SIM] = sim
    app.router.add_post("/{path:.*}", _relay)
    with serving_in_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def gateway(log_dir: Path, relay: str) -> Iterator[str]:
    openai_deployment = {"provider": "openai", "model": "sim-chat", "api_base": relay + "/v1"}
    config = {
        "upstream": {"forward_headers": ["x-sim-*"]},
        "models": [
            {"name": "gpt", "deployments": [openai_deployment]},
            {"name": "claude", "deployments": [
                {"provider": "anthropic", "model": "sim-chat", "api_base": relay}]},
            {"name": "responder", "deployments": [{**openai_deployment, "responses_api": True}]},
        ],
    }  # fmt: skip
    with running_gateway(log_dir, config) as (url, _):
        yield url


def _chat(url: str, framing: str) -> tuple[str, Any]:
    client = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    stream = client.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": PROMPT}], max_tokens=12,
        stream=True, stream_options={"include_usage": True},
        extra_headers={"x-sim-framing": framing},
    )  # fmt: skip
    text, usage, roles = "", None, []
    for chunk in stream:
        text += "".join(choice.delta.content or "" for choice in chunk.choices)
        roles += [choice.delta.role for choice in chunk.choices if choice.delta.role]
        usage = chunk.usage or usage
    assert usage is not None
    return text, (usage.prompt_tokens, usage.completion_tokens, roles)


def _messages(url: str, framing: str, model: str) -> tuple[str, Any]:
    client = anthropic.Anthropic(base_url=url, api_key=CLIENT_KEY, max_retries=0)
    with client.messages.stream(
        model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=12,
        extra_headers={"x-sim-framing": framing},
    ) as stream:  # fmt: skip
        message = stream.get_final_message()
    text = "".join(block.text for block in message.content if block.type == "text")
    return text, (message.usage.input_tokens, message.usage.output_tokens)


def _responses(url: str, framing: str) -> tuple[str, Any]:
    client = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    with client.responses.stream(
        model="responder", input=PROMPT, max_output_tokens=16,
        extra_headers={"x-sim-framing": framing},
    ) as stream:  # fmt: skip
        events = list(stream)
        response = stream.get_final_response()
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert response.output_text == deltas
    assert response.usage is not None
    kinds = [event.type for event in events]
    return deltas, (response.usage.input_tokens, response.usage.output_tokens, kinds)


CLIENTS = {
    "chat": _chat,
    "messages": lambda url, framing: _messages(url, framing, "claude"),
    "messages-from-openai": lambda url, framing: _messages(url, framing, "gpt"),
    "responses": _responses,
}


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("route", list(CLIENTS))
def test_every_framing_of_an_upstream_stream_reads_as_the_plain_one(
    gateway: str, route: str, framing: str
) -> None:
    plain = CLIENTS[route](gateway, "plain")
    assert "wörld € 😀" in plain[0]
    assert CLIENTS[route](gateway, framing) == plain


@pytest.mark.parametrize("status", [200, 400])
def test_a_whole_answer_after_a_byte_order_mark_reads_as_without_it(
    gateway: str, status: int
) -> None:
    # A JSON body may start with a BOM too (an error body as well as an answer).
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0)
    asked: dict[str, Any] = {"model": "gpt", "messages": [{"role": "user", "content": PROMPT}]}
    if status == 400:
        asked["extra_headers"] = {"x-sim-framing": "bom", "x-sim-fault": "status:400"}
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(**asked, max_tokens=12)
        assert "simulated fault" in caught.value.message
        return
    plain = client.chat.completions.create(**asked, max_tokens=12)
    marked = client.chat.completions.create(
        **asked, max_tokens=12, extra_headers={"x-sim-framing": "bom"}
    )
    assert marked.choices[0].message.content == plain.choices[0].message.content
    assert "wörld € 😀" in (marked.choices[0].message.content or "")
    raw = client.chat.completions.with_raw_response.create(
        **asked, max_tokens=12, extra_headers={"x-sim-framing": "bom"}
    )
    assert not raw.http_response.content.startswith(BOM)
