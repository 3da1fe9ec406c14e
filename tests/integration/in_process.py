"""A gateway in the test's own process (``create_app``) on a real port, for the tests that add
a stage to its pipelines or read its state; and any aiohttp application so served (``serving``:
the scripted upstreams of the tests that need one to misbehave in a way the simulator does not;
``serving_in_thread`` for the tests whose blocking SDK clients would stall the test's loop)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anthropic
import openai
from aiohttp import web

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, free_port
from tollway.app import GATEWAY, create_app
from tollway.config import validate_settings
from tollway.core.pipeline import Pipeline, Stage
from tollway.gateway import Gateway


def with_stage(gateway: Gateway, stage: Stage) -> None:
    """Every pipeline of ``gateway`` with ``stage`` last."""
    gateway._pipelines = tuple(  # type: ignore[assignment]
        Pipeline(
            pipeline.router,
            pipeline._chat_providers,
            pipeline._embedding_providers,
            stages=(*pipeline._stages, stage),
            metering=pipeline.metering,
        )
        for pipeline in gateway._pipelines or ()
    )


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """``app`` on a free port of 127.0.0.1: its base URL (no path), until the block ends."""
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextmanager
def serving_in_thread(app: web.Application, handler_cancellation: bool = False) -> Iterator[str]:
    """``app`` on a free port of 127.0.0.1, served by an event loop in a thread of its own (the
    test's blocking clients would stall one shared with them): its base URL, until the block
    ends. ``handler_cancellation``: a handler is cancelled when its client hangs up."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, handler_cancellation=handler_cancellation)
    port = free_port()

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def async_openai(gateway: str) -> openai.AsyncOpenAI:
    """The async openai client of the scripted-upstream tests: their upstream serves on the
    tests' own event loop, so a sync client would block it. No retries: each attempt counts."""
    return openai.AsyncOpenAI(
        base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10
    )


def async_anthropic(gateway: str) -> anthropic.AsyncAnthropic:
    """``async_openai``'s Anthropic counterpart."""
    return anthropic.AsyncAnthropic(base_url=gateway, api_key=CLIENT_KEY, max_retries=0, timeout=10)


def bad_then_good(bad: dict[str, Any], good: dict[str, Any], prefix: str = "") -> list[Any]:
    """The model groups of a scripted upstream's tests: ``{prefix}bad``, the misbehaving
    deployment alone, and ``{prefix}fallback``, it and then a good one."""
    return [
        {"name": f"{prefix}bad", "deployments": [bad]},
        {"name": f"{prefix}fallback", "strategy": "priority", "deployments": [bad, good]},
    ]


@asynccontextmanager
async def gateway_in_process(
    config: dict[str, Any], stage: Stage | None = None, config_path: Path | None = None
) -> AsyncIterator[tuple[str, Gateway]]:
    """The gateway of ``config`` (its upstream key and admin key the tests'), its pipelines
    ending with ``stage`` when given: its base URL and the gateway, until the block ends.
    ``config_path``: the file ``config`` is said to come from, which a reload reads."""
    environ = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_ADMIN_KEY": CLIENT_KEY}
    app = create_app(validate_settings(config, source="test"), environ, config_path)
    async with serving(app) as url:
        if stage is not None:
            with_stage(app[GATEWAY], stage)
        yield url, app[GATEWAY]
