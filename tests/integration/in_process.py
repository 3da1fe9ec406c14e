"""A gateway in the test's own process (``create_app``) on a real port, for the tests that add
a stage to its pipelines or read its state; and any aiohttp application so served (``serving``:
the scripted upstreams of the tests that need one to misbehave in a way the simulator does not)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
