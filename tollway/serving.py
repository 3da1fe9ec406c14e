"""Running the gateway's aiohttp application until SIGTERM or SIGINT, and stopping it whole.

aiohttp's ``run_app`` raises out of the event loop on each of these signals: a second one
while the gateway stopped cancelled its shutdown (the request log's queue and the budget
spend never written), and one while it started cancelled a store migration half-way. Here
the first signal asks for a stop, which waits for start-up to finish; later ones are logged.

A stop can begin with a drain delay (``server.drain_delay``): the gateway listens and serves
on while its readiness fails, so a load balancer takes it out of rotation before connections
are refused; a second signal cuts the delay short. Every answer from the stop on says
``Connection: close`` and closes its connection, so that clients and proxies holding one in
a pool open their next elsewhere rather than on a listener about to close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import hdrs, web

log = logging.getLogger("tollway")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """SIGTERM and SIGINT: the first asks the gateway to stop, a second during the drain
    delay skips the rest of it, later ones change nothing (what the gateway still owes the
    store is being written; SIGKILL cuts it short)."""

    def __init__(self, on_stop: Callable[[], None], drain_delay: float = 0.0) -> None:
        self.asked = asyncio.Event()
        self.serving = False
        # ``asked`` as a plain flag, for the one check every answer makes during a drain delay.
        self.stopping = False
        self._on_stop = on_stop
        self._drain_delay = drain_delay
        # From the first signal (not once the loop resumes the runner) so that a second one
        # right after it skips the delay rather than being ignored.
        self._draining = False
        self._hurried = asyncio.Event()

    def __call__(self, signum: signal.Signals) -> None:
        name = signum.name
        if self.asked.is_set():
            if self._draining and not self._hurried.is_set():
                log.info("%s: the rest of the drain delay is skipped, stopping now", name)
                self._hurried.set()
            else:
                log.warning("%s ignored: the gateway is already stopping", name)
            return
        if self.serving:
            log.info("%s: stopping", name)
        else:  # a migration cut half-way can leave a store no later start can use
            log.info("%s while starting: stopping once started", name)
        self._draining = self.serving and self._drain_delay > 0
        self.stopping = True
        self.asked.set()
        self._on_stop()  # now, not once the loop gets round to the cleanup

    async def close_connections(self, _: web.Request, response: web.StreamResponse) -> None:
        """``on_response_prepare``: once a stop is asked for, ``response`` closes its
        connection and says so (a stream already under way has its headers sent: it finishes
        as it began, and the next answer on its connection closes it)."""
        if self.stopping:
            response.force_close()
            response.headers[hdrs.CONNECTION] = "close"  # aiohttp has written it already

    async def drained(self) -> None:
        """Once a stop is asked for while serving: the drain delay, serving on, or until a
        second signal (none when the gateway never served)."""
        if not self._draining:
            return
        log.info(
            "draining for %gs: still serving, /health/ready answers 503; then stopping",
            self._drain_delay,
        )
        try:
            async with asyncio.timeout(self._drain_delay):
                await self._hurried.wait()
        except TimeoutError:
            pass
        finally:
            self._draining = False


async def serve(
    app: web.Application,
    sockets: Iterable[socket.socket],
    *,
    shutdown_timeout: float,
    drain_delay: float = 0.0,
    on_stop: Callable[[], None] = lambda: None,
    **handler_args: Any,
) -> None:
    """Serve ``app`` on the bound ``sockets`` until SIGTERM or SIGINT; then serve on for
    ``drain_delay`` (if it served at all; each answer closing its connection), stop taking
    connections, let requests in flight finish (up to ``shutdown_timeout``) and run the
    application's cleanup. ``on_stop`` is called from the first signal's handler itself;
    ``handler_args`` go to aiohttp's request handler (access log)."""
    loop = asyncio.get_running_loop()
    stop = StopRequest(on_stop, drain_delay)
    if drain_delay > 0:
        # Without a delay the listener closes at once and aiohttp closes each connection
        # after its request in flight: no handler then, so the hot path is unchanged.
        app.on_response_prepare.append(stop.close_connections)
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop, signum)
    try:
        runner = web.AppRunner(
            app, handle_signals=False, shutdown_timeout=shutdown_timeout, **handler_args
        )
        await runner.setup()  # the gateway's start, whole: a stop asked for meanwhile waits
        try:
            if not stop.asked.is_set():
                for sock in sockets:
                    await web.SockSite(runner, sock).start()
                stop.serving = True
                await stop.asked.wait()
                await stop.drained()
        finally:
            await runner.cleanup()
    finally:
        for signum in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
