"""A call that failed on its way rather than in the upstream's words, as the gateway's
error: the connection (refused, closed mid-answer, an answer aiohttp cannot read or decode)
or a deadline (``deadlines.py``) that cut it, the client's leaving included."""

from __future__ import annotations

import re

import aiohttp
from aiohttp.http_exceptions import ContentEncodingError
from yarl import URL

from tollway.core.errors import (
    ClientDisconnected,
    GatewayError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from tollway.core.types import UpstreamTimeouts
from tollway.providers.deadlines import Deadline, Phase
from tollway.providers.upstream_errors import upstream_host


def deadline_error(
    deadline: Deadline,
    timeouts: UpstreamTimeouts,
    url: str | URL,
    phase: Phase | None = None,
    *,
    mid_stream: bool = False,
    client_held: bool = False,
) -> GatewayError:
    """The error of a call its deadline cut (``phase``: the limit that passed, else the one
    the watchdog recorded); the client's leaving is the client's, not the upstream's."""
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
        message, phase=phase, detail=f"{upstream_host(url)}: {message}", client_held=client_held
    )
    cut.prompt_sent = deadline.sent
    return cut


def transport_error(exc: Exception, url: str | URL) -> UpstreamError:
    """The failure ``exc`` means, in words that do not name the upstream (``detail`` does)."""
    host = upstream_host(url)
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
