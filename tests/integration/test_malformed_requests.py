"""Requests that are not HTTP aiohttp's parser reads, over a raw socket: a duplicated
``Content-Length``, ``Content-Length`` with ``Transfer-Encoding``, a header line over the
limit, too many headers. aiohttp answers them 400 itself, before any route; the gateway's
log says so in one line, not with the traceback of a failure of its own (an ERROR any
client could write into it at will).

Then bodies HTTP reads but the real APIs refuse: each answered as OpenAI or Anthropic
answers it, a 400 in the route's dialect naming the parameter, whichever family's
deployment serves (raw HTTP and the SDKs on the session's gateway)."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import httpx
import pytest

from tests.support import CLIENT_KEY, Process

BODY = b'{"model": "test-chat", "messages": [{"role": "user", "content": "hello"}]}'
HEAD = (
    f"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {CLIENT_KEY}"
    f"\r\nContent-Type: application/json\r\nContent-Length: {len(BODY)}\r\n"
).encode()
MALFORMED = {
    "duplicated-length": HEAD + b"Content-Length: 5\r\n\r\n" + BODY,
    "length-and-chunked": HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + BODY,
    "long-header": HEAD + b"X-Long: " + b"a" * 70_000 + b"\r\n\r\n" + BODY,
    "many-headers": HEAD + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n" + BODY,
}


async def _send(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


@pytest.mark.parametrize("kind", list(MALFORMED))
async def test_a_malformed_request_is_a_400_logged_without_a_traceback(
    gateway: tuple[str, Process], kind: str
) -> None:
    url, process = gateway
    before = len(process.output())
    answer = await _send(url, MALFORMED[kind])
    assert answer.startswith((b"HTTP/1.0 400 ", b"HTTP/1.1 400 "))
    await asyncio.sleep(0.2)  # the log line is written after the answer
    logged = process.output()[before:]
    assert "Traceback" not in logged
    assert "malformed request" in logged


# Bodies the real APIs refuse, answered as they answer them: a 400 in the route's dialect
# naming the parameter, before any upstream is called (the simulator takes them all).

_CHAT = "/v1/chat/completions"
_HELLO = [{"role": "user", "content": "hello"}]
_LOOK = {"type": "function", "function": {"name": "look", "parameters": {"type": "object"}}}
_CALLED = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{}"}}
    ],
}


def _post(url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    return httpx.post(url + path, json=body, headers=headers, timeout=10)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"stream": False, "stream_options": {"include_usage": True}}, "stream_options"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.5}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"messages": [{"content": "no role"}]}, "messages[0].role"),
        ({"temperature": "hot"}, "temperature"),
        ({"messages": [*_HELLO, {"role": "tool", "content": "72F"}]}, "messages[1].tool_call_id"),
        (
            {"messages": [*_HELLO, _CALLED, {"role": "tool", "content": "72F"}], "tools": [_LOOK]},
            "messages[2].tool_call_id",
        ),
    ],
)
def test_an_openai_body_the_api_refuses_is_a_400_naming_its_parameter(
    gateway_url: str, fields: dict[str, Any], param: str
) -> None:
    answer = _post(gateway_url, _CHAT, {"model": "test-chat", "messages": _HELLO, **fields})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_stream_options_with_stream_on_are_still_taken(gateway_url: str) -> None:
    body = {"model": "test-chat", "messages": _HELLO, "stream": True,
            "stream_options": {"include_usage": True}, "stop": ["a", "b", "c", "d"]}  # fmt: skip
    answer = _post(gateway_url, _CHAT, body)
    assert answer.status_code == 200 and '"usage":{' in answer.text


def test_openais_bounds_are_said_in_its_words_on_both_routes(gateway_url: str) -> None:
    answer = _post(gateway_url, _CHAT, {"model": "test-chat", "messages": _HELLO, "top_p": 2})
    assert answer.json()["error"] == {
        "message": "Invalid 'top_p': decimal above maximum value. Expected a value <= 1, "
        "but got 2 instead.",
        "type": "invalid_request_error",
        "param": "top_p",
        "code": "decimal_above_max_value",
    }
    body = {"model": "test-chat", "messages": _HELLO, "stop": list("abcde")}
    assert _post(gateway_url, _CHAT, body).json()["error"]["code"] == "array_above_max_length"
    for fields in ({"temperature": 3}, {"top_p": -1}):
        answer = _post(
            gateway_url, "/v1/responses", {"model": "test-chat", "input": "hi", **fields}
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["param"] == next(iter(fields))


def test_values_at_openais_bounds_are_taken(gateway_url: str) -> None:
    for fields in ({"temperature": 0, "top_p": 0}, {"temperature": 2, "top_p": 1}):
        body = {"model": "test-chat", "messages": _HELLO, **fields}
        answer = _post(gateway_url, _CHAT, body)
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("model", ["test-chat", "test-claude"])
@pytest.mark.parametrize("fields", [{"temperature": 1.5}, {"temperature": -0.1}, {"top_p": 1.5}])
def test_anthropics_sampling_ranges_hold_whichever_model_serves(
    claude: anthropic.Anthropic, model: str, fields: dict[str, Any]
) -> None:
    # Anthropic's API takes temperature and top_p from 0 to 1; an OpenAI deployment's wider
    # temperature range is no reason to take an Anthropic client's 1.5.
    with pytest.raises(anthropic.BadRequestError) as caught:
        # As older SDKs sent them (the current one no longer lists the fields).
        claude.messages.create(model=model, max_tokens=5, messages=_HELLO, extra_body=fields)
    body: Any = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert next(iter(fields)) in body["error"]["message"]


def test_anthropics_sampling_bounds_are_taken(claude: anthropic.Anthropic) -> None:
    for model in ("test-chat", "test-claude"):
        bounds = {"temperature": 1, "top_p": 0}
        claude.messages.create(model=model, max_tokens=5, messages=_HELLO, extra_body=bounds)


@pytest.mark.parametrize("model", ["test-chat", "test-claude"])
@pytest.mark.parametrize("content", ["", []])
def test_an_empty_message_is_refused_as_anthropic_does_but_for_a_final_assistant_turn(
    claude: anthropic.Anthropic, model: str, content: Any
) -> None:
    empty: Any = [{"role": "user", "content": content}]
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model=model, max_tokens=5, messages=empty)
    body: Any = caught.value.body
    assert body["error"]["type"] == "invalid_request_error"
    assert "messages[0].content" in body["error"]["message"]
    if model == "test-claude":  # (another family takes no prefilled answer at all)
        prefilled: Any = [*_HELLO, {"role": "assistant", "content": content}]
        claude.messages.create(model=model, max_tokens=5, messages=prefilled)
