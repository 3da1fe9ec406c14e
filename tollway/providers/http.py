"""The provider calls: a JSON body POSTed over the pooled HTTP/1.1 client (``http1.py``),
time limits, and the answer as JSON, server-sent events or raw stream pieces.

What its failures become is in ``upstream_errors.py`` (what the upstream answered instead)
and ``transport_errors.py`` (the connection, a deadline); events are read by ``sse.py``.
Why the gateway has a client of its own, not aiohttp's or httpx's: docs/performance.md
("Session 23", measured on the benchmark).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

import orjson
from yarl import URL

from tollway.core.errors import InvalidRequest, UpstreamError
from tollway.core.types import UpstreamTimeouts
from tollway.providers.deadlines import OPENING, Deadlines
from tollway.providers.http1 import Body, HTTP1Client
from tollway.providers.masking import Secrets
from tollway.providers.sse import SSEvent, read_events
from tollway.providers.transport_errors import deadline_error, transport_error
from tollway.providers.upstream_errors import (
    BOM,
    ErrorParser,
    invalid_json,
    status_error,
    whole_body_error,
)

_Item = TypeVar("_Item")


class UpstreamClient:
    """Sends provider requests over the pooled HTTP/1.1 client (``http1.py``).

    The first-byte / gap and total limits are kept by ``Deadlines``, which is much cheaper
    per request than a timer per read; the connect limit is the client's own.
    """

    def __init__(self, http: HTTP1Client, deadlines: Deadlines | None = None) -> None:
        self._http = http
        self._deadlines = deadlines or Deadlines()

    async def close(self) -> None:
        """Stop watching deadlines and close the connections."""
        await self._deadlines.close()
        await self._http.close()

    async def post_json(
        self,
        url: str | URL,
        body: Any,
        headers: Mapping[str, str],
        timeouts: UpstreamTimeouts,
        parse_error: ErrorParser,
        secret: Secrets = None,
    ) -> Any:
        """POST a JSON body (``bytes``: already encoded) and return the parsed JSON answer.

        Upstream errors are raised. A ``URL`` is sent as it is, unnormalised (signed URLs).
        """
        _, parsed = await self.post_json_body(url, body, headers, timeouts, parse_error, secret)
        return parsed

    async def post_json_body(
        self,
        url: str | URL,
        body: Any,
        headers: Mapping[str, str],
        timeouts: UpstreamTimeouts,
        parse_error: ErrorParser,
        secret: Secrets = None,
        parse: Callable[[bytes], Any] = orjson.loads,
    ) -> tuple[bytes, Any]:
        """``post_json``, returning the answer's bytes as received with the parsed JSON
        (``parse``: what reads it; a ``ValueError`` from it is the upstream's invalid JSON)."""
        data = encoded(body)
        deadline = self._deadlines.watch(timeouts)
        try:
            response = await self._http.post(
                url, data, headers, timeouts.connect, deadline.mark_sent
            )
            try:
                if response.status >= 300:
                    raise await status_error(response, parse_error, secret, url)
                deadline.received()
                payload = response.content.arrived()  # mostly whole by now: no wait
                if payload is None:
                    payload = await response.content.read()
            finally:
                response.release()
        except UpstreamError:
            raise
        except asyncio.CancelledError:
            if deadline.timed_out():
                raise deadline_error(deadline, timeouts, url) from None
            raise
        except Exception as exc:
            raise transport_error(exc, url) from None
        finally:
            self._deadlines.forget(deadline)
        try:
            return payload, parse(payload)
        except ValueError:  # orjson's and msgspec's decode errors
            if payload.startswith(BOM):  # looked for only here: no cost to a plain answer
                return self._unmarked(payload[len(BOM) :], parse, url, secret)
            raise invalid_json(url, payload, secret) from None

    @staticmethod
    def _unmarked(
        payload: bytes, parse: Callable[[bytes], Any], url: str | URL, secret: Secrets
    ) -> tuple[bytes, Any]:
        """An answer that began with a byte order mark, read (and sent on) without it."""
        try:
            return payload, parse(payload)
        except ValueError:
            raise invalid_json(url, payload, secret) from None

    def post_stream(
        self,
        url: str | URL,
        body: Any,
        headers: Mapping[str, str],
        timeouts: UpstreamTimeouts,
        parse_error: ErrorParser,
        secret: Secrets = None,
    ) -> AsyncIterator[SSEvent]:
        """POST a JSON body and yield the server-sent events of the answer as they arrive."""
        return self._stream(
            url, body, headers, timeouts, parse_error, secret, read_events, _SSE_TYPES
        )

    def post_bytes_stream(
        self,
        url: str | URL,
        body: Any,
        headers: Mapping[str, str],
        timeouts: UpstreamTimeouts,
        parse_error: ErrorParser,
        secret: Secrets = None,
    ) -> AsyncIterator[bytes]:
        """POST a JSON body and yield the raw answer body in pieces as they arrive.

        For binary stream framings (AWS event streams); timeouts and errors as ``post_stream``.
        """
        read = functools.partial(_read_raw, parse_error=parse_error)
        return self._stream(url, body, headers, timeouts, parse_error, secret, read, _RAW_TYPES)

    async def _stream(
        self,
        url: str | URL,
        body: Any,
        headers: Mapping[str, str],
        timeouts: UpstreamTimeouts,
        parse_error: ErrorParser,
        secret: Secrets,
        read: Callable[[Body, Secrets, bool], AsyncIterator[_Item]],
        stream_types: tuple[str, ...],
    ) -> AsyncIterator[_Item]:
        data = encoded(body)
        deadline = self._deadlines.watch(timeouts)
        deadline.opening = OPENING.get()
        try:
            response = await self._http.post(
                url, data, headers, timeouts.connect, deadline.mark_sent
            )
            try:
                if response.status >= 300:
                    raise await status_error(response, parse_error, secret, url)
                deadline.received()
                # Not labelled a stream (a JSON error, a proxy's HTML page, with a 200)?
                labelled = response.content_type in stream_types
                async for event in read(response.content, secret, not labelled):
                    # The consumer's own awaits (e.g. writing to its client) are not ours to
                    # time, nor to cancel: the watch pauses while it holds the event.
                    deadline.pause()
                    yield event
                    if not deadline.resume():
                        raise deadline_error(
                            deadline, timeouts, url, "total", client_held=deadline.client_held
                        )
            finally:
                response.release()
        except UpstreamError:
            raise
        except asyncio.CancelledError:
            if deadline.timed_out():
                raise deadline_error(deadline, timeouts, url, mid_stream=deadline.begun) from None
            raise
        except Exception as exc:
            raise transport_error(exc, url) from None
        finally:
            self._deadlines.forget(deadline)


# What labels a stream (an answer without a type is application/octet-stream).
_SSE_TYPES = ("text/event-stream", "application/octet-stream")
_RAW_TYPES = ("application/vnd.amazon.eventstream", "application/octet-stream")


def encoded(body: Any) -> bytes:
    """The JSON of an upstream body; one that cannot be written is the client's request's
    fault (a 400 before any call, never a failed attempt that counts against a deployment).

    Bytes are a body already encoded, e.g. because a signature covers its exact bytes.
    """
    if isinstance(body, bytes):
        return body
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError as exc:
        raise InvalidRequest(f"The request cannot be sent upstream as JSON: {exc}.") from None


async def _read_raw(
    content: Body,
    secret: Secrets,
    unlabelled: bool = False,
    *,
    parse_error: ErrorParser,
) -> AsyncIterator[bytes]:
    """The body's pieces as they arrive; one not labelled a binary stream that begins as JSON
    or HTML (no AWS event-stream message can: its first byte is its length's highest) is
    read whole and raised as what it says (``whole_body_error``)."""
    # A key may be cut across two pieces: the framing's decoder masks it in whole messages
    # (bedrock.py, for AWS event streams).
    first = unlabelled
    async for piece in content.iter_any():
        if first and piece.lstrip(BOM + b" \t\r\n")[:1] in (b"{", b"[", b"<"):
            raise await whole_body_error(content, piece, secret, parse_error)
        first = False
        yield piece
