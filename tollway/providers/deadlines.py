"""Upstream time limits enforced by one coarse watchdog instead of a timer per request.

Timers for each read and for each call's total (as aiohttp's client arms them) would be
armed and re-armed for every request and every chunk; under load that bookkeeping cost about
20 µs per request on our benchmark (docs/performance.md). Here a request registers its
deadlines in a set (a few attribute writes), and one task wakes every ``resolution`` seconds
and cancels the calls whose deadline has passed. A limit therefore fires up to
``resolution`` late, which is far below any sensible timeout.

A stream's first-byte limit bounds the wait for its first content, not its first event: until
the attempt it is read for (``OPENING``) has content, the events of its head (and SSE
comments, which are no events) do not restart it, so an upstream that keeps a stream alive
without a token is given up at that limit (a latency threshold's, a deadline's).

Only a call that is waiting on its upstream is ever cancelled: a stream that has handed a
chunk to its consumer is paused (``waiting = False``) until it asks for the next one, so the
cancellation can never land in the consumer's own awaits (e.g. writing to a slow client).

The same rounds notice a client that has gone: a call made for a client request (``CALLER``,
set by the dialect for its task) is cancelled, as ``"client"``, once that client's connection
has closed, so a long wait for a first token or through a silent reasoning phase stops when
the caller hangs up instead of running (and being billed) to the end. aiohttp's own handler
cancellation would do it too, but at any await of the request (a budget reservation in
Redis, a settlement); here it only ever lands where a time limit can.

A stream whose total limit passes while its consumer holds it (a write to a client that
reads slower than the answer comes) ends at its next resume, as the limit's error, noted as
the client's doing (``client_held``: the watchdog saw the limit pass during a hold), which is
no failure of the deployment's. A client that takes nothing at all would still keep the
upstream call, its pooled connection and the provider's generation going for as long as it
keeps its socket open: once the total limit has passed, a stream whose consumer has held it
for a whole gap limit (a write waiting that long: its client took nothing meanwhile) has its
client's connection closed by the watchdog, which ends the write and the stream.

A call also notes whether its request went out whole (``Deadline.sent``, set by the client
once the body is written, or by the answer's head): a call cut before that
(its client left while it connected) reached no provider, which bills nothing for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextvars import ContextVar
from typing import Literal, Protocol

from tollway.core.types import UpstreamTimeouts

Phase = Literal["first_byte", "total", "client"]
"""What ended a call: its first-byte (or gap) limit, its total limit, or its client leaving."""

log = logging.getLogger("tollway.upstream")


class Caller(Protocol):
    """The connection a client request came on (aiohttp's request handler)."""

    @property
    def connected(self) -> bool:
        """Whether the client's connection is still open."""
        ...

    @property
    def transport(self) -> asyncio.Transport | None:
        """The client's connection (``None`` once closed): aborted when it stalls a stream."""
        ...


class Opening(Protocol):
    """What a stream is read for (the pipeline's attempt): it tells when content has come."""

    @property
    def first_chunk_at(self) -> float | None:
        """When the stream's first content was in hand; ``None`` while only its head came."""
        ...


OPENING: ContextVar[Opening | None] = ContextVar("tollway_opening", default=None)
"""The attempt the stream being opened in the current task is read for: set by the pipeline
while it asks for the stream's first chunk, read when the upstream call starts. Until that
attempt has content, the stream's events (its head: a role-only delta, ``message_start``,
pings, empty events) do not restart the first-byte limit: it bounds the wait for the first
token, not for the first event. Without one, the first event starts the stream."""

CALLER: ContextVar[Caller | None] = ContextVar("tollway_caller", default=None)
"""The client connection the current task serves: set by the dialect (``exchange``) in the
request's own task (aiohttp runs each in a new one), read when an upstream call starts."""

RESOLUTION = 0.05
"""Seconds between watchdog rounds: how late a time limit may fire."""


class Deadline:
    """The time limits of one upstream call, as loop times."""

    __slots__ = (
        "begun",
        "caller",
        "client_held",
        "expired",
        "first_byte",
        "first_event_at",
        "gap",
        "gap_at",
        "loop",
        "opening",
        "sent",
        "task",
        "total_at",
        "waiting",
    )

    def __init__(
        self,
        task: asyncio.Task[object],
        timeouts: UpstreamTimeouts,
        caller: Caller | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """``loop``: the task's, when the caller has it at hand."""
        self.task = task
        self.caller = caller
        self.loop = loop = task.get_loop() if loop is None else loop
        now = loop.time()
        self.first_byte = first_byte = timeouts.first_byte
        gap = timeouts.gap
        self.gap = first_byte if gap is None else gap
        self.gap_at = now + first_byte
        self.total_at = now + timeouts.total
        first_event = timeouts.first_event
        self.first_event_at = None if first_event is None else now + first_event
        self.waiting = True
        self.expired: Phase | None = None
        self.client_held = False
        """The total limit passed while the call's consumer held it (seen by the watchdog):
        a stream it was writing to a slow client, not waiting for its upstream."""
        self.opening: Opening | None = None
        """The attempt a stream is read for (``OPENING``), until it has content."""
        self.begun = False
        """The stream's content has begun: a silence now is a gap between events."""
        self.sent = False
        """The request went out whole: the provider has the prompt (and bills its reading)."""

    def mark_sent(self) -> None:
        """The request was written whole (the client calls it): the provider has the prompt."""
        self.sent = True

    def received(self) -> None:
        """The answer's head arrived: the wait for its first content starts now (still under
        the first-byte limit, through the stream's own head and keep-alives; the gap limit
        applies once content has been handed over), but no later than a deadline allows."""
        self.sent = True  # answered: the request was had whole, whoever wrote it
        gap_at = self.loop.time() + self.first_byte
        latest = self.first_event_at
        self.gap_at = gap_at if latest is None or gap_at < latest else latest

    def pause(self) -> None:
        """The call hands data to its consumer: nothing to cancel until it asks for more."""
        self.waiting = False

    def resume(self) -> bool:
        """The consumer asks for more; False when the total limit passed meanwhile. Before
        the stream's first content (``opening``), the first-byte limit runs on."""
        now = self.loop.time()
        if now >= self.total_at:
            return False
        opening = self.opening
        if opening is None or opening.first_chunk_at is not None:
            self.opening = None
            self.begun = True
            self.gap_at = now + self.gap
        self.waiting = True
        return True

    def timed_out(self) -> bool:
        """Whether a ``CancelledError`` in this call came from this deadline, or from its
        client leaving (and absorb it). Not when the task was also cancelled from elsewhere:
        the server's shutdown cancels a handler and closes its connection in one step, so the
        watchdog may see the client gone too; the shutdown's cancellation goes on."""
        if self.expired is None:
            return False
        return self.task.uncancel() == 0


class Deadlines:
    """Watches the deadlines of every upstream call in flight."""

    def __init__(self, resolution: float = RESOLUTION) -> None:
        self._resolution = resolution
        self._watched: set[Deadline] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the first call's: one loop only

    def watch(self, timeouts: UpstreamTimeouts) -> Deadline:
        """Start watching the current task's call; ``forget`` it when the call ends."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        # With its loop given, current_task skips get_running_loop (a getpid system call).
        task = asyncio.current_task(loop)
        assert task is not None, "upstream calls run inside a task"
        deadline = Deadline(task, timeouts, CALLER.get(), loop)
        self._watched.add(deadline)
        if self._watchdog is None:
            self._watchdog = loop.create_task(self._watch(), name="tollway-upstream-deadlines")
        return deadline

    def forget(self, deadline: Deadline) -> None:
        """The call has ended."""
        self._watched.discard(deadline)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._resolution)
            if not self._watched:
                continue
            now = loop.time()
            for deadline in self._watched:
                if deadline.expired is not None:
                    continue
                if not deadline.waiting:
                    if now >= deadline.total_at:
                        deadline.client_held = True
                        # Held since gap_at at the latest (the last resume, and the upstream's
                        # wait after it): a whole gap limit once it is a gap limit past that.
                        if now >= deadline.gap_at + deadline.gap and deadline.caller is not None:
                            _close_stalled(deadline)
                    continue
                if now >= deadline.total_at:
                    deadline.expired = "total"
                elif now >= deadline.gap_at:
                    deadline.expired = "first_byte"
                elif deadline.caller is not None and not deadline.caller.connected:
                    deadline.expired = "client"
                else:
                    continue
                deadline.task.cancel()

    async def close(self) -> None:
        """Stop the watchdog."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        self._loop = None


def _close_stalled(deadline: Deadline) -> None:
    """Close the connection of a client that takes nothing of a stream past the call's total
    limit: the write waiting on it ends, and the stream with the total limit's error."""
    caller, deadline.caller = deadline.caller, None  # once
    transport = None if caller is None else caller.transport
    if transport is not None:
        log.info(
            "closed the connection of a stream's client that took nothing for %gs past the "
            "upstream call's total limit",
            deadline.gap,
        )
        transport.abort()  # not close(): that would wait to flush what the client won't read
