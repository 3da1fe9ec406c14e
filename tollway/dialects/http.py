"""What every dialect does at the HTTP edge: read a JSON body, name the request."""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import orjson
from aiohttp import HttpVersion11, hdrs, web

from tollway.core.context import Attempt, RequestContext
from tollway.core.errors import (
    AuthenticationFailed,
    ClientDisconnected,
    GatewayError,
    InvalidRequest,
    PayloadTooLarge,
    RequestCancelled,
)
from tollway.core.pipeline import discard
from tollway.core.types import ChatChunk, ChatRequest, EmbeddingRequest
from tollway.pricing.metering import format_cost
from tollway.pricing.tokens import COUNT_AHEAD_CHARS
from tollway.providers.deadlines import CALLER
from tollway.telemetry.metrics import UNKNOWN_MODEL
from tollway.telemetry.refusals import refusal_entry

if TYPE_CHECKING:
    from tollway.auth.principal import Principal
    from tollway.core.pipeline import Pipeline
    from tollway.gateway import Gateway

log = logging.getLogger("tollway.dialects")

_MAX_REQUEST_ID = 128
_MAX_DEPTH = 255  # levels of JSON nesting orjson encodes
# Never forwarded whatever the patterns say: client credentials and hop-by-hop headers.
_NEVER_FORWARDED = frozenset(
    {
        "authorization", "api-key", "x-api-key", "x-goog-api-key", "cookie",
        "proxy-authorization", "host", "content-length", "content-type", "transfer-encoding",
        "connection", "keep-alive",
        "upgrade", "te", "trailer", "accept-encoding",
    }
)  # fmt: skip


class HeaderForwarder:
    """Picks the client headers that may go on to the provider (``upstream.forward_headers``)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        lowered = [pattern.lower() for pattern in patterns]
        # Plain names are looked up directly: no walk over every header of every request.
        self._names = tuple(p for p in lowered if not _is_glob(p) and p not in _NEVER_FORWARDED)
        globs = [fnmatch.translate(p) for p in lowered if _is_glob(p)]
        self._pattern = re.compile("|".join(globs)) if globs else None

    def select(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The forwardable subset of ``headers``."""
        selected = {}
        for name in self._names:  # a loop, not a comprehension: no frame made every request
            value = headers.get(name)
            if value is not None:
                selected[name] = value
        if self._pattern is not None:
            match = self._pattern.match
            for name, value in headers.items():
                lowered = name.lower()
                if lowered not in _NEVER_FORWARDED and match(lowered):
                    selected[name] = value
        return selected


def _is_glob(pattern: str) -> bool:
    return any(char in pattern for char in "*?[")


_INVITE = "tollway.invite"
"""Set on a request whose ``Expect: 100-continue`` waits for ``read_body`` to answer it."""
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


async def expect_later(request: web.Request) -> None:
    """The ``expect_handler`` of the routes whose body ``read_body`` reads.

    aiohttp's own sends ``100 Continue`` before the handler runs, so a client that asks
    first (curl does for a body over 1 MiB) was invited to upload all of it even when its
    key was bad or its ``Content-Length`` over the limit: ``read_body`` invites it once the
    request was authenticated and its size allowed, and a refusal before that closes the
    connection (``uninvited``), since the body it announced never comes."""
    if request.version == HttpVersion11:
        if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
            raise web.HTTPExpectationFailed(text=f"Unknown Expect: {request.headers[hdrs.EXPECT]}")
        request[_INVITE] = True


_Answer = TypeVar("_Answer", bound=web.StreamResponse)


def uninvited(request: web.Request, response: _Answer) -> _Answer:
    """``response`` (a refusal) closing the connection when the request's body was never
    invited: the client does not send it, and read as the body it announced, its next
    request on the connection would be lost (and the connection held waiting for it)."""
    if _INVITE in request:
        response.force_close()
        request.content.feed_eof()  # else aiohttp waits 10 s to drain the body that never comes
    return response


async def read_json_object(request: web.Request, max_size: int) -> dict[str, Any]:
    """The request body as a JSON object; 413 over ``max_size``, 400 when not a JSON object."""
    body, _ = await read_body(request, max_size)
    return body


async def read_body(request: web.Request, max_size: int) -> tuple[dict[str, Any], int]:
    """``read_json_object`` and the body's size in bytes."""
    if request.content_length is not None and request.content_length > max_size:
        raise PayloadTooLarge(f"Request body is over the limit of {max_size} bytes.")
    if request.headers.get(hdrs.EXPECT) is not None and request.pop(_INVITE, False):
        # Authenticated and of a size allowed: now the client may send its body.
        await request.writer.write(_CONTINUE)
        request.writer.output_size = 0  # the answer's size, as aiohttp's own handler does
    try:
        raw: bytes | None = await request.read()  # one growing buffer: copied once, not per read
    except web.HTTPRequestEntityTooLarge:
        raw = None
    except ConnectionError:
        # The client hung up before its body arrived whole (aiohttp's "Connection lost"): how
        # the request ended, 499 as for a client that leaves mid-stream, not a failure of the
        # gateway's (a 500 with a traceback, in every 5xx dashboard).
        raise ClientDisconnected(
            "client disconnected before its request body arrived", code="client_disconnected"
        ) from None
    except web.RequestPayloadError:  # e.g. a body that is not the gzip it says it is
        # The rest of the body is unreadable too: given up on here, so that aiohttp does not
        # try to drain it after the answer (and log the same error as unhandled).
        request.content.feed_eof()
        encoding = request.headers.get("Content-Encoding", "none")
        raise InvalidRequest(
            f"Request body cannot be read with its Content-Encoding ({encoding})."
        ) from None
    if raw is None or len(raw) > max_size:
        # A body without Content-Length (chunked) is known too large only once read; aiohttp
        # stops reading at its own limit, one byte over this one.
        raise PayloadTooLarge(f"Request body is over the limit of {max_size} bytes.")
    if not raw:
        raise InvalidRequest("Request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc.msg}.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object.")
    if len(raw) > 2 * _MAX_DEPTH and raw.count(b"{") + raw.count(b"[") > _MAX_DEPTH:
        # Only a body with that many brackets (each opened and closed) can nest too deep for
        # the JSON the gateway writes upstream (the parser takes 1,024 levels, the encoder
        # 255): checked in full only then, so it is a clear 400 here, not a failed upstream
        # call later.
        try:
            orjson.dumps(body)
        except orjson.JSONEncodeError:
            raise InvalidRequest(
                f"Request body nests JSON more than {_MAX_DEPTH} levels deep."
            ) from None
    return body, len(raw)


Failure = Callable[[GatewayError, str, dict[str, str]], web.StreamResponse]
"""Renders an error in a dialect's shape, given the request id and the response headers."""


async def exchange(
    request: web.Request,
    gateway: Gateway,
    parse: Callable[[dict[str, Any]], ChatRequest | EmbeddingRequest],
    answer: Callable[[web.Request, Pipeline, RequestContext], Awaitable[web.StreamResponse]],
    fail: Failure,
    logged_as: str | None = None,
) -> web.StreamResponse:
    """The cycle every model route shares: authenticate (before reading the body), parse,
    answer, render any failure in the dialect's shape, and always finish the pipeline.

    ``logged_as``: the request log's ``endpoint`` for a request refused before the pipeline
    (``None``: such refusals are not logged, as the route's other requests are not)."""
    rid = request_id(request, gateway.request_ids)
    pipeline = gateway.pipeline
    # Upstream calls made in this task give up when this connection closes (deadlines.py).
    CALLER.set(request.protocol)
    ctx: RequestContext | None = None
    principal: Principal | None = None
    body: dict[str, Any] | None = None
    # client_address, written out: no call made on the hot path when no proxy is trusted.
    proxies = gateway.proxies
    source = request.remote if proxies is None else proxies.client(request)
    try:
        principal = await gateway.authenticator.authenticate(request.headers, source)
        body, size = await read_body(request, gateway.max_body_size)
        parsed = parse(body)
        parsed.upstream_headers = gateway.forwarder.select(request.headers)
        if isinstance(parsed, ChatRequest):
            ctx = RequestContext(
                rid, "chat", parsed.model, request.headers, principal=principal, chat=parsed,
                source_ip=source,
            )  # fmt: skip
        else:
            ctx = RequestContext(
                rid, "embeddings", parsed.model, request.headers, principal=principal,
                embedding=parsed, source_ip=source,
            )  # fmt: skip
        if size > COUNT_AHEAD_CHARS:  # long texts (no more characters than bytes) are
            # counted off the event loop
            await pipeline.count_ahead(ctx)
        return await answer(request, pipeline, ctx)
    except GatewayError as exc:
        if ctx is None:
            if logged_as is not None:
                _refused(gateway, source, rid, logged_as, exc, principal, body)
            return uninvited(request, fail(exc, rid, {"x-request-id": rid}))
        ctx.error = exc
        return fail(exc, rid, routing_headers(ctx))
    except Exception as exc:
        error = log_internal_error(rid, exc)
        if ctx is not None:
            ctx.error = error  # so metrics, the request log and traces count it as a 500
        elif logged_as is not None:
            _refused(gateway, source, rid, logged_as, error, principal, body)
        return uninvited(request, fail(error, rid, {"x-request-id": rid}))
    except asyncio.CancelledError:
        # The server stopping cancels what still runs at the end of its shutdown timeout (a
        # client that leaves does not: aiohttp's handler_cancellation is off). Recorded as
        # what it was, not as the 200 nothing failed would say.
        if ctx is not None and ctx.error is None:
            ctx.error = RequestCancelled(
                "The request was cancelled before it ended: the gateway is shutting down.",
                code="request_cancelled",
            )
        raise
    finally:
        if ctx is not None:
            finishing = pipeline.finish(ctx)
            if finishing is not None:
                await finishing


def _refused(
    gateway: Gateway,
    source: str | None,
    rid: str,
    endpoint: str,
    error: GatewayError,
    principal: Principal | None,
    body: dict[str, Any] | None,
) -> None:
    """Count a request refused before the pipeline in the metrics and hand it, from the
    client address ``source``, to the request log (telemetry/refusals.py): the principal
    authenticated, or the one a known but unusable key names; never the credential itself."""
    if principal is None and isinstance(error, AuthenticationFailed):
        principal = error.principal
    model = body.get("model") if body is not None else None
    if not isinstance(model, str):
        model = ""
    metrics = gateway.metrics
    if metrics is not None:
        # Labelled as the pipeline labels a request: a model group's name, never a client's
        # own text (a label per invented name would grow /metrics without end).
        known = model and gateway.pipeline.routing.get(model) is not None
        metrics.record_refused(error.status, principal, model if known else UNKNOWN_MODEL)
    refusals = gateway.refusals
    if refusals is None or not refusals.admit(error):
        return
    refusals.put(refusal_entry(rid, endpoint, error, principal, model, source))


def request_id(request: web.Request, new: Callable[[], str] | None = None) -> str:
    """The client's ``x-request-id`` when it is sane, else a new one (from ``new`` if given)."""
    given = request.headers.get("x-request-id")
    if given and len(given) <= _MAX_REQUEST_ID and given.isprintable():
        return given
    return new() if new is not None else "req_" + secrets.token_hex(12)


class RequestIds:
    """New request ids without a system call each: a random per-process prefix and a counter.

    Ids only need to be unique (48 random bits tell replicas apart), not unguessable.
    """

    def __init__(self) -> None:
        self._prefix = "req_" + secrets.token_hex(6)
        self._next = itertools.count(1).__next__

    def __call__(self) -> str:
        return f"{self._prefix}{self._next():012x}"


def routing_headers(ctx: RequestContext, content_type: str | None = None) -> dict[str, str]:
    """Response headers naming the request and the deployment that served it (and the
    ``Content-Type`` when given: aiohttp's ``Response`` takes it from the headers as it is,
    where a ``content_type`` argument is checked and set apart)."""
    deployment = ctx.deployment
    if deployment is None:
        headers = {"x-request-id": ctx.request_id, **ctx.response_headers}
    else:
        # One literal: every request answers with these, and it costs a fifth less than
        # setting them one by one.
        tries = ctx.tries
        headers = {
            "x-request-id": ctx.request_id,
            "x-tollway-model": deployment.model,
            "x-tollway-deployment": deployment.id,
            "x-tollway-provider": deployment.provider,
            "x-tollway-attempts": str(ctx.attempts),
            "x-tollway-fallbacks": "0" if len(tries) < 2 else str(_fallbacks(tries)),
            **ctx.response_headers,
        }
    if content_type is not None:
        headers["Content-Type"] = content_type
    return headers


def _fallbacks(tries: list[Attempt]) -> int:
    return len({attempt.deployment.id for attempt in tries}) - 1


class EventEncoder(Protocol):
    """Turns canonical chunks into one dialect's stream events."""

    def feed(self, chunk: ChatChunk) -> bytes:
        """The events for one chunk (may be empty)."""
        ...

    def finish(self) -> bytes:
        """The closing events after the last chunk."""
        ...

    def error(self, exc: GatewayError) -> bytes:
        """The event that reports a failure after the first byte."""
        ...


async def stream_events(
    request: web.Request,
    ctx: RequestContext,
    chunks: AsyncIterator[ChatChunk],
    encoder: EventEncoder,
    headers: dict[str, str],
) -> web.StreamResponse:
    """Send ``chunks`` as server-sent events as they arrive.

    The pipeline hands over ``chunks`` only once the first one is in hand, so failures up to
    here were ordinary JSON errors; from the first byte on a failure becomes the dialect's
    error event and the stream ends, and a client that goes away closes the upstream.
    """
    response = web.StreamResponse(
        headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    try:
        await response.prepare(request)
    except BaseException as exc:
        # Gone before its response head (or the server stopping): the stream is ended
        # all the same, never left holding its upstream call and deployment.
        gone = isinstance(exc, ConnectionError)
        if gone:
            ctx.error = ClientDisconnected(
                "client disconnected before its stream began", code="client_disconnected"
            )
        await discard(chunks)
        if gone:
            return response
        raise
    try:
        async for chunk in chunks:
            data = encoder.feed(chunk)
            if data:
                await response.write(data)
        await response.write(encoder.finish() + _cost_comment(ctx))
    except GatewayError as exc:
        ctx.error = exc
        await _write_quietly(response, encoder.error(exc))
    except ConnectionError:
        # A reset, or (a write waiting on a client that reads slower than the stream comes)
        # aiohttp's plain ConnectionError("Connection lost") when the client goes.
        ctx.error = ClientDisconnected("client disconnected mid-stream", code="client_disconnected")
        return response
    except Exception as exc:
        # The head is sent: raised on, this would end in a second response written into the
        # body (a status line where the client reads the next chunk). It ends the stream in
        # the dialect's words instead, as any other failure after the first byte does.
        error = log_internal_error(ctx.request_id, exc)
        ctx.error = error
        await _write_quietly(response, encoder.error(error))
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    await _write_quietly(response, b"")
    return response


def _cost_comment(ctx: RequestContext) -> bytes:
    # An SSE comment: clients ignore it, curl and logs show what the stream cost.
    if ctx.cost_usd is None:
        return b""
    return f": x-tollway-cost-usd={format_cost(ctx.cost_usd)}\n\n".encode()


async def _write_quietly(response: web.StreamResponse, data: bytes) -> None:
    """Write and end the stream, ignoring a client that has already gone."""
    try:
        if data:
            await response.write(data)
        await response.write_eof()
    except ConnectionError:
        pass


def log_internal_error(rid: str, exc: BaseException) -> GatewayError:
    """Log an unexpected failure with its traceback; the error to answer names only ``rid``."""
    log.error("request %s failed unexpectedly", rid, exc_info=exc)
    return GatewayError(f"The gateway failed to handle request {rid}; see its log.")
