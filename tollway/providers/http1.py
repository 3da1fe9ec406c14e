"""The upstream HTTP/1.1 client: pooled keep-alive connections on asyncio transports, answers
read by llhttp (``httptools``, the parser uvicorn runs on).

Why not aiohttp's client, which the gateway used until session 23 (docs/performance.md):
its ``ClientSession`` costs about 300,000 instructions a request on the benchmark, about
half of the bare pass-through's whole request and more than all of Tollway's own work.
Most of it is generality the gateway does not use (cookies, redirects, auth, proxies,
tracing signals, a task per request body, per-request timers, URL normalisation). The
gateway sends one kind of request (a POST of a JSON body it already holds) to a few hosts,
so this client does only that: it writes the head and the body in one write, and llhttp
reads the answer in C. Time limits are not kept here: ``deadlines.py`` cancels a call whose
limit passed, and a cancelled call closes its connection.

What a call can raise is ``HTTPFailure`` and its kinds; ``transport_errors.py`` says what
each means to a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohappyeyeballs
import httptools
from yarl import URL

HIGH_WATER = 256 * 1024
"""Bytes of an answer held unread before the connection stops reading (a slow consumer)."""
MAX_HEAD = 64 * 1024
"""The most an answer's head (status line and headers) may take."""
_URL_MEMORY = 512
"""Distinct upstream URLs whose parsed form is kept (a deployment's URL repeats)."""
_SAFE_ENCODINGS = ("", "identity")


class HTTPFailure(Exception):
    """A call that failed on its way: connecting, sending, or reading the answer."""


class ConnectFailed(HTTPFailure):
    """The connection could not be made (refused, unresolvable, TLS)."""


class ConnectTimeout(ConnectFailed):
    """The connection was not made within the connect limit."""


class Disconnected(HTTPFailure):
    """The upstream closed the connection before its answer was whole."""


class BadAnswer(HTTPFailure):
    """An answer that is not HTTP this client reads."""


class UndecodableBody(BadAnswer):
    """An answer in a Content-Encoding this client cannot read (or not the one it claims)."""

    def __init__(self, encoding: str, reason: str) -> None:
        super().__init__(f"cannot decode Content-Encoding: {encoding} ({reason})")
        self.encoding = encoding


class Target:
    """A parsed upstream URL: where to connect and what to write in the request line."""

    __slots__ = ("host", "key", "path", "port", "server_hostname", "ssl", "start")

    def __init__(self, url: URL) -> None:
        scheme = url.scheme
        if scheme not in ("http", "https") or not url.raw_host:
            raise ConnectFailed(f"not an http(s) URL: {scheme}://{url.raw_host or ''}")
        self.host: str = url.raw_host
        self.port: int = url.port or (443 if scheme == "https" else 80)
        self.ssl = scheme == "https"
        self.server_hostname = url.host if self.ssl else None
        self.path = url.raw_path_qs or "/"
        self.key = (scheme, self.host, self.port)
        # The request line and Host header, the same for every call to this URL.
        self.start = f"POST {self.path} HTTP/1.1\r\nHost: {url.host_port_subcomponent}\r\n"


class Body:
    """An answer's body as it arrives: read whole, in pieces as they come, or up to a size."""

    __slots__ = ("_conn", "_error", "_pieces", "_size", "_waiter", "_whole", "done")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._pieces: deque[bytes] = deque()
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._whole = False  # a read of the whole body waits: the connection must not pause
        self.done = False  # the whole body has arrived

    def feed(self, piece: bytes) -> None:
        self._pieces.append(piece)
        self._size += len(piece)
        if self._size > HIGH_WATER and not self._whole:
            self._conn.pause()
        self._wake()

    def end(self) -> None:
        self.done = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        if not self.done and self._error is None:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        await waiter

    def _take(self, limit: int) -> bytes:
        pieces = self._pieces
        if limit < 0 or self._size <= limit:
            data = pieces.popleft() if len(pieces) == 1 else b"".join(pieces)
            pieces.clear()
        else:
            data = b"".join(pieces)
            rest = data[limit:]
            data = data[:limit]
            pieces.clear()
            pieces.append(rest)
        self._size -= len(data)
        if self._size <= HIGH_WATER // 4:
            self._conn.resume()
        return data

    def arrived(self) -> bytes | None:
        """The whole body when all of it has arrived (``None`` until then): read without a
        wait, as a short answer mostly is (it comes in the read that brought its head)."""
        if not self.done or self._error is not None:
            return None
        return self._take(-1) if self._pieces else b""

    async def read(self, limit: int = -1, *, whole: bool | None = None) -> bytes:
        """Up to ``limit`` bytes of what has arrived (``b""`` at the end); ``-1``: the rest of
        the body, waiting for all of it."""
        whole = limit < 0 if whole is None else whole
        while True:
            if self._error is not None:
                if whole or not self._pieces:
                    raise self._error
                return self._take(limit)  # what came before the failure, then the failure
            if self.done:
                return self._take(limit) if self._pieces else b""
            if self._pieces and not whole:
                return self._take(limit)
            if whole and not self._whole:
                self._whole = True
                self._conn.resume()  # paused by an earlier piece: all of it is wanted now
            await self._wait()

    async def iter_any(self) -> AsyncIterator[bytes]:
        """The body in the pieces it arrives in."""
        while True:
            piece = await self.read(-1, whole=False)
            if not piece:
                return
            yield piece


class Response:
    """An answer's head (status, reason, headers with lower-case names) and its body."""

    __slots__ = ("_conn", "content", "headers", "reason", "status")

    def __init__(self, conn: Connection, status: int, reason: str, headers: dict[str, str]):
        self._conn: Connection | None = conn
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content = Body(conn)

    @property
    def content_type(self) -> str:
        """The media type, lower case, without parameters (``application/octet-stream``
        when the answer names none, as HTTP says to assume)."""
        value = self.headers.get("content-type")
        if not value:
            return "application/octet-stream"
        return value.partition(";")[0].strip().lower()

    async def read(self) -> bytes:
        """The whole body."""
        content = self.content
        whole = content.arrived()
        return whole if whole is not None else await content.read()

    def release(self) -> None:
        """Done with the answer: its connection goes back to the pool if the answer was read
        whole and may be kept, else it is closed."""
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.finished(self.content.done)


class Connection(asyncio.Protocol):
    """One connection to an upstream, carrying one call at a time."""

    def __init__(self, pool: Pool, key: tuple[str, str, int]) -> None:
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self.key = key
        self.transport: asyncio.Transport | None = None
        self._parser = parser = httptools.HttpResponseParser(self)
        # As lenient as aiohttp's client was: a bare LF ending a line, a header value with
        # control bytes, spaces after a chunk's size (servers that send them do exist).
        parser.set_dangerous_leniencies(
            lenient_headers=True,
            lenient_optional_cr_before_lf=True,
            lenient_spaces_after_chunk_size=True,
        )
        self._head: asyncio.Future[Response] | None = None
        self._response: Response | None = None
        self._reason = b""
        self._headers: dict[str, str] = {}
        self._head_size = 0
        self._head_bytes = 0  # bytes received while the answer's head was incomplete
        self._informational = False
        self._until_close = False  # a body without a length: it ends when the connection does
        self._decoder: Any = None
        self._encoding = ""
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        self._write_paused = False
        self.closed = False
        self.idle_since = 0.0
        self.keep = False  # the last answer allows the connection to be used again

    # --- the asyncio protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._head is None and self._response is None:
            self.close()  # bytes no call asked for: the connection cannot be trusted again
            return
        try:
            if self._response is None:  # the head is still coming
                self._head_bytes += len(data)
                self._parser.feed_data(data)
                if self._response is None and self._head_bytes > MAX_HEAD:
                    # llhttp hands a header over only once its line ends: one that never
                    # ends would be held whole.
                    self._failed(BadAnswer(f"the answer's head is larger than {MAX_HEAD} bytes"))
            else:
                self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._failed(BadAnswer("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, HTTPFailure):
                self._failed(cause)
            else:
                self._failed(BadAnswer(f"unreadable answer: {exc}"))

    def eof_received(self) -> bool:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self._pool.lost(self)
        response = self._response
        if response is not None and not response.content.done:
            if self._until_close and exc is None:
                self._finish_body()
                response.content.end()
            else:
                response.content.fail(Disconnected("the upstream closed the connection mid-answer"))
        elif self._head is not None and not self._head.done():
            said = f": {exc}" if exc is not None else ""
            self._head.set_exception(
                Disconnected(f"the upstream closed the connection before answering{said}")
            )
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_exception(Disconnected("the upstream closed the connection"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drained = self._drained
        if drained is not None:
            self._drained = None
            if not drained.done():
                drained.set_result(None)

    # --- llhttp's callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._head is None:
            # Bytes after the answer (in its last read or later): were the connection used
            # again, the next call would be answered by them.
            raise BadAnswer("an answer no request asked for")

    def on_status(self, reason: bytes) -> None:
        self._reason += reason  # in pieces when the status line is cut across reads

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > MAX_HEAD:
            raise BadAnswer(f"the answer's head is larger than {MAX_HEAD} bytes")
        key = name.decode("latin-1").lower()
        text = value.decode("utf-8", "replace")
        held = self._headers.get(key)
        self._headers[key] = text if held is None else f"{held}, {text}"

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        headers = self._headers
        reason = self._reason.decode("utf-8", "replace")
        self._headers = {}
        self._reason = b""
        self._head_size = 0
        if 100 <= status < 200:
            self._informational = True  # 100 Continue, 103 Early Hints: the answer follows
            return
        self._until_close = (
            "content-length" not in headers
            and "transfer-encoding" not in headers
            and status not in (204, 304)
        )
        encoding = headers.get("content-encoding", "").strip().lower()
        self._encoding = encoding
        self._decoder = None if encoding in _SAFE_ENCODINGS else _decoder(encoding)
        head = self._head
        if head is None:
            raise BadAnswer("an answer no request asked for")
        self._head = None
        response = self._response = Response(self, status, reason, headers)
        if not head.done():
            head.set_result(response)

    def on_body(self, body: bytes) -> None:
        response = self._response
        if response is None:
            return
        decoder = self._decoder
        if decoder is not None:
            body = self._decode(decoder, body)
            if not body:
                return
        response.content.feed(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        response = self._response
        if response is None:
            return
        self.keep = self._parser.should_keep_alive()
        self._finish_body()
        response.content.end()

    # --- calls -------------------------------------------------------------------------

    def _decode(self, decoder: Any, body: bytes) -> bytes:
        if decoder is _UNREADABLE:
            raise UndecodableBody(self._encoding, "not an encoding this client reads")
        try:
            return bytes(decoder.decompress(body))
        except zlib.error as exc:
            raise UndecodableBody(self._encoding, str(exc)) from None

    def _finish_body(self) -> None:
        decoder = self._decoder
        response = self._response
        if decoder is None or decoder is _UNREADABLE or response is None:
            return
        self._decoder = None
        try:
            rest = decoder.flush()
        except zlib.error as exc:
            response.content.fail(UndecodableBody(self._encoding, str(exc)))
            return
        if rest:
            response.content.feed(rest)
        if not decoder.eof and decoder.started:
            response.content.fail(UndecodableBody(self._encoding, "the body ended early"))

    def _failed(self, error: HTTPFailure) -> None:
        response = self._response
        if response is not None:
            response.content.fail(error)
        elif self._head is not None and not self._head.done():
            self._head.set_exception(error)
        self.close()

    def send(
        self, start: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[asyncio.Future[Response], asyncio.Future[None] | None]:
        """Write a request: its start (request line and Host), ``headers`` and ``body``.

        Returns the answer's head to come, and what to await before the request counts as
        written when the connection's buffer is full (a large body to a slow reader), else
        ``None``: a plain call makes no coroutine for the write."""
        transport = self.transport
        if transport is None or transport.is_closing():
            raise Disconnected("the upstream closed the connection before the request")
        lines = [start]
        agent = encoding = True  # the defaults, until the caller's headers set them
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n")
            lower = name.lower()
            if lower == "user-agent":
                agent = False
            elif lower == "accept-encoding":
                encoding = False
        if agent:
            lines.append(_USER_AGENT)
        if encoding:
            lines.append(_ACCEPT_ENCODING)
        count = len(lines) + 3  # the start is two lines; Content-Length and the blank line
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        head = "".join(lines)
        # One line a header and none within a value (no header a caller did not mean).
        if head.count("\n") != count or head.count("\r") != count:
            raise ValueError("a request header holds a line break")
        loop = self._loop
        answer = self._head = loop.create_future()
        self._response = None
        self._head_bytes = 0
        self.keep = False
        if len(body) < 65536:
            transport.write(head.encode() + body)  # one write, one segment
        else:
            transport.write(head.encode())  # not copied into one: a large body goes as it is
            transport.write(body)
        if self._write_paused:
            drained = self._drained = loop.create_future()
            return answer, drained
        return answer, None

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def finished(self, whole: bool) -> None:
        """The caller is done with the answer (``whole``: it arrived complete)."""
        response = self._response
        self._response = None
        if whole and self.keep and not self.closed and response is not None:
            self._pool.release(self)
        else:
            self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.closed = True


_USER_AGENT = "User-Agent: tollway\r\n"
_ACCEPT_ENCODING = "Accept-Encoding: gzip, deflate\r\n"


class _Unreadable:
    """The decoder of an encoding this client does not read."""


_UNREADABLE = _Unreadable()


class _Decoder:
    """gzip or deflate, decoded as the body arrives. "deflate" is zlib-wrapped as the standard
    says, or raw as some servers send it: its first two bytes tell which."""

    __slots__ = ("_held", "_inner", "started")

    def __init__(self, gzip: bool) -> None:
        self._inner: Any = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
        self._held = b""
        self.started = False  # some of the body came (an empty body is no encoded body)

    def decompress(self, data: bytes) -> bytes:
        self.started = True
        if self._inner is None:
            data = self._held + data
            if len(data) < 2:
                self._held = data
                return b""
            self._held = b""
            first, second = data[0], data[1]
            wrapped = first & 0x0F == 8 and ((first << 8) | second) % 31 == 0
            self._inner = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        return bytes(self._inner.decompress(data))

    def flush(self) -> bytes:
        if self._inner is None:  # a body of one byte
            self._inner = zlib.decompressobj(-zlib.MAX_WBITS)
            return bytes(self._inner.decompress(self._held)) + bytes(self._inner.flush())
        return bytes(self._inner.flush())

    @property
    def eof(self) -> bool:
        return self._inner is not None and bool(self._inner.eof)


def _decoder(encoding: str) -> Any:
    if encoding in ("gzip", "x-gzip"):
        return _Decoder(gzip=True)
    if encoding == "deflate":
        return _Decoder(gzip=False)
    return _UNREADABLE


class Pool:
    """The connections to every upstream: idle ones by host, and the limits on opening more
    (``limit`` in all, ``per_host`` to one host; 0 is none)."""

    def __init__(self, limit: int, per_host: int, keepalive: float) -> None:
        self._limit = limit
        self._per_host = per_host
        self._keepalive = keepalive
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._open = 0
        self._open_by_host: dict[tuple[str, str, int], int] = {}
        self._members: set[Connection] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def take(self, key: tuple[str, str, int], now: float) -> Connection | None:
        """An idle connection to ``key`` still fit for use, if any."""
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._keepalive:
                return conn
            conn.close()
        return None

    def may_open(self, key: tuple[str, str, int]) -> bool:
        if self._limit and self._open >= self._limit:
            return False
        return not self._per_host or self._open_by_host.get(key, 0) < self._per_host

    def evict(self, key: tuple[str, str, int]) -> bool:
        """Close the longest idle connection to another host than ``key``, making room under
        ``limit`` (idle connections to one host must not keep calls to others waiting)."""
        if self._per_host and self._open_by_host.get(key, 0) >= self._per_host:
            return False  # the host's own limit: only a call to it ending makes room
        oldest: Connection | None = None
        for other, idle in self._idle.items():
            if other != key and idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is None:
            return False
        self._idle[oldest.key].remove(oldest)
        self.lost(oldest)
        oldest.close()
        return True

    def opened(self, conn: Connection) -> None:
        self._open += 1
        self._open_by_host[conn.key] = self._open_by_host.get(conn.key, 0) + 1
        self._members.add(conn)

    def lost(self, conn: Connection) -> None:
        """A connection closed: it no longer counts against the limits."""
        if conn in self._members:
            self._members.discard(conn)
            self._open -= 1
            left = self._open_by_host[conn.key] - 1
            if left:
                self._open_by_host[conn.key] = left
            else:
                del self._open_by_host[conn.key]
            self._wake()

    def release(self, conn: Connection) -> None:
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        now = loop.time()
        conn.idle_since = now
        self._idle.setdefault(conn.key, []).append(conn)
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweeping(), name="tollway-upstream-idle")
        self._wake()

    async def _sweeping(self) -> None:
        """Close idle connections past their keep-alive while no call comes to look at them
        (within one and a half ``keepalive``): one wake-up a half-period, not a timer a call."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(self._keepalive / 2, 0.05))
            self._sweep(loop.time())

    def _sweep(self, now: float) -> None:
        for idle in self._idle.values():
            stale = [c for c in idle if c.closed or now - c.idle_since >= self._keepalive]
            for conn in stale:
                idle.remove(conn)
                conn.close()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def wait(self) -> None:
        """Until a connection is released or closed (the limits may allow one then)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # pass the turn on
            raise

    async def close(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        for conn in list(self._members):
            conn.close()
        self._idle.clear()


class HTTP1Client:
    """POSTs request bodies to upstreams over pooled HTTP/1.1 connections."""

    def __init__(
        self,
        max_connections: int = 1000,
        max_connections_per_host: int = 0,
        keepalive: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._pool = Pool(max_connections, max_connections_per_host, keepalive)
        self._ssl = ssl_context
        self._targets: dict[str | URL, Target] = {}

    def target(self, url: str | URL) -> Target:
        """``url`` parsed (a ``URL`` is sent as it is, unnormalised: signed URLs)."""
        target = self._targets.get(url)
        if target is None:
            target = Target(url if isinstance(url, URL) else URL(url))
            if len(self._targets) >= _URL_MEMORY:
                self._targets.clear()
            self._targets[url] = target
        return target

    async def post(
        self,
        url: str | URL,
        body: bytes,
        headers: Mapping[str, str],
        connect_timeout: float | None,
        sent: Callable[[], None] | None = None,
    ) -> Response:
        """Send ``body`` and return the answer's head; ``sent`` is called once the request
        is written. The caller must ``release`` the response."""
        target = self.target(url)
        conn = await self._connection(target, connect_timeout)
        try:
            answer, drained = conn.send(target.start, headers, body)
            if drained is not None:
                await drained
            if sent is not None:
                sent()
            return await answer
        except BaseException:
            conn.close()
            raise

    async def _connection(self, target: Target, connect_timeout: float | None) -> Connection:
        pool = self._pool
        loop = asyncio.get_running_loop()
        while True:
            conn = pool.take(target.key, loop.time())
            if conn is not None:
                return conn
            if pool.may_open(target.key):
                break
            if not pool.evict(target.key):
                await pool.wait()
        conn = Connection(pool, target.key)
        pool.opened(conn)  # counted while it opens, so the limits hold
        try:
            async with asyncio.timeout(connect_timeout):
                addresses = await loop.getaddrinfo(
                    target.host, target.port, type=socket.SOCK_STREAM
                )
                # Happy eyeballs (RFC 8305): a host whose IPv6 route is broken is reached
                # over IPv4 after a quarter of a second, not after the IPv6 attempt fails.
                sock = await aiohappyeyeballs.start_connection(
                    addresses, happy_eyeballs_delay=0.25, interleave=1, loop=loop
                )
                try:
                    await loop.create_connection(
                        lambda: conn,
                        sock=sock,
                        ssl=self._ssl_context() if target.ssl else None,
                        server_hostname=target.server_hostname,
                    )
                except BaseException:
                    sock.close()
                    raise
        except BaseException as exc:
            pool.lost(conn)
            conn.close()
            where = f"{target.host}:{target.port}"
            if isinstance(exc, TimeoutError):  # before OSError, of which it is one
                raise ConnectTimeout(
                    f"no connection to {where} within {connect_timeout:g}s"
                ) from None
            if isinstance(exc, OSError):
                raise ConnectFailed(f"cannot connect to {where}: {exc}") from None
            raise
        return conn

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def close(self) -> None:
        """Close every connection."""
        await self._pool.close()
