"""The shared upstream HTTP client: one pooled session, timeouts, and the answer as JSON,
server-sent events or raw stream pieces.

What its failures become is in ``upstream_errors.py`` (what the upstream answered instead)
and ``transport_errors.py`` (the connection, a deadline); events are read by ``sse.py``.
aiohttp was chosen for the upstream client by measurement (docs/performance.md): on this
kind of machine it costs a tenth of httpx per request under load.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

import aiohttp
import orjson
from yarl import URL

from tollway.core.errors import InvalidRequest, UpstreamError
from tollway.core.types import UpstreamTimeouts
from tollway.providers.deadlines import OPENING, SENDING, Deadlines
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

_REMEMBERED_CONNECT_LIMITS = 64  # distinct connect limits whose aiohttp timeout is reused
_Item = TypeVar("_Item")


class SentRequest(aiohttp.ClientRequest):
    """aiohttp's request, telling the upstream call it is made for (``SENDING``) once its
    body is written: a call its client cut before then reached no provider."""

    async def write_bytes(self, *args: Any, **kwargs: Any) -> None:
        """Write the body (aiohttp's own), then mark the call's deadline ``sent``."""
        await super().write_bytes(*args, **kwargs)
        held = SENDING.get()
        deadline = None if held is None else held()
        if deadline is not None:
            deadline.sent = True


class UpstreamClient:
    """Sends provider requests over one pooled aiohttp session.

    aiohttp enforces only the connect timeout (it applies to new connections alone and costs
    nothing on a pooled one); the first-byte / gap and total limits are kept by ``Deadlines``,
    which is much cheaper per request than aiohttp's per-read timers.
    """

    def __init__(self, session: aiohttp.ClientSession, deadlines: Deadlines | None = None) -> None:
        self._session = session
        self._deadlines = deadlines or Deadlines()
        self._connect_timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _client_timeout(self, timeouts: UpstreamTimeouts) -> aiohttp.ClientTimeout:
        client_timeout = self._connect_timeouts.get(timeouts.connect)
        if client_timeout is None:
            client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect)
            # The configured limits are few; a model group's deadline cuts the limit to the
            # time left, a new value nearly every request, which must not be kept for ever.
            if len(self._connect_timeouts) < _REMEMBERED_CONNECT_LIMITS:
                self._connect_timeouts[timeouts.connect] = client_timeout
        return client_timeout

    async def close(self) -> None:
        """Stop watching deadlines (the session belongs to the caller)."""
        await self._deadlines.close()

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
            response = await self._session.post(
                url,
                data=data,
                headers=headers,
                timeout=self._client_timeout(timeouts),
                allow_redirects=False,  # see upstream_errors.status_error
            )
            try:
                if response.status >= 300:
                    raise await status_error(response, parse_error, secret, url)
                deadline.received()
                payload = await response.read()
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
        read: Callable[[aiohttp.StreamReader, Secrets, bool], AsyncIterator[_Item]],
        stream_types: tuple[str, ...],
    ) -> AsyncIterator[_Item]:
        data = encoded(body)
        deadline = self._deadlines.watch(timeouts)
        deadline.opening = OPENING.get()
        try:
            response = await self._session.post(
                url,
                data=data,
                headers=headers,
                timeout=self._client_timeout(timeouts),
                allow_redirects=False,  # see upstream_errors.status_error
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


# What labels a stream (aiohttp says application/octet-stream for an answer without a type).
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
    content: aiohttp.StreamReader,
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
