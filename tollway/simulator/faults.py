"""Fault specs (the ``x-sim-fault`` grammar) and the low-level ways of breaking a connection.

Grammar: ``status:NNN`` (answer with that status in the dialect's error shape), ``reset`` (drop
the connection without a response), ``stop-after:N`` (stream N content chunks, then drop the
connection; a non-streaming request behaves like ``reset``), ``error-after:N`` (stream N content
chunks, then the API's own error event for an overload, and end the stream: Anthropic's
``overloaded_error`` after ``message_start`` with ``error-after:0``; a non-streaming request is
answered with the overload's status), ``hang`` (never answer), ``hang-after:N`` (stream N
content chunks, then fall silent with the connection open until the caller leaves; a
non-streaming request behaves like ``hang``), ``keepalive`` (answer a stream's status and
headers, then only keep-alive comments, never an event), ``keepalive-after:N`` (stream N
content chunks, then only keep-alive comments; with ``0``, right after the stream's head; a
non-streaming request behaves like ``hang`` for both), ``echo:NNN`` (answer with that status, the
error's message quoting the credentials the request carried, as some providers and
proxies echo what they were sent) and ``echo-after:N`` (stream N content chunks, then an
error event quoting them; a non-streaming request is answered as ``echo:500``).
In the ``x-sim-fault`` header, ``none`` exempts that request from the server-wide fault.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the config models parse fault specs: no aiohttp for a CLI command
    from aiohttp import web

FaultKind = Literal[
    "status",
    "reset",
    "stop-after",
    "error-after",
    "hang",
    "hang-after",
    "keepalive",
    "keepalive-after",
    "echo",
    "echo-after",
]

ECHOED_HEADERS = ("Authorization", "x-api-key", "api-key", "x-goog-api-key", "X-Amz-Security-Token")
"""The headers an ``echo`` fault quotes: every way a provider credential travels."""

# SO_LINGER on with a zero timeout makes close() send a TCP RST instead of a FIN, which is what a
# crashed upstream or a middlebox killing the connection looks like to the client.
_LINGER_RST = struct.pack("ii", 1, 0)


@dataclass(frozen=True, slots=True)
class Fault:
    """A parsed fault spec; ``value`` is the status code or the chunk count."""

    kind: FaultKind
    value: int = 0


def parse_fault(spec: str) -> Fault:
    """Parse a fault spec, raising ValueError with a readable message when it is invalid."""
    name, _, arg = spec.strip().partition(":")
    name = name.strip().lower()
    arg = arg.strip()
    if name in ("reset", "hang", "keepalive"):
        if arg:
            raise ValueError(f"fault {name!r} takes no argument")
        return Fault(name)  # type: ignore[arg-type]
    if name in (
        "status", "stop-after", "error-after", "hang-after", "keepalive-after", "echo", "echo-after"
    ):  # fmt: skip
        try:
            value = int(arg)
        except ValueError:
            raise ValueError(f"fault {name!r} needs an integer argument, got {arg!r}") from None
        if name in ("status", "echo") and not 400 <= value <= 599:
            raise ValueError(f"fault {name} must be 400..599, got {value}")
        if name not in ("status", "echo") and value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
        return Fault(name, value)  # type: ignore[arg-type]
    raise ValueError(
        f"unknown fault {spec!r}; expected status:NNN, reset, stop-after:N, error-after:N, "
        "hang, hang-after:N, keepalive, keepalive-after:N, echo:NNN or echo-after:N"
    )


def echoed_credentials(request: web.BaseRequest) -> str:
    """What an ``echo`` fault says: the credential headers and the query string it was sent,
    verbatim, as a careless upstream (or a proxy in front of one) quotes them in an error."""
    said = [
        f"{name}: {request.headers[name]}" for name in ECHOED_HEADERS if name in request.headers
    ]
    if request.query_string:
        said.append(f"query: {request.query_string}")
    return "simulated fault, the request carried " + ("; ".join(said) or "no credential")


def reset_connection(request: web.BaseRequest) -> web.Response:
    """Abort the connection with a TCP reset; the returned response is never sent."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        transport.abort()
    from aiohttp import web

    # aiohttp fails to write this on the dead transport and treats it as a client disconnect.
    return web.Response(status=500)


def close_connection(request: web.BaseRequest) -> None:
    """Close the connection after flushing what was already written (a cut-off stream)."""
    transport = request.transport
    if transport is not None:
        transport.close()
