"""The shared upstream HTTP client: timeouts, error mapping, server-sent events and raw streams.

aiohttp was chosen for the upstream client by measurement (docs/performance.md): on this
kind of machine it costs a tenth of httpx per request under load.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import html
import math
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson
from aiohttp.http_exceptions import ContentEncodingError
from yarl import URL

from tollway.core.errors import (
    ClientDisconnected,
    GatewayError,
    InvalidRequest,
    UpstreamError,
    UpstreamErrorBody,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from tollway.core.types import UpstreamTimeouts
from tollway.providers.deadlines import OPENING, SENDING, Deadline, Deadlines, Phase

ErrorParser = Callable[[Any], UpstreamErrorBody]
"""Reads an upstream error body (parsed JSON, else its text)."""

Secrets = str | tuple[str, ...] | None
"""What a call's credential is made of (a key; an AWS key id, secret and session token),
masked in the upstream's errors wherever the upstream quotes it."""

_MAX_ERROR_BODY = 64 * 1024
MAX_EVENT_BYTES = 64 * 1024 * 1024
"""The largest server-sent event read from an upstream (a Responses stream's completed
response with its generated images is a few MB): beyond it the stream fails rather than
the gateway holding all an upstream sends without ever ending an event."""
BOM = b"\xef\xbb\xbf"
"""UTF-8's byte order mark: a stream or a JSON body may begin with it, and the SSE spec says
a reader ignores it there (JSON readers such as orjson refuse it)."""
_REMEMBERED_CONNECT_LIMITS = 64  # distinct connect limits whose aiohttp timeout is reused
_WHOLE_KEY = 8  # characters from which a key is masked even inside longer words
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
"""Characters of a key no JSON writer escapes; any other may come escaped in an echo."""
_SHORT_ESCAPES = dict(zip('/"\\\b\f\n\r\t', '/"\\bfnrt', strict=True))
"""JSON's two-character escapes: the character after the backslash."""
_Item = TypeVar("_Item")


@dataclass(slots=True)
class SSEvent:
    """One server-sent event: its ``event:`` name (or None) and joined ``data:`` lines."""

    event: str | None
    data: bytes


def one_line(data: bytes) -> bytes:
    """An event's data sent over several ``data:`` lines (joined by line breaks), as one line.

    Its JSON reads the same (in valid JSON a line break stands only between tokens, where a
    space does as well), and it can be sent on as the upstream's bytes in one ``data:`` line:
    written as it is, each line break would end that line and the rest would reach the client
    as lines of no field, losing the event."""
    return data.replace(b"\n", b" ")


class SentRequest(aiohttp.ClientRequest):
    """aiohttp's request, telling the upstream call it is made for (``SENDING``) once its
    body is written: a call its client cut before then reached no provider."""

    async def write_bytes(self, *args: Any, **kwargs: Any) -> None:
        """Write the body (aiohttp's own), then mark the call's deadline ``sent``."""
        await super().write_bytes(*args, **kwargs)
        deadline = SENDING.get()
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
                allow_redirects=False,  # see _status_error
            )
            try:
                if response.status >= 300:
                    raise await _status_error(response, parse_error, secret, url)
                deadline.received()
                payload = await response.read()
            finally:
                response.release()
        except UpstreamError:
            raise
        except asyncio.CancelledError:
            if deadline.timed_out():
                raise _deadline_error(deadline, timeouts, url) from None
            raise
        except Exception as exc:
            raise _transport_error(exc, url) from None
        finally:
            self._deadlines.forget(deadline)
        try:
            return payload, parse(payload)
        except ValueError:  # orjson's and msgspec's decode errors
            if payload.startswith(BOM):  # looked for only here: no cost to a plain answer
                return self._unmarked(payload[len(BOM) :], parse, url, secret)
            raise _invalid_json(url, payload, secret) from None

    @staticmethod
    def _unmarked(
        payload: bytes, parse: Callable[[bytes], Any], url: str | URL, secret: Secrets
    ) -> tuple[bytes, Any]:
        """An answer that began with a byte order mark, read (and sent on) without it."""
        try:
            return payload, parse(payload)
        except ValueError:
            raise _invalid_json(url, payload, secret) from None

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
            url, body, headers, timeouts, parse_error, secret, _read_events, _SSE_TYPES
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
                allow_redirects=False,  # see _status_error
            )
            try:
                if response.status >= 300:
                    raise await _status_error(response, parse_error, secret, url)
                deadline.received()
                # Not labelled a stream (a JSON error, a proxy's HTML page, with a 200)?
                labelled = response.content_type in stream_types
                async for event in read(response.content, secret, not labelled):
                    # The consumer's own awaits (e.g. writing to its client) are not ours to
                    # time, nor to cancel: the watch pauses while it holds the event.
                    deadline.pause()
                    yield event
                    if not deadline.resume():
                        raise _deadline_error(
                            deadline, timeouts, url, "total", client_held=deadline.client_held
                        )
            finally:
                response.release()
        except UpstreamError:
            raise
        except asyncio.CancelledError:
            if deadline.timed_out():
                raise _deadline_error(deadline, timeouts, url, mid_stream=deadline.begun) from None
            raise
        except Exception as exc:
            raise _transport_error(exc, url) from None
        finally:
            self._deadlines.forget(deadline)


# What labels a stream (aiohttp says application/octet-stream for an answer without a type).
_SSE_TYPES = ("text/event-stream", "application/octet-stream")
_RAW_TYPES = ("application/vnd.amazon.eventstream", "application/octet-stream")


def _invalid_json(url: str | URL, payload: bytes, secret: Secrets) -> UpstreamProtocolError:
    """An answer that is not JSON: an HTML page (a captive portal, a proxy's page, an
    ``api_base`` pointing at a web site) is named by its words, as for a stream request, so
    the client and the operator can tell what answered; anything else as invalid JSON."""
    raw = payload[:_MAX_ERROR_BODY]
    if secret:
        raw = scrub(raw, secret)
    text = raw.decode("utf-8", "replace").strip()
    message = "upstream answered with invalid JSON"
    if _HTML_START.match(text):
        message = f"upstream answered with a page, not JSON: {_page_words(text)}"
    return UpstreamProtocolError(message, detail=f"{_host(url)}: {message}")


def _deadline_error(
    deadline: Deadline,
    timeouts: UpstreamTimeouts,
    url: str | URL,
    phase: Phase | None = None,
    *,
    mid_stream: bool = False,
    client_held: bool = False,
) -> GatewayError:
    phase = phase or deadline.expired or "total"
    if phase == "client":
        # Not the upstream's failure: the client hung up while the call waited for it.
        left = ClientDisconnected(
            "client disconnected while waiting for the upstream", code="client_disconnected"
        )
        left.prompt_sent = deadline.sent
        return left
    if phase == "first_byte" and mid_stream:
        # The gap limit: the deployment's own first-byte limit, even where a latency
        # threshold or a deadline shortened the wait for the first event.
        message = f"upstream went silent mid-answer for longer than {deadline.gap:g}s"
    elif phase == "first_byte":
        message = (
            f"upstream sent nothing of its answer within the first-byte timeout of "
            f"{timeouts.first_byte:g}s"
        )
    elif client_held:
        # The limit passed while the consumer held the stream (e.g. its client reading it
        # slower than it comes), not while the upstream was awaited.
        phase = "total"
        message = (
            f"stream exceeded the total timeout of {timeouts.total:g}s "
            "while its client was still reading it"
        )
    else:
        phase = "total"
        message = f"upstream exceeded the total timeout of {timeouts.total:g}s"
    cut = UpstreamTimeout(
        message, phase=phase, detail=f"{_host(url)}: {message}", client_held=client_held
    )
    cut.prompt_sent = deadline.sent
    return cut


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
    read whole and raised as what it says (``_whole_body_error``)."""
    # A key may be cut across two pieces: the framing's decoder masks it in whole messages
    # (bedrock.py, for AWS event streams).
    first = unlabelled
    async for piece in content.iter_any():
        if first and piece.lstrip(BOM + b" \t\r\n")[:1] in (b"{", b"[", b"<"):
            raise await _whole_body_error(content, piece, secret, parse_error)
        first = False
        yield piece


_ERROR_FIELDS = ("error", "message", "Message", "__type")
_STATUS_FIELDS = ("status_code", "code", "status")


async def _whole_body_error(
    content: aiohttp.StreamReader, first: bytes, secret: Secrets, parse_error: ErrorParser
) -> UpstreamError:
    """A binary stream request answered by one whole body: an error object (a proxy's, a 200
    carrying ``{"error": ...}``) is that error, with the status it names (else 502), any other
    body a failed attempt naming what it said, as ``_whole_answer`` does for events."""
    raw = first + await _error_body(content)
    if secret:
        raw = scrub(raw, secret)
    raw = raw.lstrip(BOM + b" \t\r\n")
    try:
        parsed: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, list) and len(parsed) == 1:
        parsed = parsed[0]
    if isinstance(parsed, dict) and any(parsed.get(field) for field in _ERROR_FIELDS):
        body = parse_error(parsed)
        message = f"upstream answered a stream request with an error: {body.message}"
        failure = UpstreamStatusError(
            body.status or _status_named(parsed) or 502,
            message,
            kind=body.kind,
            retry_after=body.retry_after,
            detail=message,
        )
        failure.retryable = True  # the upstream took the request: this attempt's failure
        return failure
    if parsed is not None:
        said = "a JSON body, not events"
    else:
        text = raw.decode("utf-8", "replace").strip()
        said = _page_words(text) if _HTML_START.match(text) else text[:_MAX_PAGE_WORDS]
    message = f"upstream answered a stream request with {said}"
    return UpstreamProtocolError(message, detail=message)


def _status_named(raw: dict[str, Any]) -> int | None:
    """The HTTP status an error object names (``{"error": {"code": 429}}``), if any."""
    nested = raw.get("error")
    for fields in (nested if isinstance(nested, dict) else {}, raw):
        for name in _STATUS_FIELDS:
            value = fields.get(name)
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            if type(value) is int and 400 <= value <= 599:
                return value
    return None


async def _read_events(
    content: aiohttp.StreamReader, secret: Secrets = None, unlabelled: bool = False
) -> AsyncIterator[SSEvent]:
    """Server-sent events as they arrive: one wait per network read, not one per line.

    ``unlabelled``: the answer's Content-Type is not ``text/event-stream``; one that then
    begins as a JSON or HTML body (not events) is read whole (``_whole_answer``).

    An event quoting the credential (a stream's error event may, as error bodies do) has it
    masked: one substring search per event and part of the credential (about 0.2 µs for a
    170-byte chunk on this project's machine, against 0.6 µs to parse its JSON).
    """
    # Not a short key (``x``, ``none``: a local server's, no secret), which a model's own
    # words hold often enough: masking it would change answers.
    parts = tuple(part for part in _parts(secret) if len(part) >= _WHOLE_KEY)
    needles = tuple(_needle(part) for part in parts)
    pending = b""
    waiting: list[bytes] = []  # pieces that cannot end an event, joined once one can
    waited = 0  # their size
    start: bytes | None = b""  # the stream's first bytes, while they may be a byte order mark
    async for piece in content.iter_any():
        if start is not None:
            # Ignored, as the SSE spec says (whole, or cut across the first reads): else it
            # hides the name of the first line's field.
            piece = start + piece
            if len(piece) < len(BOM) and BOM.startswith(piece):
                start = piece
                continue
            start = None
            if piece.startswith(BOM):
                piece = piece[len(BOM) :]
            if unlabelled and piece.lstrip()[:1] in (b"{", b"[", b"<"):
                async for whole in _whole_answer(content, piece, parts):
                    yield whole
                return
        if b"\n" not in piece and b"\r" not in piece and not pending.endswith(b"\r"):
            # The middle of a long event (a large inline image): adding each piece to
            # ``pending`` and scanning it again would copy the event once per read. (Not
            # after a held final \r: a piece without \n shows it ended a line on its own.)
            waiting.append(piece)
            waited += len(piece)
            if waited + len(pending) > MAX_EVENT_BYTES:
                raise _event_too_large()
            continue
        if waiting:
            waiting.append(piece)
            pending += b"".join(waiting)
            waiting.clear()
            waited = 0
        else:
            pending += piece
        if b"\r" in pending:
            # A final \r may be half of a \r\n split across reads: it waits for the next one.
            held = b"\r" if pending.endswith(b"\r") else b""
            body = pending[:-1] if held else pending
            pending = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + held
        *blocks, pending = pending.split(b"\n\n")
        if len(pending) > MAX_EVENT_BYTES:  # an event of endless lines
            raise _event_too_large()
        for block in blocks:
            event = _event(block)
            if event is not None:
                yield _masked(event, parts, needles) if needles else event
    event = _event(pending + b"".join(waiting))
    if event is not None:
        yield _masked(event, parts, needles) if needles else event


async def _whole_answer(
    content: aiohttp.StreamReader, first: bytes, parts: tuple[str, ...]
) -> AsyncIterator[SSEvent]:
    """A stream request answered by one whole body: an error object (a 200 carrying
    ``{"error": ...}``, as OpenRouter and proxies send it) as the one event it stands for, so
    the provider's stream reader tells the upstream's words with the status they mean; any
    other body (a proxy's HTML page, a whole answer) as a failed attempt naming what it said.
    Without this the upstream's words were lost in "stream ended before [DONE]"."""
    raw = first + await _error_body(content)
    if parts:
        raw = scrub(raw, parts)
    try:
        parsed: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, list) and len(parsed) == 1:
        parsed = parsed[0]  # Gemini's JSON-array form
    if isinstance(parsed, dict) and (parsed.get("error") or parsed.get("type") == "error"):
        yield SSEvent(None, orjson.dumps(parsed))
        said = "a JSON body, not events"
    elif parsed is not None:
        said = "a JSON body, not events"
    else:
        text = raw.decode("utf-8", "replace").strip()
        said = _page_words(text) if _HTML_START.match(text) else text[:_MAX_PAGE_WORDS]
    message = f"upstream answered a stream request with {said}"
    raise UpstreamProtocolError(message, detail=message)


def _event_too_large() -> UpstreamProtocolError:
    message = f"upstream sent a stream event over {MAX_EVENT_BYTES >> 20} MiB"
    return UpstreamProtocolError(message, detail=message)


def _parts(secret: Secrets) -> tuple[str, ...]:
    if not secret:
        return ()
    return secret if isinstance(secret, tuple) else (secret,)


@functools.lru_cache(maxsize=64)
def _needle(part: str) -> bytes:
    """What an event quoting ``part`` holds however its JSON writes it: the longest run of
    ``part`` no writer escapes (a base64 key's ``/`` may come as ``\\/``, its ``+`` as
    ``\\u002B``), or ``part`` itself when that run is too short to tell a key by."""
    runs = re.split(r"[^A-Za-z0-9\-_.~]+", part)
    longest = max(runs, key=len)
    return (longest if len(longest) >= _WHOLE_KEY else part).encode()


def _masked(event: SSEvent, parts: tuple[str, ...], needles: tuple[bytes, ...]) -> SSEvent:
    """``event`` with the credential masked in its data, when it holds any part of it."""
    for needle in needles:  # a loop, not any(): no generator made for every event
        if needle in event.data:
            event.data = scrub(event.data, parts)
            break
    return event


def _event(block: bytes) -> SSEvent | None:
    """One event from its lines (``event:``, ``data:``; comments and other fields ignored);
    none for an event without data, as the SSE spec says (a ``data:`` line with nothing on
    it, which some servers send to keep a stream alive, is no event to read)."""
    name: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode()
    if not data:
        return None
    joined = b"\n".join(data)
    return SSEvent(name, joined) if joined else None


async def _status_error(
    response: aiohttp.ClientResponse,
    parse_error: ErrorParser,
    secret: Secrets,
    url: str | URL,
) -> Exception:
    if response.status < 400:
        # A redirect is never followed: the client would send the provider key to wherever it
        # points (aiohttp drops only Authorization when it leaves the origin, not x-api-key,
        # api-key or x-goog-api-key), and the request body with it.
        return UpstreamProtocolError(
            f"upstream answered with a redirect ({response.status}), which is not followed",
            detail=f"{_host(url)} answered {response.status}: a redirect, not followed",
        )
    raw = await _error_body(response.content)
    # The reason phrase and the error type header are the upstream's words too.
    reason = response.reason or ""
    named_type = response.headers.get("x-amzn-errortype", "")
    if secret:
        raw = scrub(raw, secret)
        reason = scrub(reason.encode(), secret).decode()
        named_type = scrub(named_type.encode(), secret).decode()
    if raw.startswith(BOM):
        raw = raw[len(BOM) :]
    try:
        parsed: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = raw.decode("utf-8", "replace").strip()
        if _HTML_START.match(parsed):
            parsed = _page_words(parsed)
        parsed = parsed or reason
    body = parse_error(parsed)
    # AWS services name the error in a header (``ThrottlingException:http://...``), not the body.
    kind = body.kind or named_type.split(":", 1)[0] or None
    message = body.message or f"upstream answered {response.status}"
    if response.status >= 500 and body.message:
        # The gateway answers for a 5xx in its own words: say what the provider answered.
        # (Azure's gateway names an error by its status again: said once.)
        named = f"{response.status} {kind}" if kind and not kind.isdigit() else str(response.status)
        message = f"upstream answered {named}: {body.message}"
    return UpstreamStatusError(
        body.status or response.status,
        message,
        error_type=body.type,
        code=body.code,
        param=body.param,
        retry_after=_retry_after(response.headers)
        or body.retry_after
        or (_reset_wait(response.headers) if response.status == 429 else None),
        kind=kind,
        detail=f"{_host(url)} answered {response.status}: {body.message or message}",
        details=body.details,
    )


_HTML_START = re.compile(r"<(?:!doctype\s+html|html|head|body|title|h1)\b", re.IGNORECASE)
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_HTML_SKIPPED = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"<[^>]*>")
_MAX_PAGE_WORDS = 300


def _page_words(page: str) -> str:
    """An HTML error page's words: its title, else its text, without the markup.

    A proxy or load balancer in front of a self-hosted server (nginx, Cloudflare, an ingress)
    answers a 502 or a 413 with a page of its own; the client is told what it says
    (``502 Bad Gateway``), not sent the page's markup as the error's message."""
    title = _HTML_TITLE.search(page)
    text = title.group(1) if title else _HTML_TAG.sub(" ", _HTML_SKIPPED.sub(" ", page))
    words = " ".join(html.unescape(text).split())
    return words if len(words) <= _MAX_PAGE_WORDS else words[: _MAX_PAGE_WORDS - 3] + "..."


async def _error_body(content: aiohttp.StreamReader) -> bytes:
    """An error answer's body up to its end, or its first ``_MAX_ERROR_BODY`` bytes.

    ``read(n)`` gives what one network read brought, not ``n`` bytes: a body that comes in
    several (a chunked answer written in parts, a TLS record boundary, a proxy passing on
    what it has) was cut there, and its JSON lost with it (code, param, the wait a body asks
    for). The wait is under the call's first-byte limit: a body that stalls times out."""
    raw = b""
    while len(raw) < _MAX_ERROR_BODY:
        piece = await content.read(_MAX_ERROR_BODY - len(raw))
        if not piece:
            break
        raw += piece
    return raw


def _retry_after(headers: Mapping[str, str]) -> str | None:
    """How long the upstream asks to wait, as a ``retry-after`` value: its ``retry-after-ms``
    (OpenAI's and Azure's, more precise) in seconds when it sent a valid one, else its
    ``retry-after`` when that is one (seconds or an HTTP date).

    A value that is neither (``inf``, ``nan``, ``-5``, words) is no wait at all: taken as one,
    ``inf`` and ``nan`` failed the error's making (a rate limit became a 502 that counted
    against the circuit), a negative one rested the deployment for no time, and the client
    was sent the upstream's words as its ``retry-after``."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        seconds = _seconds(millis)
        if seconds is not None:
            return _decimal(seconds / 1000)
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return _decimal(seconds)
    try:
        email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return value


_RESETS = ("requests", "tokens")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def _reset_wait(headers: Mapping[str, str]) -> str | None:
    """The wait a 429 says only in OpenAI's ``x-ratelimit-reset-requests`` /
    ``x-ratelimit-reset-tokens`` (``1s``, ``6m0s``, ``20ms``), as a ``retry-after`` value: the
    reset of the limit its ``x-ratelimit-remaining-*`` says is spent, else the later of the two
    (by then both have reset)."""
    resets: dict[str, float] = {}
    for limit in _RESETS:
        value = headers.get(f"x-ratelimit-reset-{limit}")
        seconds = _duration(value) if value else None
        if seconds is not None:
            resets[limit] = seconds
    spent = [
        wait for limit, wait in resets.items()
        if headers.get(f"x-ratelimit-remaining-{limit}", "").strip() == "0"
    ]  # fmt: skip
    waits = spent or list(resets.values())
    return _decimal(max(waits)) if waits else None


def _duration(value: str) -> float | None:
    """A Go duration (``6m0s``, ``1.5s``, ``20ms``) in seconds, else None."""
    value = value.strip()
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _seconds(value: str) -> float | None:
    """``value`` as a number of seconds that can be waited (finite, not negative), else None
    (also for a number that is not one, ``nan``, and for an HTTP date)."""
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < math.inf else None


def _decimal(seconds: float) -> str:
    """``seconds`` as delta-seconds, to the millisecond (``1.5``, ``30``)."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def scrub(raw: bytes, secret: str | tuple[str, ...]) -> bytes:
    """``raw`` with ``secret`` (each of them, for a tuple) masked wherever it occurs.

    Some providers echo the key they were sent in auth errors, and a JSON writer may escape
    some of its characters (PHP writes ``/`` as ``\\/``, .NET ``+`` as ``\\u002B``): a key
    with such characters (a base64 one: a Bedrock API key, an AWS session token) is masked
    in those spellings too, or the client's JSON parser would read the key back whole. A
    short key (``x``, ``none``: local servers take any) is masked only where it stands
    alone, so that ``max_tokens`` does not become ``ma***_tokens`` in the error the client
    reads.
    """
    if isinstance(secret, tuple):
        # The longest first: a session token may hold a shorter part of the credential.
        for part in sorted(secret, key=len, reverse=True):
            raw = scrub(raw, part)
        return raw
    if len(secret) >= _WHOLE_KEY:
        raw = raw.replace(secret.encode(), b"***")
        escaped = _escaped(secret)
        if escaped is not None and b"\\" in raw:
            raw = escaped.sub(b"***", raw)
        return raw
    word = rb"[A-Za-z0-9_\-]"
    pattern = rb"(?<!" + word + rb")" + re.escape(secret.encode()) + rb"(?!" + word + rb")"
    return re.sub(pattern, b"***", raw)


@functools.lru_cache(maxsize=64)
def _escaped(secret: str) -> re.Pattern[bytes] | None:
    """``secret`` as JSON may spell it, each character other than a letter, digit, ``-``,
    ``_``, ``.`` or ``~`` as itself or escaped (``\\/``, ``\\u002b`` in either case);
    None when it has no such character (its only spelling is itself)."""
    if all(char in _PLAIN for char in secret):
        return None
    pattern = []
    for char in secret:
        if char in _PLAIN:
            pattern.append(re.escape(char.encode()))
            continue
        spellings = [re.escape(char.encode())]
        if ord(char) < 0x10000:
            spellings.append(rb"(?i:\\u" + f"{ord(char):04x}".encode() + b")")
        if char in _SHORT_ESCAPES:
            spellings.append(re.escape(b"\\" + _SHORT_ESCAPES[char].encode()))
        pattern.append(b"(?:" + b"|".join(spellings) + b")")
    return re.compile(b"".join(pattern))


def _transport_error(exc: Exception, url: str | URL) -> UpstreamError:
    """The failure ``exc`` means, in words that do not name the upstream (``detail`` does)."""
    host = _host(url)
    detail = f"{host}: {type(exc).__name__}: {str(exc).replace(str(url), host)}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamTimeout(
            "timed out connecting to the upstream", phase="connect", detail=detail
        )
    if isinstance(exc, aiohttp.SocketTimeoutError):
        message = "upstream sent nothing within the first-byte timeout"
        return UpstreamTimeout(message, phase="first_byte", detail=detail)
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout("upstream exceeded the total timeout", phase="total", detail=detail)
    encoding = _undecodable(exc)
    if encoding is not None:
        # The upstream answered, so not "cannot reach" (aiohttp reports a head it cannot read
        # as a ClientResponseError) nor "closed the connection" (a body, as a payload error).
        named = f" ({encoding})" if encoding else ""
        return UpstreamProtocolError(
            f"upstream answered in a Content-Encoding the gateway cannot read{named}",
            detail=detail,
        )
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return UpstreamUnavailable("upstream closed the connection mid-answer", detail=detail)
    if isinstance(exc, aiohttp.ClientResponseError):
        # aiohttp's parser refused the answer's head: it came, but is not HTTP it reads.
        return UpstreamProtocolError("upstream answered with an unreadable response", detail=detail)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return UpstreamUnavailable("cannot reach the upstream", detail=detail)
    return UpstreamProtocolError("the call to the upstream failed", detail=detail)


_ENCODING_NAMED = re.compile(r"content-encoding: (?:[\w-]+ \(([\w-]+)\)|([\w-]+))", re.I)


def _undecodable(exc: BaseException) -> str | None:
    """The Content-Encoding of an answer ``exc`` says could not be decoded (``""`` when it
    does not name it: aiohttp's words), or None for any other failure. aiohttp raises it for
    an encoding it was not built to read (brotli, zstd without their packages: it offers
    only what it reads, but an upstream may answer in another) and for a body that is not
    the encoding it claims, wrapped in the error of the step that read it."""
    cause: BaseException | None = exc
    for _ in range(3):  # the payload's or the response's error, the parser's, the decoder's
        if cause is None:
            return None
        if isinstance(cause, ContentEncodingError):
            named = _ENCODING_NAMED.search(str(cause.message))
            return (named.group(1) or named.group(2)) if named else ""
        cause = cause.__cause__
    return None


def _host(url: str | URL) -> str:
    # Only scheme and authority, for the operator's detail: a path or query could carry a
    # credential (some APIs take keys in the query string).
    scheme, _, rest = str(url).partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].rsplit('@', 1)[-1]}"
