"""``Expect: 100-continue`` on the model routes, over a raw socket.

A client that asks before sending its body (curl does for bodies over 1 MiB) is invited
only once its request may be served: a bad key or a ``Content-Length`` over the limit is
refused before the body is sent, and the connection then closes, since the body it
announced never comes. A request that may go on gets ``100 Continue`` and its answer.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.support import CLIENT_KEY

HELLO = json.dumps({"model": "test-chat", "messages": [{"role": "user", "content": "hello"}]})
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _head(path: str, key: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {key}\r\n"
        f"x-api-key: {key}\r\nanthropic-version: 2023-06-01\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()


async def _refused(url: str, head: bytes) -> bytes:
    """What the gateway sends for ``head`` (a body never sent), up to its closing the
    connection (a timeout fails the test: an invitation awaited a body)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


ROUTES = ["/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/embeddings"]


@pytest.mark.parametrize("path", ROUTES)
async def test_a_bad_key_is_refused_before_the_body_is_invited(gateway_url: str, path: str) -> None:
    answer = await _refused(gateway_url, _head(path, "tw-not-a-key-0123456789", len(HELLO)))
    assert not answer.startswith(CONTINUE)
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert b"Connection: close" in answer


@pytest.mark.parametrize("path", ROUTES)
async def test_a_body_over_the_limit_is_refused_before_it_is_invited(
    gateway_url: str, path: str
) -> None:
    answer = await _refused(gateway_url, _head(path, CLIENT_KEY, 1 << 40))
    assert not answer.startswith(CONTINUE)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in answer


async def test_a_request_that_may_go_on_is_invited_and_answered(gateway_url: str) -> None:
    host, port = gateway_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(_head("/v1/chat/completions", CLIENT_KEY, len(HELLO)))
        await writer.drain()
        invited = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert invited == CONTINUE
        writer.write(HELLO.encode())
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 10)
        assert status.startswith(b"HTTP/1.1 200 ")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        answer = json.loads(await asyncio.wait_for(reader.readexactly(length), 5))
        assert answer["choices"][0]["message"]["content"]
    finally:
        writer.close()
