"""A call that failed on its way rather than in the upstream's words, as the gateway's
error: the connection (refused, closed mid-answer, an answer the client cannot read or
decode: ``http1.py``) or a deadline (``deadlines.py``) that cut it, the client's leaving
included."""

from __future__ import annotations

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
from tollway.providers.http1 import (
    BadAnswer,
    ConnectTimeout,
    Disconnected,
    HTTPFailure,
    UndecodableBody,
)
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
    if isinstance(exc, ConnectTimeout):
        return UpstreamTimeout(
            "timed out connecting to the upstream", phase="connect", detail=detail
        )
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout("upstream exceeded the total timeout", phase="total", detail=detail)
    if isinstance(exc, UndecodableBody):
        # The upstream answered, so not "cannot reach" nor "closed the connection".
        return UpstreamProtocolError(
            f"upstream answered in a Content-Encoding the gateway cannot read ({exc.encoding})",
            detail=detail,
        )
    if isinstance(exc, Disconnected):
        return UpstreamUnavailable("upstream closed the connection mid-answer", detail=detail)
    if isinstance(exc, BadAnswer):
        # The answer came, but is not HTTP the client reads.
        return UpstreamProtocolError("upstream answered with an unreadable response", detail=detail)
    if isinstance(exc, HTTPFailure | OSError):
        return UpstreamUnavailable("cannot reach the upstream", detail=detail)
    return UpstreamProtocolError("the call to the upstream failed", detail=detail)
