"""Server-sent events read from an upstream's stream, as they arrive: one pass over the body,
a byte order mark ignored, the credential masked in each event that quotes it, and a whole
body (an error object, a proxy's page) where events were asked for told as what it says."""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from tollway.core.errors import UpstreamProtocolError
from tollway.providers.http1 import Body
from tollway.providers.masking import WHOLE_KEY, Secrets, scrub
from tollway.providers.upstream_errors import BOM, body_words, error_body

MAX_EVENT_BYTES = 64 * 1024 * 1024
"""The largest server-sent event read from an upstream (a Responses stream's completed
response with its generated images is a few MB): beyond it the stream fails rather than
the gateway holding all an upstream sends without ever ending an event."""


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


async def read_events(
    content: Body, secret: Secrets = None, unlabelled: bool = False
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
    parts = tuple(part for part in _parts(secret) if len(part) >= WHOLE_KEY)
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
    content: Body, first: bytes, parts: tuple[str, ...]
) -> AsyncIterator[SSEvent]:
    """A stream request answered by one whole body: an error object (a 200 carrying
    ``{"error": ...}``, as OpenRouter and proxies send it) as the one event it stands for, so
    the provider's stream reader tells the upstream's words with the status they mean; any
    other body (a proxy's HTML page, a whole answer) as a failed attempt naming what it said.
    Without this the upstream's words were lost in "stream ended before [DONE]"."""
    raw = first + await error_body(content)
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
        said = body_words(text)
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
    return (longest if len(longest) >= WHOLE_KEY else part).encode()


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
