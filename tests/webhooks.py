"""A webhook receiver for alert tests: a real aiohttp server on a free port, in a thread.

It records every POSTed body by path, and can be told to answer the first N deliveries
(of a path, or of any) with 500, so retries are seen from the outside, or to redirect them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from aiohttp import web

from tests.support import free_port


class WebhookReceiver:
    """Records deliveries; ``fail_next(n)`` answers the next ``n`` POSTs with an error."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._received: list[tuple[str, Any]] = []
        self._failures_left = 0
        self._failure_status = 500
        self._redirect: str | None = None
        self.failed = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            if self._failures_left > 0:
                self._failures_left -= 1
                self.failed += 1
                if self._redirect is not None:
                    # 307 keeps the method and the body: a client that follows it re-POSTs.
                    headers = {"Location": self._redirect}
                    return web.Response(status=self._failure_status, headers=headers)
                return web.Response(status=self._failure_status, text="told to fail")
            self._received.append((request.path, orjson.loads(body)))
        return web.Response(text="ok")

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next ``count`` deliveries with ``status``."""
        with self._lock:
            self._failures_left = count
            self._failure_status = status
            self._redirect = None

    def redirect_next(self, count: int, location: str, status: int = 307) -> None:
        """Answer the next ``count`` deliveries with a redirect to ``location``."""
        with self._lock:
            self._failures_left = count
            self._failure_status = status
            self._redirect = location

    def bodies(self, path: str | None = None) -> list[Any]:
        """The bodies received so far (at ``path``, if given), in order."""
        with self._lock:
            return [body for where, body in self._received if path is None or where == path]

    def clear(self) -> None:
        with self._lock:
            self._received.clear()

    def wait_for(
        self,
        predicate: Callable[[list[Any]], bool],
        path: str | None = None,
        timeout: float = 15.0,
    ) -> list[Any]:
        """Poll until ``predicate(bodies)`` holds; the bodies then (fails on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            bodies = self.bodies(path)
            if predicate(bodies):
                return bodies
            if time.monotonic() > deadline:
                raise AssertionError(f"webhook receiver: condition not met in {timeout}s: {bodies}")
            time.sleep(0.05)

    def stop(self) -> None:
        async def cleanup() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A running receiver, stopped afterwards."""
    receiver = WebhookReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
