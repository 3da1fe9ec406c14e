"""Requests that are not HTTP aiohttp's parser reads, over a raw socket: a duplicated
``Content-Length``, ``Content-Length`` with ``Transfer-Encoding``, a header line over the
limit, too many headers. aiohttp answers them 400 itself, before any route; the gateway's
log says so in one line, not with the traceback of a failure of its own (an ERROR any
client could write into it at will)."""

from __future__ import annotations

import asyncio

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
