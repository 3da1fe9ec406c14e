"""The upstream HTTP/1.1 client against real local servers: raw asyncio servers that write
exact bytes where a test needs an upstream to misbehave, aiohttp servers for plain answers."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
import socket
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.support import self_signed
from tollway.providers.http1 import (
    BadAnswer,
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
    HTTP1Client,
    HTTPFailure,
    UndecodableBody,
)

# --- servers ---------------------------------------------------------------------------


class RawServer:
    """A server on 127.0.0.1 whose ``handler`` writes exact bytes; it counts connections
    (accepted, open now, most open at once) and keeps every byte it received."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.accepted = 0
        self.open = 0
        self.most_open = 0
        self.ended = 0  # connections whose handler finished (the client closed, mostly)
        self.received = bytearray()
        self.requests: list[bytes] = []
        self.url = ""
        self.handlers: set[asyncio.Task[Any]] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            await self.handler(self, reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the test ended: the handler's work is over
        finally:
            self.handlers.discard(task)
            self.open -= 1
            self.ended += 1
            writer.close()


Handler = Callable[[RawServer, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: Handler, path: str = "/v1/chat") -> AsyncIterator[RawServer]:
    server = RawServer(handler)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}{path}"
    try:
        yield server
    finally:
        listener.close()
        # Handlers still holding a connection are stopped here, not left to the loop's end.
        for task in list(server.handlers):
            task.cancel()
        await asyncio.gather(*server.handlers, return_exceptions=True)


async def read_request(server: RawServer, reader: asyncio.StreamReader) -> bytes | None:
    """One request (head and Content-Length body), or None when the client closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        server.received += exc.partial
        return None
    except ConnectionError:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length)
    server.received += head + body
    server.requests.append(head + body)
    return head + body


def answer(body: bytes = b"ok", status: str = "200 OK", headers: str = "") -> bytes:
    """An HTTP/1.1 answer with a Content-Length."""
    head = f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


def answering(*replies: bytes) -> Handler:
    """A handler answering each request on a connection with the next of ``replies`` (the
    last one again when they run out), until the client closes."""

    async def handle(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        index = 0
        while await read_request(server, reader) is not None:
            writer.write(replies[min(index, len(replies) - 1)])
            index += 1
            await writer.drain()

    return handle


def numbered() -> Handler:
    """A keep-alive handler whose nth answer on a connection is ``answer-n``, and that holds
    the connection open until the client closes it."""

    async def handle(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        index = 0
        while await read_request(server, reader) is not None:
            index += 1
            writer.write(answer(f"answer-{index}".encode()))
            await writer.drain()

    return handle


@contextlib.asynccontextmanager
async def web_server(
    app: web.Application, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def until(predicate: Callable[[], bool], limit: float = 1.0) -> None:
    """Wait (briefly) for something a server or the client does on its own time."""
    async with asyncio.timeout(limit):
        # Polled: the counters belong to servers and the client, which signal nothing.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def call(
    client: HTTP1Client, url: str, body: bytes = b"{}", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    response = await client.post(url, body, headers or {}, 1.0)
    try:
        return response.status, await response.read()
    finally:
        response.release()


def run(test: Callable[[HTTP1Client], Coroutine[Any, Any, None]], **options: Any) -> None:
    """Run ``test`` on a fresh loop with a client built from ``options``, closed after."""

    async def main() -> None:
        client = HTTP1Client(**options)
        try:
            await test(client)
        finally:
            await client.close()

    asyncio.run(main())


# --- 1. keep-alive -----------------------------------------------------------------------


def test_sequential_calls_share_one_connection() -> None:
    async def check(client: HTTP1Client) -> None:
        async with raw_server(numbered()) as server:
            for index in range(1, 4):
                assert await call(client, server.url) == (200, f"answer-{index}".encode())
            assert server.accepted == 1

    run(check)


def test_sequential_calls_to_an_aiohttp_server_share_one_connection() -> None:
    peers: list[object] = []

    async def hello(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return web.json_response({"echo": (await request.read()).decode()})

    async def check(client: HTTP1Client) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat", hello)
        async with web_server(app) as port:
            for index in range(3):
                status, body = await call(
                    client, f"http://127.0.0.1:{port}/v1/chat", str(index).encode()
                )
                assert (status, body) == (200, b'{"echo": "%d"}' % index)
        assert len(peers) == 3
        assert len(set(peers)) == 1

    run(check)


@pytest.mark.parametrize(
    "reply",
    [
        answer(headers="Connection: close\r\n"),
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["connection-close", "http-1.0"],
)
def test_an_answer_that_does_not_keep_alive_is_not_reused(reply: bytes) -> None:
    async def check(client: HTTP1Client) -> None:
        # The server keeps its side open: only the client's reading of the answer decides.
        async with raw_server(answering(reply)) as server:
            assert await call(client, server.url) == (200, b"ok")
            assert await call(client, server.url) == (200, b"ok")
            assert server.accepted == 2

    run(check)


# --- 2. bodies -----------------------------------------------------------------------------

BIG = bytes(range(256)) * 400  # 100 KiB, more than one read


def _close_delimited() -> Handler:
    async def handle(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(server, reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + BIG[:1000])
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(BIG[1000:])
        await writer.drain()  # then the connection closes: the end of the body

    return handle


@pytest.mark.parametrize(
    "handler",
    [
        answering(answer(BIG)),
        answering(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunked(BIG[:10], BIG[10:5000], BIG[5000:])
        ),
        _close_delimited(),
    ],
    ids=["content-length", "chunked", "close-delimited"],
)
def test_a_body_is_read_whole(handler: Handler) -> None:
    async def check(client: HTTP1Client) -> None:
        async with raw_server(handler) as server:
            assert await call(client, server.url) == (200, BIG)

    run(check)


# --- 3. stale idle connections -----------------------------------------------------------


def test_a_connection_the_server_closed_while_idle_is_not_used_again() -> None:
    async def handle(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(server, reader)
        writer.write(answer(b"first" if server.accepted == 1 else b"second"))
        await writer.drain()  # then close, as an upstream's idle timeout does

    async def check(client: HTTP1Client) -> None:
        async with raw_server(handle) as server:
            assert await call(client, server.url) == (200, b"first")
            await until(lambda: server.ended == 1)
            await asyncio.sleep(0.02)  # the client's loop sees the close
            assert await call(client, server.url) == (200, b"second")
            assert server.accepted == 2

    run(check)


def test_an_idle_connection_older_than_keepalive_is_not_reused() -> None:
    async def check(client: HTTP1Client) -> None:
        async with raw_server(numbered()) as server:
            assert await call(client, server.url) == (200, b"answer-1")
            assert await call(client, server.url) == (200, b"answer-2")  # young: reused
            assert server.accepted == 1
            await asyncio.sleep(0.15)
            assert await call(client, server.url) == (200, b"answer-1")
            assert server.accepted == 2
            await until(lambda: server.ended == 1)  # the stale one was closed, not leaked

    run(check, keepalive=0.1)


def test_an_idle_connection_past_keepalive_is_closed_though_no_call_comes() -> None:
    # No later call looks at the pool: the client's own sweep closes the connection, as the
    # keep-alive option says, instead of holding it until the provider gives up on it.
    async def check(client: HTTP1Client) -> None:
        async with raw_server(numbered()) as server:
            assert await call(client, server.url) == (200, b"answer-1")
            await asyncio.sleep(0.05)
            assert server.ended == 0  # still young: kept for the next call
            started = time.monotonic()
            await until(lambda: server.ended == 1)
            assert time.monotonic() - started < 0.5

    run(check, keepalive=0.2)


# --- 4. calls abandoned mid-answer -------------------------------------------------------


def _half_then_whole() -> Handler:
    """The first connection's answer stops half-way (its rest comes later, so a reused
    connection would show it as leftover bytes); later connections answer whole."""

    async def handle(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if server.accepted == 1:
            await read_request(server, reader)
            writer.write(answer(b"0123456789")[:-6])
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.write(b"6789" + answer(b"stale"))
            await writer.drain()
            await reader.read()  # until the client closes
        else:
            await answering(answer(b"fresh"))(server, reader, writer)

    return handle


def test_a_call_cancelled_mid_answer_closes_its_connection() -> None:
    async def check(client: HTTP1Client) -> None:
        async with raw_server(_half_then_whole()) as server:
            response = await client.post(server.url, b"{}", {}, 1.0)
            reading = asyncio.create_task(response.read())
            await asyncio.sleep(0.02)
            reading.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reading
            response.release()
            await until(lambda: server.ended == 1)
            assert await call(client, server.url) == (200, b"fresh")
            await asyncio.sleep(0.1)  # the first answer's rest is due now
            assert await call(client, server.url) == (200, b"fresh")
            assert server.accepted == 2

    run(check)


def test_a_call_cancelled_before_its_head_closes_its_connection() -> None:
    async def handle(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(server, reader)
        if server.accepted == 1:
            await asyncio.sleep(0.1)
            writer.write(answer(b"late"))
        else:
            writer.write(answer(b"fresh"))
        await writer.drain()
        await reader.read()

    async def check(client: HTTP1Client) -> None:
        async with raw_server(handle) as server:
            posting = asyncio.create_task(client.post(server.url, b"{}", {}, 1.0))
            await until(lambda: len(server.requests) == 1)
            posting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await posting
            await until(lambda: server.ended == 1)
            assert await call(client, server.url) == (200, b"fresh")

    run(check)


def test_an_answer_released_before_its_body_is_whole_closes_its_connection() -> None:
    async def check(client: HTTP1Client) -> None:
        async with raw_server(_half_then_whole()) as server:
            response = await client.post(server.url, b"{}", {}, 1.0)
            assert await response.content.read(3) == b"012"
            response.release()
            await until(lambda: server.ended == 1)
            await asyncio.sleep(0.1)
            assert await call(client, server.url) == (200, b"fresh")
            assert server.accepted == 2

    run(check)


# --- 5. content encodings ------------------------------------------------------------------

TEXT = b"".join(b"line %d of a compressible answer\n" % index for index in range(300))


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


ENCODED = {
    "gzip": ("gzip", gzip.compress(TEXT)),
    "zlib-deflate": ("deflate", zlib.compress(TEXT)),
    "raw-deflate": ("deflate", _raw_deflate(TEXT)),
}


@pytest.mark.parametrize("kind", list(ENCODED))
def test_an_encoded_answer_read_whole_is_decoded(kind: str) -> None:
    encoding, data = ENCODED[kind]

    async def check(client: HTTP1Client) -> None:
        reply = answer(data, headers=f"Content-Encoding: {encoding}\r\n")
        async with raw_server(answering(reply)) as server:
            response = await client.post(server.url, b"{}", {}, 1.0)
            assert response.headers["content-encoding"] == encoding
            assert await response.read() == TEXT
            response.release()
            assert await call(client, server.url) == (200, TEXT)  # the connection was kept
            assert server.accepted == 1

    run(check)


def _in_pieces(encoding: str, data: bytes) -> Handler:
    """A chunked answer whose pieces are written apart, so they arrive in separate reads
    (the first piece is one byte: too short for a decoder to tell anything yet)."""
    cuts = [0, 1, 3, 40, 41, len(data) // 2, len(data)]

    async def handle(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(server, reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Encoding: %s\r\n\r\n" % encoding.encode()
        )
        for start, end in itertools.pairwise(cuts):
            writer.write(b"%x\r\n%s\r\n" % (end - start, data[start:end]))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    return handle


@pytest.mark.parametrize(
    "kind",
    [
        "gzip",
        "zlib-deflate",
        "raw-deflate",
    ],
)
def test_an_encoded_answer_streamed_in_pieces_is_decoded(kind: str) -> None:
    encoding, data = ENCODED[kind]

    async def check(client: HTTP1Client) -> None:
        async with raw_server(_in_pieces(encoding, data)) as server:
            response = await client.post(server.url, b"{}", {}, 1.0)
            pieces = [piece async for piece in response.content.iter_any()]
            response.release()
            assert len(pieces) > 1
            assert b"".join(pieces) == TEXT

    run(check)


@pytest.mark.parametrize(
    ("encoding", "data"),
    [("br", b"\x1b\x03\x00\xf8\xa5\x00\x0c"), ("gzip", b"this is not gzip at all")],
    ids=["brotli", "not-gzip"],
)
def test_an_undecodable_answer_raises_undecodable_body(encoding: str, data: bytes) -> None:
    async def check(client: HTTP1Client) -> None:
        reply = answer(data, headers=f"Content-Encoding: {encoding}\r\n")
        async with raw_server(answering(reply)) as server:
            response = await client.post(server.url, b"{}", {}, 1.0)
            assert response.status == 200
            with pytest.raises(UndecodableBody) as caught:
                await response.read()
            response.release()
            assert caught.value.encoding == encoding
            assert isinstance(caught.value, HTTPFailure)

    run(check)


def test_a_gzip_answer_cut_short_raises_undecodable_body() -> None:
    async def check(client: HTTP1Client) -> None:
        data = gzip.compress(TEXT)[:-20]
        reply = answer(data, headers="Content-Encoding: gzip\r\n")
        async with raw_server(answering(reply)) as server:
            response = await client.post(server.url, b"{}", {}, 1.0)
            with pytest.raises(UndecodableBody, match="ended early"):
                await response.read()
            response.release()

    run(check)


# --- 6. informational answers ------------------------------------------------------------

INFORMATIONAL = (
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
)


@pytest.mark.parametrize("apart", [False, True], ids=["one-write", "separate-writes"])
def test_informational_answers_before_the_answer_are_skipped(apart: bool) -> None:
    async def handle(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while await read_request(server, reader) is not None:
            for part in (*INFORMATIONAL, answer(b"final", "201 Created")):
                writer.write(part)
                if apart:
                    await writer.drain()
                    await asyncio.sleep(0.01)
            await writer.drain()

    async def check(client: HTTP1Client) -> None:
        async with raw_server(handle) as server:
            for _ in range(2):
                response = await client.post(server.url, b"{}", {}, 1.0)
                assert (response.status, response.reason) == (201, "Created")
                assert "link" not in response.headers
                assert await response.read() == b"final"
                response.release()
            assert server.accepted == 1

    run(check)


def test_a_reason_phrase_cut_across_reads_arrives_whole_and_is_not_kept_for_the_next() -> None:
    # The status line of the first answer comes in three writes; the second has no reason.
    async def handle(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(server, reader)
        for part in (b"HTTP/1.1 429 Too Ma", b"ny Req", b"uests\r\nContent-Length: 2\r\n\r\nno"):
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.01)
        await read_request(server, reader)
        writer.write(b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await read_request(server, reader)

    async def check(client: HTTP1Client) -> None:
        async with raw_server(handle) as server:
            for status, reason in ((429, "Too Many Requests"), (200, "")):
                response = await client.post(server.url, b"{}", {}, 1.0)
                assert (response.status, response.reason) == (status, reason)
                await response.read()
                response.release()
            assert server.accepted == 1

    run(check)


# --- 7. what is sent -----------------------------------------------------------------------


def test_the_parsed_urls_kept_are_bounded_however_many_distinct_urls_are_called() -> None:
    # A deployment's URL repeats, so its parsed form is kept; one whose query differs every
    # call (a signed URL, a key rotated often) must not make the memory grow for ever.
    async def check(client: HTTP1Client) -> None:
        async with raw_server(numbered()) as server:
            for index in range(600):
                status, _ = await call(client, f"{server.url}?n={index}")
                assert status == 200
            assert 0 < len(client._targets) <= 512

    run(check)


def _head_lines(request: bytes) -> list[str]:
    head, _, _ = request.partition(b"\r\n\r\n")
    return head.decode().split("\r\n")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Note", "a\r\nX-Injected: 1"),
        ("X-Note", "a\nX-Injected: 1"),
        ("X-Note", "a\rX-Injected: 1"),
        ("X-Note\r\nX-Injected", "1"),
        ("User-Agent", "mine\r\nX-Injected: 1"),
    ],
    ids=["crlf", "lf", "cr", "in-name", "in-replaced-default"],
)
def test_a_header_with_a_line_break_is_refused_before_anything_is_written(
    name: str, value: str
) -> None:
    sent: list[None] = []

    async def check(client: HTTP1Client) -> None:
        async with raw_server(answering(answer())) as server:
            with pytest.raises(ValueError, match="line break"):
                await client.post(
                    server.url, b"{}", {name: value}, 1.0, sent=lambda: sent.append(None)
                )
            await until(lambda: server.ended == server.accepted)
            assert bytes(server.received) == b""
            assert sent == []
            assert await call(client, server.url) == (200, b"ok")  # the client still works

    run(check)


def test_the_request_carries_host_length_defaults_and_the_callers_headers() -> None:
    async def check(client: HTTP1Client) -> None:
        async with raw_server(answering(answer()), path="/v1/chat?api-version=2") as server:
            body = b'{"model": "m", "messages": []}'
            headers = {"Authorization": "Bearer k", "Content-Type": "application/json"}
            assert await call(client, server.url, body, headers) == (200, b"ok")
        request = server.requests[0]
        lines = _head_lines(request)
        port = server.url.split(":")[2].split("/")[0]
        assert lines[0] == "POST /v1/chat?api-version=2 HTTP/1.1"
        assert sorted(lines[1:]) == sorted(
            [
                f"Host: 127.0.0.1:{port}",
                "Authorization: Bearer k",
                "Content-Type: application/json",
                "User-Agent: tollway",
                "Accept-Encoding: gzip, deflate",
                f"Content-Length: {len(body)}",
            ]
        )
        assert request.endswith(b"\r\n\r\n" + body)

    run(check)


def test_a_large_body_is_sent_whole() -> None:
    async def check(client: HTTP1Client) -> None:
        async with raw_server(answering(answer())) as server:
            body = bytes(range(256)) * 1024  # above the size written with the head
            assert await call(client, server.url, body) == (200, b"ok")
            assert server.requests[0].endswith(b"\r\n\r\n" + body)

    run(check)


@pytest.mark.parametrize(
    "name",
    [
        "User-Agent",
        "user-agent",
        "USER-AGENT",
        "user-Agent",
        "accept-encoding",
        "ACCEPT-ENCODING",
    ],
)
def test_a_callers_own_default_header_replaces_the_default(name: str) -> None:
    async def check(client: HTTP1Client) -> None:
        async with raw_server(answering(answer())) as server:
            assert await call(client, server.url, b"{}", {name: "mine"}) == (200, b"ok")
        lines = _head_lines(server.requests[0])
        same = [line for line in lines if line.lower().startswith(name.lower() + ":")]
        assert same == [f"{name}: mine"]

    run(check)


# --- 8. answer headers ---------------------------------------------------------------------


def test_repeated_answer_headers_are_combined_under_lower_case_names() -> None:
    async def check(client: HTTP1Client) -> None:
        reply = answer(
            b"{}",
            headers="Content-Type: Application/JSON; charset=utf-8\r\n"
            "X-RateLimit-Remaining: 7\r\nVia: 1.1 a\r\nvia: 1.1 b\r\nVIA: 1.1 c\r\n",
        )
        async with raw_server(answering(reply)) as server:
            response = await client.post(server.url, b"{}", {}, 1.0)
            await response.read()
            response.release()
        assert response.headers == {
            "content-type": "Application/JSON; charset=utf-8",
            "x-ratelimit-remaining": "7",
            "via": "1.1 a, 1.1 b, 1.1 c",
            "content-length": "2",
        }
        assert response.content_type == "application/json"

    run(check)


def test_an_answer_without_a_content_type_is_octet_stream() -> None:
    async def check(client: HTTP1Client) -> None:
        async with raw_server(answering(answer())) as server:
            response = await client.post(server.url, b"{}", {}, 1.0)
            response.release()
        assert response.content_type == "application/octet-stream"

    run(check)


# --- 9. broken answers ---------------------------------------------------------------------


def _writes_then_closes(data: bytes) -> Handler:
    async def handle(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(server, reader)
        writer.write(data)
        await writer.drain()

    return handle


def _writes_then_holds(data: bytes) -> Handler:
    async def handle(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(server, reader)
        writer.write(data)
        await writer.drain()
        await reader.read()

    return handle


LONG_HEAD = b"HTTP/1.1 200 OK\r\n" + b"".join(
    b"X-Filler-%d: %s\r\n" % (index, b"v" * 1000) for index in range(70)
)


@pytest.mark.parametrize(
    "handler",
    [
        _writes_then_holds(LONG_HEAD + b"Content-Length: 2\r\n\r\nok"),
        _writes_then_holds(b"SSH-2.0-OpenSSH_9.6\r\n"),
        _writes_then_holds(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n"),
        _writes_then_holds(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"),
    ],
    ids=["head-over-64k", "not-http", "bad-length", "upgrade"],
)
def test_an_answer_that_is_not_http_raises_bad_answer(handler: Handler) -> None:
    async def check(client: HTTP1Client) -> None:
        async with raw_server(handler) as server:
            async with asyncio.timeout(1):
                with pytest.raises(BadAnswer):
                    await client.post(server.url, b"{}", {}, 1.0)
            await until(lambda: server.ended == 1)  # and the connection was closed

    run(check)


def test_a_head_line_growing_past_64k_raises_bad_answer_without_waiting_for_its_end() -> None:
    async def check(client: HTTP1Client) -> None:
        unending = b"HTTP/1.1 200 OK\r\nX-Filler: " + b"v" * (200 * 1024)
        async with raw_server(_writes_then_holds(unending)) as server:
            async with asyncio.timeout(0.5):
                with pytest.raises(BadAnswer):
                    await client.post(server.url, b"{}", {}, 1.0)

    run(check)


def test_an_upstream_closing_before_answering_raises_disconnected() -> None:
    async def check(client: HTTP1Client) -> None:
        async with raw_server(_writes_then_closes(b"")) as server:
            with pytest.raises(Disconnected):
                await client.post(server.url, b"{}", {}, 1.0)

    run(check)


@pytest.mark.parametrize(
    "partial",
    [
        answer(b"0123456789")[:-4],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
    ],
    ids=["content-length", "chunked", "no-body-yet"],
)
def test_an_upstream_closing_mid_body_raises_disconnected_on_read(partial: bytes) -> None:
    async def check(client: HTTP1Client) -> None:
        async with raw_server(_writes_then_closes(partial)) as server:
            response = await client.post(server.url, b"{}", {}, 1.0)
            assert response.status == 200
            with pytest.raises(Disconnected):
                await response.read()
            response.release()

    run(check)


def test_pieces_before_a_disconnect_are_read_then_the_failure() -> None:
    async def check(client: HTTP1Client) -> None:
        partial = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        async with raw_server(_writes_then_closes(partial)) as server:
            response = await client.post(server.url, b"{}", {}, 1.0)
            pieces: list[bytes] = []
            with pytest.raises(Disconnected):
                async for piece in response.content.iter_any():
                    pieces.append(piece)
            response.release()
            assert b"".join(pieces) == b"hello"

    run(check)


# --- 10. connecting ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_refused_connection_raises_connect_failed() -> None:
    async def check(client: HTTP1Client) -> None:
        with pytest.raises(ConnectFailed) as caught:
            await client.post(f"http://127.0.0.1:{_free_port()}/", b"{}", {}, 1.0)
        assert not isinstance(caught.value, ConnectTimeout)

    run(check)


def test_a_url_that_is_not_http_raises_connect_failed() -> None:
    async def check(client: HTTP1Client) -> None:
        with pytest.raises(ConnectFailed):
            await client.post("ftp://127.0.0.1/x", b"{}", {}, 1.0)

    run(check)


def test_a_connect_past_its_limit_raises_connect_timeout() -> None:
    async def check(client: HTTP1Client) -> None:
        with contextlib.ExitStack() as stack:
            # A listener that never accepts, its backlog filled: the kernel then drops
            # new SYNs, so the next connect neither succeeds nor fails for a second.
            listener = stack.enter_context(socket.socket())
            listener.bind(("127.0.0.1", 0))
            listener.listen(0)
            port = listener.getsockname()[1]
            for _ in range(3):
                filler = stack.enter_context(socket.socket())
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
            await asyncio.sleep(0.05)
            started = time.monotonic()
            try:
                async with asyncio.timeout(1.5):
                    with pytest.raises(ConnectTimeout, match=r"0\.3s"):
                        await client.post(f"http://127.0.0.1:{port}/", b"{}", {}, 0.3)
            except TimeoutError:
                pytest.skip("the kernel completed the connect to a full backlog")
            assert 0.25 < time.monotonic() - started < 0.8

    run(check)


# --- 11. pool limits -----------------------------------------------------------------------


def _slow(delay: float, reply: bytes = b"") -> Handler:
    async def handle(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while await read_request(server, reader) is not None:
            await asyncio.sleep(delay)
            writer.write(reply or answer(b"slow"))
            await writer.drain()
            if b"close" in reply:
                return

    return handle


@pytest.mark.parametrize(
    ("options", "reply"),
    [
        ({"max_connections": 2}, b""),
        ({"max_connections": 100, "max_connections_per_host": 2}, b""),
        ({"max_connections": 2}, answer(b"slow", headers="Connection: close\r\n")),
        (
            {"max_connections": 0, "max_connections_per_host": 2},
            answer(b"slow", headers="Connection: close\r\n"),
        ),
    ],
    ids=["total", "per-host", "total-closing", "per-host-closing"],
)
def test_concurrent_calls_wait_for_the_connection_limit(
    options: dict[str, int], reply: bytes
) -> None:
    async def check(client: HTTP1Client) -> None:
        async with raw_server(_slow(0.05, reply)) as server:
            started = time.monotonic()
            answers = await asyncio.gather(*(call(client, server.url) for _ in range(6)))
            assert answers == [(200, b"slow")] * 6
            assert server.most_open <= 2
            assert server.accepted == (6 if reply else 2)
            assert time.monotonic() - started >= 0.14  # three rounds of two

    run(check, **options)


def test_an_idle_connection_to_one_host_is_closed_for_a_call_to_another() -> None:
    async def check(client: HTTP1Client) -> None:
        async with raw_server(numbered()) as first, raw_server(numbered()) as second:
            assert await call(client, first.url) == (200, b"answer-1")
            async with asyncio.timeout(0.5):
                assert await call(client, second.url) == (200, b"answer-1")
            await until(lambda: first.ended == 1)
            assert first.accepted == 1

    run(check, max_connections=1)


def test_a_host_at_its_own_limit_waits_even_with_idle_connections_elsewhere() -> None:
    async def check(client: HTTP1Client) -> None:
        async with raw_server(numbered()) as first, raw_server(_slow(0.1)) as second:
            assert await call(client, first.url) == (200, b"answer-1")
            busy = asyncio.create_task(call(client, second.url))
            await until(lambda: second.accepted == 1)
            waiting = asyncio.create_task(call(client, second.url))
            await asyncio.sleep(0.03)
            assert not waiting.done()
            assert await busy == (200, b"slow")
            assert await waiting == (200, b"slow")
            assert second.accepted == 1
            assert first.ended == 0  # its idle connection was not closed for nothing

    run(check, max_connections=2, max_connections_per_host=1)


# --- 12. flow control ----------------------------------------------------------------------

PATTERN = bytes(index % 251 for index in range(3 * 1024 * 1024))


def _streams_large() -> Handler:
    async def handle(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(server, reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(PATTERN), 64 * 1024):
            writer.write(chunked(PATTERN[start : start + 64 * 1024])[: -len(b"0\r\n\r\n")])
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    return handle


def test_a_large_answer_read_slowly_arrives_whole_and_in_order() -> None:
    async def check(client: HTTP1Client) -> None:
        async with raw_server(_streams_large()) as server:
            response = await client.post(server.url, b"{}", {}, 1.0)
            received = bytearray()
            while piece := await response.content.read(100_000):
                assert len(piece) <= 100_000
                received += piece
                await asyncio.sleep(0.002)
            response.release()
            assert len(received) == len(PATTERN)
            assert received == PATTERN

    run(check)


def test_a_large_answer_read_whole_arrives() -> None:
    async def check(client: HTTP1Client) -> None:
        async with raw_server(_streams_large()) as server:
            response = await client.post(server.url, b"{}", {}, 1.0)
            async with asyncio.timeout(0.5):
                assert await response.read() == PATTERN
            response.release()

    run(check)


# --- 13. TLS -------------------------------------------------------------------------------


async def _tls_hello(request: web.Request) -> web.Response:
    return web.Response(body=b"secret " + await request.read())


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
def test_an_https_upstream_answers_only_when_its_certificate_is_trusted(
    tmp_path: Path, trusted: bool
) -> None:
    cert_path, key_path = self_signed(tmp_path, "localhost")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_path, key_path)
    client_context = ssl.create_default_context(cafile=cert_path if trusted else None)

    async def check(client: HTTP1Client) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat", _tls_hello)
        async with web_server(app, server_context) as port:
            url = f"https://localhost:{port}/v1/chat"
            if trusted:
                assert await call(client, url, b"hi") == (200, b"secret hi")
                assert await call(client, url, b"again") == (200, b"secret again")
            else:
                with pytest.raises(ConnectFailed, match="certificate"):
                    await client.post(url, b"{}", {}, 1.0)

    run(check, ssl_context=client_context)


# --- 14. unasked-for bytes -----------------------------------------------------------------


def test_bytes_arriving_on_an_idle_connection_make_it_dropped() -> None:
    async def handle(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        first = server.accepted == 1
        while await read_request(server, reader) is not None:
            writer.write(answer(b"fresh" if not first else b"first"))
            await writer.drain()
            if first:
                await asyncio.sleep(0.02)
                writer.write(answer(b"unasked"))
                await writer.drain()

    async def check(client: HTTP1Client) -> None:
        async with raw_server(handle) as server:
            assert await call(client, server.url) == (200, b"first")
            await until(lambda: server.ended == 1)  # the client closed it on the bytes
            assert await call(client, server.url) == (200, b"fresh")
            assert server.accepted == 2

    run(check)


@pytest.mark.parametrize(
    "extra",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n",
        b"HTTP/1.1 2",
        b"garbage",
    ],
    ids=["unasked-head", "partial-head", "garbage"],
)
def test_bytes_after_an_answer_in_the_same_read_do_not_reach_the_next_call(
    extra: bytes,
) -> None:
    async def handle(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        first = server.accepted == 1
        index = 0
        while await read_request(server, reader) is not None:
            index += 1
            body = b"answer-%d" % index if first else b"fresh-%d" % index
            writer.write(answer(body) + (extra if first and index == 1 else b""))
            await writer.drain()

    async def check(client: HTTP1Client) -> None:
        async with raw_server(handle) as server:
            assert await call(client, server.url) == (200, b"answer-1")
            async with asyncio.timeout(0.5):
                status, body = await call(client, server.url)
            assert status == 200
            assert body in (b"answer-2", b"fresh-1")

    run(check)


# --- 15. the sent callback -----------------------------------------------------------------


def test_sent_is_called_once_when_the_request_is_written() -> None:
    gate = asyncio.Event()
    events: list[str] = []

    async def handle(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(server, reader)
        await gate.wait()
        writer.write(answer())
        await writer.drain()
        await reader.read()

    async def check(client: HTTP1Client) -> None:
        async with raw_server(handle) as server:
            posting = asyncio.create_task(
                client.post(server.url, b"{}", {}, 1.0, sent=lambda: events.append("sent"))
            )
            await until(lambda: len(server.requests) == 1)
            assert events == ["sent"]  # before any answer exists
            assert not posting.done()
            gate.set()
            response = await posting
            assert await response.read() == b"ok"
            response.release()
            assert events == ["sent"]

    run(check)
