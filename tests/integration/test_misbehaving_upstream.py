"""Upstreams that break the protocol: the client gets a clear error, never a hang or a 500."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import openai
import pytest
from aiohttp import web

from tests.integration.in_process import serving
from tests.support import CLIENT_KEY, Process, logged_row, running_gateway

AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}
CHUNK = {
    "id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "bad",
    "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
}  # fmt: skip
# Events that are JSON but not what a Chat Completions stream sends (after a first good chunk).
ODD_EVENTS = {
    "null-event": b"null",
    "number-content": json.dumps(
        {**CHUNK, "choices": [{"index": 0, "delta": {"content": 5}, "finish_reason": None}]}
    ).encode(),
    "object-arguments": json.dumps(
        {**CHUNK, "choices": [{"index": 0, "finish_reason": None, "delta": {"tool_calls": [
            {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": "f", "arguments": {"a": 1}}}]}}]}
    ).encode(),
}  # fmt: skip
# Whole answers (not streamed) whose message is not what Chat Completions sends.
PLAIN_ODD = {
    "plain-number-content": {"role": "assistant", "content": 5},
    "plain-object-arguments": {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]},
}  # fmt: skip
# Answers whose Content-Encoding the gateway cannot read: one it did not offer (aiohttp reads
# brotli and zstd only with their optional packages), and gzip that is not gzip.
ENCODED = {
    "brotli": ("br", b"\x1b\x03\x00\xf8\x25\x00\x02"),
    "zstd": ("zstd", b"\x28\xb5\x2f\xfd\x00\x58\x11\x00\x00"),
    "not-gzip": ("gzip", b'{"id": "x", "object": "chat.completion"}'),
}
CODED = {
    "message": "This model's maximum context length is 8 tokens.",
    "type": "invalid_request_error",
    "param": "messages",
    "code": "context_length_exceeded",
}


async def misbehave(request: web.Request) -> web.StreamResponse:
    """Answers according to the first user message: the way this upstream goes wrong."""
    body = await request.json()
    mode = body["messages"][0]["content"]
    if mode in ENCODED:  # an answer in a Content-Encoding the gateway did not ask for
        encoding, payload = ENCODED[mode]
        kind = "text/event-stream" if body.get("stream") else "application/json"
        headers = {"Content-Encoding": encoding, "Content-Type": kind}
        return web.Response(body=payload, headers=headers)
    if mode == "garbage":
        return web.Response(text="this is not json", content_type="application/json")
    if mode == "html-502":
        return web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html")
    if mode == "no-choices":
        return web.json_response({"id": "x", "object": "chat.completion"})
    if mode == "proxy-502":  # a proxy's page that names the address it could not reach
        page = f"<html>502: connect() failed while connecting to http://{request.host}/v1</html>"
        return web.Response(status=502, text=page, content_type="text/html")
    if mode == "named-404":  # a compatible server that names itself in its error
        message = f"model 'bad' is not served at {request.host}"
        return web.json_response({"error": {"message": message}}, status=404)
    if mode == "bad-created":  # a well-formed answer but for a "created" that is no number
        choice = {"index": 0, "finish_reason": "stop",
                  "message": {"role": "assistant", "content": "hi"}}  # fmt: skip
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        answer = {"id": "x", "object": "chat.completion", "created": "soon", "model": "bad"}
        return web.json_response({**answer, "choices": [choice], "usage": usage})
    if mode == "coded-400":  # an OpenAI-format refusal with its own code and param
        return web.json_response({"error": CODED}, status=400)
    if mode in PLAIN_ODD:  # a whole answer whose message is of the wrong shape
        choice = {"index": 0, "finish_reason": "stop", "message": PLAIN_ODD[mode]}
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        answer = {"id": "x", "object": "chat.completion", "created": 1, "model": "bad"}
        return web.json_response({**answer, "choices": [choice], "usage": usage})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    if mode == "error-event":  # a stream that fails after its first chunk, saying how
        await response.write(b"data: " + json.dumps(CHUNK).encode() + b"\n\n")
        await response.write(b"data: " + json.dumps({"error": CODED}).encode() + b"\n\n")
        await response.write_eof()
        return response
    if mode in ODD_EVENTS or mode == "null-first":
        if mode != "null-first":
            await response.write(b"data: " + json.dumps(CHUNK).encode() + b"\n\n")
        await response.write(b"data: " + ODD_EVENTS.get(mode, b"null") + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
    if mode == "large-event":  # one 2 MiB event in small writes, lines ended by \r\n
        content = "x" * (2 << 20)
        event = json.dumps(
            {
                **CHUNK,
                "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
            }
        ).encode()
        data = b"data: " + event + b"\r\n\r\n"
        for start in range(0, len(data), 4096):
            await response.write(data[start : start + 4096])
        await response.write(b"data: [DONE]\r\n\r\n")
        await response.write_eof()
        return response
    if mode == "endless-event":  # a first chunk, then one event that never ends (200 MiB)
        await response.write(b"data: " + json.dumps(CHUNK).encode() + b"\n\n")
        piece = b"data: " + b"x" * (1 << 20)
        for _ in range(200):
            await response.write(piece)
        await asyncio.sleep(30)  # and silence, the connection open: cut by the gateway first
        return response
    if mode == "no-done":
        for _ in range(3):
            await response.write(b"data: " + json.dumps(CHUNK).encode() + b"\n\n")
        await response.write_eof()  # a clean end of the body, but no [DONE]
        return response
    if mode == "trickle":
        for _ in range(100):  # bounded: ~20 s at most, the total timeout ends it far sooner
            await response.write(b"data: " + json.dumps(CHUNK).encode() + b"\n\n")
            await asyncio.sleep(0.2)
    return response


GEMINI_EVENTS = [
    {"candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": "Hel"}]}}],
     "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}},
    {"candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": "lo"}]},
                     "finishReason": "STOP"}],
     "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "totalTokenCount": 7}},
    # The finish said again, on an empty last part with the final usage.
    {"candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": ""}]},
                     "finishReason": "STOP"}],
     "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8}},
]  # fmt: skip


async def gemini_repeating_its_finish(request: web.Request) -> web.StreamResponse:
    """A Gemini stream whose candidate says ``finishReason`` on two events (CRLF framed)."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for event in GEMINI_EVENTS:
        await response.write(b"data: " + json.dumps(event).encode() + b"\r\n\r\n")
    await response.write_eof()
    return response


CLAUDE_HEAD = [
    {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 100_000, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
]  # fmt: skip


async def claude_silent_after_its_head(request: web.Request) -> web.StreamResponse:
    """An Anthropic stream that says its prompt's tokens (``message_start``), then nothing
    for longer than its client waits (or, asked to ``stall``, than the gateway waits)."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for event in CLAUDE_HEAD:
        head = f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
        await response.write(head.encode())
    body = await request.json()
    stalls = body["messages"][0]["content"] == "stall"
    await asyncio.sleep(1.3 if stalls else 0.8)  # past, or within, the first-byte limit of 1 s
    return response


@pytest.fixture(scope="module")
async def upstream_url() -> AsyncIterator[str]:
    """A deliberately broken OpenAI-style upstream on a real port (and a Gemini one under
    ``/v1beta``, an Anthropic one at ``/v1/messages``)."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", misbehave)
    app.router.add_post("/v1beta/models/{call}", gemini_repeating_its_finish)
    app.router.add_post("/v1/messages", claude_silent_after_its_head)
    async with serving(app) as url:
        yield url + "/v1"


@pytest.fixture(scope="module")
def broken_gateway(log_dir: Path, upstream_url: str) -> Iterator[tuple[str, Process]]:
    """A gateway whose only model is served by the broken upstream."""
    config = {
        "upstream": {"timeouts": {"first_byte": "1s", "total": "1500ms"}},
        "models": [
            {"name": "bad", "deployments": [
                {"provider": "openai", "model": "bad", "api_base": upstream_url}]},
            {"name": "gem", "deployments": [{"provider": "gemini", "model": "g",
                "api_base": upstream_url.removesuffix("/v1"), "api_key": "not-checked"}]},
            {"name": "claude", "deployments": [{"provider": "anthropic", "model": "m",
                "api_base": upstream_url.removesuffix("/v1"), "api_key": "not-checked",
                "price": {"input": 10.0, "output": 10.0}}]},
        ],
        "telemetry": {"request_log": {"flush_interval": "100ms"}},
    }  # fmt: skip
    with running_gateway(log_dir, config) as running:
        yield running


@pytest.fixture(scope="module")
def patient_gateway(log_dir: Path, upstream_url: str) -> Iterator[tuple[str, Process]]:
    """The broken upstream behind time limits that leave room to send a lot."""
    config = {
        "upstream": {"timeouts": {"first_byte": "10s", "total": "20s"}},
        "models": [{"name": "bad", "deployments": [
            {"provider": "openai", "model": "bad", "api_base": upstream_url}]}],
    }  # fmt: skip
    with running_gateway(log_dir, config) as running:
        yield running


async def ask(url: str, mode: str, stream: bool) -> tuple[int, bytes]:
    body = {"model": "bad", "stream": stream, "messages": [{"role": "user", "content": mode}]}
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.post(
            url + "/v1/chat/completions", json=body, timeout=aiohttp.ClientTimeout(total=15)
        ) as response,
    ):
        return response.status, await response.read()


@pytest.mark.parametrize("mode", ["garbage", "html-502", "no-choices", "proxy-502", "bad-created"])
async def test_malformed_answers_are_502_with_a_message(
    broken_gateway: tuple[str, Process], upstream_url: str, mode: str
) -> None:
    status, raw = await ask(broken_gateway[0], mode, stream=False)
    assert status == 502
    error = json.loads(raw)["error"]
    assert error["type"] == "upstream_error" and error["message"]
    assert error["message"].startswith("deployment 'bad#0' (model group 'bad'): ")
    assert "127.0.0.1" not in raw.decode() and upstream_url not in raw.decode()


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("mode", list(ENCODED))
async def test_an_answer_in_an_unreadable_content_encoding_is_a_502_saying_so(
    broken_gateway: tuple[str, Process], upstream_url: str, mode: str, stream: bool
) -> None:
    # Not "cannot reach the upstream", nor "closed the connection mid-answer": it answered,
    # in an encoding the gateway cannot read.
    status, raw = await ask(broken_gateway[0], mode, stream=stream)
    assert status == 502
    error = json.loads(raw)["error"]
    assert error["type"] == "upstream_error"
    assert error["message"].endswith(
        f"upstream answered in a Content-Encoding the gateway cannot read ({ENCODED[mode][0]})"
    )
    assert upstream_url not in raw.decode()


@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_error_that_names_its_address_reaches_the_client_without_it(
    broken_gateway: tuple[str, Process], stream: bool
) -> None:
    status, raw = await ask(broken_gateway[0], "named-404", stream=stream)
    assert status == 404  # the provider's own 4xx, in its own words, but for the address
    error = json.loads(raw)["error"]
    assert error["message"] == "model 'bad' is not served at <upstream>"


async def test_stream_without_done_ends_with_an_error_event(
    broken_gateway: tuple[str, Process],
) -> None:
    status, raw = await ask(broken_gateway[0], "no-done", stream=True)
    assert status == 200
    events = [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]
    assert b"[DONE]" not in events
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "hi"
    assert "ended before [DONE]" in json.loads(events[-1])["error"]["message"]


async def test_stream_over_the_total_timeout_is_cut_with_an_error_event(
    broken_gateway: tuple[str, Process],
) -> None:
    started = asyncio.get_running_loop().time()
    status, raw = await ask(broken_gateway[0], "trickle", stream=True)
    elapsed = asyncio.get_running_loop().time() - started
    events = [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]
    assert status == 200
    assert json.loads(events[-1])["error"]["code"] == "upstream_total_timeout"
    assert elapsed < 5


@pytest.mark.parametrize("mode", list(ODD_EVENTS))
async def test_an_event_of_the_wrong_shape_mid_stream_ends_it_with_a_protocol_error(
    broken_gateway: tuple[str, Process], mode: str
) -> None:
    status, raw = await ask(broken_gateway[0], mode, stream=True)
    assert status == 200 and b"HTTP/1.1" not in raw
    events = [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "hi"
    error = json.loads(events[-1])["error"]
    assert error["type"] == "upstream_error" and "upstream stream event" in error["message"]
    assert b"[DONE]" not in events

    body = {"model": "bad", "stream": True, "max_tokens": 50,
            "messages": [{"role": "user", "content": mode}]}  # fmt: skip
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.post(broken_gateway[0] + "/v1/messages", json=body) as response,
    ):
        assert response.status == 200
        anthropic_raw = await response.read()
    last = anthropic_raw.rstrip().rsplit(b"\n\n", 1)[-1]
    assert last.startswith(b"event: error\n") and b"message_stop" not in anthropic_raw
    assert b"upstream stream event" in last


async def test_an_event_of_the_wrong_shape_first_is_a_502(
    broken_gateway: tuple[str, Process],
) -> None:
    status, raw = await ask(broken_gateway[0], "null-first", stream=True)
    assert status == 502
    error = json.loads(raw)["error"]
    assert error["type"] == "upstream_error" and "upstream stream event" in error["message"]


async def test_an_upstream_event_that_never_ends_fails_the_stream_at_the_size_limit(
    patient_gateway: tuple[str, Process],
) -> None:
    # Held whole until it ended, it took as much memory as the upstream cared to send (a GB
    # every few seconds on a fast link) until the gap limit ran out.
    started = asyncio.get_running_loop().time()
    status, raw = await ask(patient_gateway[0], "endless-event", stream=True)
    elapsed = asyncio.get_running_loop().time() - started
    assert status == 200
    events = [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "hi"
    error = json.loads(events[-1])["error"]
    assert error["type"] == "upstream_error"
    assert "upstream sent a stream event over 64 MiB" in error["message"]
    assert elapsed < 8  # not the 10 s gap limit


async def test_gateway_logged_no_traceback(broken_gateway: tuple[str, Process]) -> None:
    assert "Traceback" not in broken_gateway[1].output()


async def test_an_openai_upstreams_code_and_param_reach_the_openai_client(
    broken_gateway: tuple[str, Process],
) -> None:
    # The async client: the upstream answers from this test's event loop.
    client = openai.AsyncOpenAI(
        base_url=broken_gateway[0] + "/v1", api_key=CLIENT_KEY, max_retries=0
    )
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(
            model="bad", messages=[{"role": "user", "content": "coded-400"}]
        )
    assert (refused.value.code, refused.value.param) == ("context_length_exceeded", "messages")

    stream = await client.chat.completions.create(
        model="bad", messages=[{"role": "user", "content": "error-event"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as failed:
        async for chunk in stream:
            received.append(chunk)
    await client.close()
    assert received, "the first chunk came before the failure"
    assert "maximum context length" in failed.value.message
    assert (failed.value.code, failed.value.param) == ("context_length_exceeded", "messages")


async def test_a_large_event_in_many_reads_arrives_whole(
    broken_gateway: tuple[str, Process],
) -> None:
    # The middle of the event comes in reads without a line end; they are kept aside and
    # joined once (docs/architecture.md): the event must come out exactly as sent.
    status, raw = await ask(broken_gateway[0], "large-event", stream=True)
    assert status == 200
    events = [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    content = "".join(
        json.loads(event)["choices"][0]["delta"].get("content") or ""
        for event in events[:-1]
        if json.loads(event)["choices"]
    )
    assert content == "x" * (2 << 20)


@pytest.mark.parametrize("mode", list(PLAIN_ODD))
@pytest.mark.parametrize("route", ["/v1/messages", "/v1/responses"])
async def test_a_whole_answer_of_the_wrong_shape_is_a_502_in_the_clients_dialect(
    broken_gateway: tuple[str, Process], mode: str, route: str
) -> None:
    # Translated for another dialect, the answer is read field by field: a number for text
    # or an object for arguments is the upstream's protocol error, not a 500.
    if route == "/v1/messages":
        body: dict[str, object] = {
            "model": "bad", "max_tokens": 50, "messages": [{"role": "user", "content": mode}]
        }  # fmt: skip
    else:
        body = {"model": "bad", "input": [{"role": "user", "content": mode}]}
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.post(broken_gateway[0] + route, json=body) as response,
    ):
        assert response.status == 502
        answer = await response.json()
    if route == "/v1/messages":
        assert answer["type"] == "error" and answer["error"]["type"] == "api_error"
        message = answer["error"]["message"]
    else:
        message = answer["error"]["message"]
    assert "upstream choice is malformed" in message


@pytest.mark.parametrize("route", ["/v1/messages", "/v1/responses"])
async def test_a_created_that_is_no_number_is_a_502_in_the_clients_dialect(
    broken_gateway: tuple[str, Process], route: str
) -> None:
    # The answer read whole (translated for another dialect), not only for its usage.
    if route == "/v1/messages":
        body: dict[str, object] = {
            "model": "bad", "max_tokens": 50,
            "messages": [{"role": "user", "content": "bad-created"}],
        }  # fmt: skip
    else:
        body = {"model": "bad", "input": [{"role": "user", "content": "bad-created"}]}
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.post(broken_gateway[0] + route, json=body) as response,
    ):
        assert response.status == 502
        answer = await response.json()
    error = answer["error"]
    assert "'created' is not a number" in error["message"]


async def test_a_gemini_finish_said_twice_reaches_an_openai_client_once(
    broken_gateway: tuple[str, Process],
) -> None:
    url, _ = broken_gateway
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    stream = await client.chat.completions.create(
        model="gem", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = [chunk async for chunk in stream]
    finishes = [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason]
    assert finishes == ["stop"]
    assert "".join(c.delta.content or "" for chunk in chunks for c in chunk.choices) == "Hello"
    usage = [chunk.usage for chunk in chunks if chunk.usage is not None]
    assert len(usage) == 1 and not chunks[-1].choices  # one usage chunk, last, as OpenAI's
    assert (usage[0].prompt_tokens, usage[0].completion_tokens) == (5, 3)


async def test_a_client_that_leaves_after_the_head_pays_the_prompt_its_head_reported(
    broken_gateway: tuple[str, Process],
) -> None:
    # The client leaves while the gateway still holds the stream's head (nothing sent yet):
    # Anthropic read, and bills, the 100k tokens of the prompt message_start reports.
    url, _ = broken_gateway
    async with aiohttp.ClientSession(headers=AUTH) as admin:
        async with admin.post(url + "/admin/keys", json={"name": "head-leaver"}) as answer:
            key = await answer.json()
        budget = {"scope": "key", "scope_id": key["id"], "period": "day", "limit_usd": 50.0}
        async with admin.put(url + "/admin/budgets", json=budget) as answer:
            assert answer.status < 300
    body = {"model": "claude", "max_tokens": 5, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    headers = {"x-api-key": key["key"], "anthropic-version": "2023-06-01",
               "x-request-id": "t-head-leaver-" + key["id"][:8]}  # fmt: skip
    async with aiohttp.ClientSession() as client:
        with pytest.raises(asyncio.TimeoutError):
            async with client.post(
                url + "/v1/messages", json=body, headers=headers,
                timeout=aiohttp.ClientTimeout(total=0.3),
            ) as answer:  # fmt: skip
                await answer.read()
    record = await asyncio.to_thread(logged_row, url, headers["x-request-id"], AUTH)
    assert (record["status"], record["error_code"]) == (499, "client_disconnected")
    assert record["input_tokens"] == 100_000
    assert record["cost_micros"] == 1_000_010  # at $10 per 1M tokens, and its 1 output token
    path = f"/admin/budgets?scope=key&scope_id={key['id']}"
    async with aiohttp.ClientSession(headers=AUTH) as admin, admin.get(url + path) as answer:
        (row,) = (await answer.json())["data"]
    assert (row["reserved_usd"], row["spent_usd"]) == (0, pytest.approx(1.00001))


async def test_a_stream_cut_by_the_first_byte_limit_after_its_head_pays_the_prompt(
    broken_gateway: tuple[str, Process],
) -> None:
    # The gateway gives up on the first content (1 s) after message_start came: the prompt
    # was read and billed by then, as for a client that leaves.
    url, _ = broken_gateway
    request_id = f"t-head-stall-{time.time_ns()}"
    headers = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01",
               "x-request-id": request_id}  # fmt: skip
    body = {"model": "claude", "max_tokens": 5, "stream": True,
            "messages": [{"role": "user", "content": "stall"}]}  # fmt: skip
    async with (
        aiohttp.ClientSession() as client,
        client.post(url + "/v1/messages", json=body, headers=headers) as answer,
    ):
        assert answer.status == 504
        assert (await answer.json())["type"] == "error"
    record = await asyncio.to_thread(logged_row, url, request_id, AUTH)
    assert record["status"] == 504
    assert (record["input_tokens"], record["cost_micros"]) == (100_000, 1_000_010)
