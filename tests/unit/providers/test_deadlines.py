"""Upstream time limits kept by the deadline watchdog, against a real local HTTP server."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tollway.core.errors import ClientDisconnected, UpstreamTimeout
from tollway.core.types import Deployment, UpstreamTimeouts
from tollway.providers.deadlines import CALLER, OPENING, Deadline, Deadlines
from tollway.providers.http import UpstreamClient
from tollway.providers.http1 import HTTP1Client
from tollway.routing.table import within


def _no_error(raw: object) -> tuple[str, None, None, None]:
    return str(raw), None, None, None


async def _slow_json(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("delay", "0")))
    return web.json_response({"ok": True})


async def _events(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(float(request.query.get("head", "0")))  # before the answer's head
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    gap = float(request.query.get("gap", "0"))
    for index in range(int(request.query.get("count", "3"))):
        await asyncio.sleep(gap)
        await response.write(f"data: {index}\n\n".encode())
    await response.write_eof()
    return response


async def _client() -> AsyncIterator[tuple[UpstreamClient, str]]:
    app = web.Application()
    app.router.add_post("/json", _slow_json)
    app.router.add_post("/events", _events)
    # Handlers still answering (the slow ones the limits cut off) are cancelled at cleanup,
    # not waited for: aiohttp's default would wait out each one's delay.
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = UpstreamClient(HTTP1Client(), Deadlines(resolution=0.01))
    try:
        yield client, f"http://127.0.0.1:{port}"
    finally:
        await client.close()
        await runner.cleanup()


def _run(test: object) -> None:
    async def main() -> None:
        async for client, base in _client():
            await test(client, base)  # type: ignore[operator]

    asyncio.run(main())


def test_first_byte_limit_fires_close_to_its_value() -> None:
    async def check(client: UpstreamClient, base: str) -> None:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout) as caught:
            await client.post_json(
                base + "/json?delay=2", {}, {}, UpstreamTimeouts(1.0, 0.2, 5.0), _no_error
            )
        elapsed = time.monotonic() - started
        assert caught.value.phase == "first_byte"
        assert "first-byte timeout of 0.2s" in caught.value.message
        assert 0.19 <= elapsed < 1.0

    _run(check)


def test_total_limit_wins_when_it_is_shorter() -> None:
    async def check(client: UpstreamClient, base: str) -> None:
        with pytest.raises(UpstreamTimeout) as caught:
            await client.post_json(
                base + "/json?delay=2", {}, {}, UpstreamTimeouts(1.0, 5.0, 0.2), _no_error
            )
        assert caught.value.phase == "total"

    _run(check)


def test_answer_within_limits_is_returned_and_the_task_is_not_cancelled_later() -> None:
    async def check(client: UpstreamClient, base: str) -> None:
        answer = await client.post_json(
            base + "/json?delay=0.05", {}, {}, UpstreamTimeouts(1.0, 0.1, 0.2), _no_error
        )
        assert answer == {"ok": True}
        # Well past both limits: a late cancellation would surface here.
        await asyncio.sleep(0.4)
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0

    _run(check)


def test_gap_between_stream_events_is_limited() -> None:
    async def check(client: UpstreamClient, base: str) -> None:
        events = client.post_stream(
            base + "/events?gap=0.5&count=3", {}, {}, UpstreamTimeouts(1.0, 0.2, 5.0), _no_error
        )
        with pytest.raises(UpstreamTimeout) as caught:
            async for _ in events:
                pass
        assert caught.value.phase == "first_byte"

    _run(check)


def test_a_slow_consumer_is_never_cancelled_by_the_gap_limit() -> None:
    async def check(client: UpstreamClient, base: str) -> None:
        events = client.post_stream(
            base + "/events?gap=0&count=3", {}, {}, UpstreamTimeouts(1.0, 0.1, 5.0), _no_error
        )
        received = []
        async for event in events:
            received.append(event.data)
            await asyncio.sleep(0.3)  # the consumer holds each event longer than the gap limit
        assert received == [b"0", b"1", b"2"]

    _run(check)


def test_total_limit_ends_a_stream_whose_consumer_is_slow() -> None:
    async def check(client: UpstreamClient, base: str) -> None:
        events = client.post_stream(
            base + "/events?gap=0&count=5", {}, {}, UpstreamTimeouts(1.0, 1.0, 0.3), _no_error
        )
        received = []
        with pytest.raises(UpstreamTimeout) as caught:
            async for event in events:
                received.append(event.data)
                await asyncio.sleep(0.2)
        assert caught.value.phase == "total"
        assert 1 <= len(received) < 5

    _run(check)


@pytest.mark.parametrize("first_byte", [0.7, 60.0])
def test_a_deadline_bounds_a_streams_first_event_however_early_its_head_came(
    first_byte: float,
) -> None:
    # 0.8 s of a deadline left: the head comes at 0.6 s, the first event 0.6 s after it. The
    # first-byte limit restarts at the head (it would end at 1.3 s), but the deadline does not
    # (whether it cut the deployment's own first-byte limit or left it as it was).
    own = UpstreamTimeouts(connect=0.4, first_byte=first_byte, total=10.0)
    deployment = within(
        Deployment("d", "openai", "m", "http://u", own), 0.8, streaming=True, ends_at=0.0
    )

    async def check(client: UpstreamClient, base: str) -> None:
        started = time.monotonic()
        url = base + "/events?head=0.6&gap=0.6&count=1"
        with pytest.raises(UpstreamTimeout) as caught:
            async for _ in client.post_stream(url, {}, {}, deployment.timeouts, _no_error):
                pass
        assert caught.value.phase == "first_byte"
        # Before the first event's 1.2 s (which would have ended the stream without a timeout),
        # with room for the watchdog's 0.05 s rounds on a busy machine (a suite beside other
        # work took 0.2 s more than asked).
        assert time.monotonic() - started < 1.15

    _run(check)


class _Attempt:
    """What a stream is read for: its first content not yet in hand."""

    first_chunk_at: float | None = None


def test_a_streams_head_does_not_restart_its_first_byte_limit() -> None:
    # Events every 0.15 s under a first-byte limit of 0.3 s: none of them is content for the
    # attempt reading them, so the limit runs from the answer's head, not from each event.
    async def check(client: UpstreamClient, base: str) -> None:
        OPENING.set(_Attempt())
        started = time.monotonic()
        timeouts = UpstreamTimeouts(connect=1.0, first_byte=0.3, total=5.0)
        with pytest.raises(UpstreamTimeout) as caught:
            async for _ in client.post_stream(
                base + "/events?gap=0.15&count=10", {}, {}, timeouts, _no_error
            ):
                pass
        assert caught.value.phase == "first_byte"
        assert "nothing of its answer within the first-byte timeout" in caught.value.message
        assert time.monotonic() - started < 0.6

    _run(check)


def test_a_stream_whose_content_has_begun_pauses_under_its_gap_limit() -> None:
    async def check(client: UpstreamClient, base: str) -> None:
        attempt = _Attempt()
        OPENING.set(attempt)
        timeouts = UpstreamTimeouts(connect=1.0, first_byte=0.3, total=5.0)
        got = []
        async for event in client.post_stream(
            base + "/events?gap=0.15&count=5", {}, {}, timeouts, _no_error
        ):
            attempt.first_chunk_at = time.monotonic()  # each event is content
            got.append(event.data)
        assert got == [b"0", b"1", b"2", b"3", b"4"]

    _run(check)


class _Caller:
    """A client connection that closes when told to."""

    def __init__(self) -> None:
        self.connected = True
        self.transport: asyncio.Transport | None = None


def test_a_call_for_a_client_that_left_ends_as_its_disconnection() -> None:
    async def check(client: UpstreamClient, base: str) -> None:
        caller = _Caller()
        CALLER.set(caller)
        asyncio.get_running_loop().call_later(0.1, setattr, caller, "connected", False)
        started = time.monotonic()
        with pytest.raises(ClientDisconnected) as caught:
            await client.post_json(
                base + "/json?delay=2", {}, {}, UpstreamTimeouts(1.0, 5.0, 5.0), _no_error
            )
        assert caught.value.status == 499
        assert time.monotonic() - started < 0.5
        # The task was not left cancelled: it goes on (to settle, to log) as usual.
        await asyncio.sleep(0)

    _run(check)


def test_a_stream_for_a_client_that_left_ends_during_a_silence() -> None:
    async def check(client: UpstreamClient, base: str) -> None:
        caller = _Caller()
        CALLER.set(caller)
        events = client.post_stream(
            base + "/events?gap=2&count=2", {}, {}, UpstreamTimeouts(1.0, 5.0, 10.0), _no_error
        )
        started = time.monotonic()
        asyncio.get_running_loop().call_later(0.1, setattr, caller, "connected", False)
        with pytest.raises(ClientDisconnected):
            async for _ in events:
                pass
        assert time.monotonic() - started < 0.5

    _run(check)


def test_a_cancellation_from_elsewhere_wins_over_the_deadlines_own() -> None:
    # aiohttp's shutdown cancels a handler still running and closes its connection in one
    # step, so the watchdog may also see the client gone and cancel the call as "client"
    # before it resumes. The server's cancellation must go on (the request is logged as cut
    # by the shutdown), not be absorbed as the client leaving.
    async def check() -> None:
        async def waiting() -> None:
            await asyncio.sleep(10)

        task = asyncio.create_task(waiting())
        await asyncio.sleep(0)
        alone = Deadline(task, UpstreamTimeouts(1.0, 5.0, 5.0))
        alone.expired = "client"
        task.cancel()  # the watchdog's own
        assert alone.timed_out() and task.cancelling() == 0
        task.cancel()  # the server's
        task.cancel()  # then the watchdog's
        assert not alone.timed_out() and task.cancelling() == 1
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(check())


def test_a_finished_call_leaves_its_task_to_reference_counting_not_the_collector() -> None:
    # A call's deadline holds its task: anything the task's context or the connection keeps
    # that holds the deadline strongly makes a cycle every request, freed only by the
    # garbage collector (session 21: 5% more CPU a request, paired).
    async def check(client: UpstreamClient, base: str) -> None:
        async def call() -> None:
            await client.post_json(
                base + "/json", {}, {}, UpstreamTimeouts(1.0, 1.0, 1.0), _no_error
            )

        task = asyncio.ensure_future(call())
        await task
        gone = weakref.ref(task)
        del task
        await asyncio.sleep(0)  # the loop's own references to the finished task let go
        assert gone() is None, "the finished call's task is held in a reference cycle"

    gc.disable()
    try:
        _run(check)
    finally:
        gc.enable()
