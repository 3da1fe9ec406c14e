"""A very large request through a real gateway: counting its tokens must not stall the others.

Counted on the event loop, 40 MB of one repeated letter took 35 s of tiktoken's merging, and
every other request of the gateway (health checks included) waited for it. Long texts are now
counted in segments, in a worker thread, before routing (pricing/tokens.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, running_gateway

WINDOW = 1_000_000


@pytest.fixture(scope="module")
def gateway(log_dir: Path, simulator_url: str) -> Iterator[str]:
    deployment = {
        "provider": "openai", "model": "sim-chat", "api_base": f"{simulator_url}/v1",
        "api_key": "env:TEST_UPSTREAM_KEY", "context_window": WINDOW,
    }  # fmt: skip
    config = {"models": [{"name": "windowed", "deployments": [deployment]}]}
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, _):
        yield url


async def _big_and_small(url: str, text: str) -> tuple[int, str, list[float], float]:
    """Send one request of ``text`` and, while it is counted, health checks; the big
    answer's status and error code, when each check was answered and when the big one was."""
    body = {"model": "windowed", "messages": [{"role": "user", "content": text}]}
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def big() -> tuple[int, str, float]:
            async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
                answer = await r.json()
                return r.status, answer["error"]["code"], time.monotonic()

        async def checks() -> list[float]:
            await asyncio.sleep(0.5)  # the body is sent and being counted
            answered = []
            for _ in range(3):
                async with session.get(url + "/health/live") as r:
                    assert r.status == 200
                answered.append(time.monotonic())
                await asyncio.sleep(0.05)
            return answered

        (status, code, ended), answered = await asyncio.gather(big(), checks())
    return status, code, answered, ended


def test_a_huge_degenerate_request_does_not_stall_the_gateway(gateway: str) -> None:
    text = "a" * (8 * WINDOW + 16)  # a million tokens of one letter: over the window
    status, code, answered, ended = asyncio.run(_big_and_small(gateway, text))
    assert (status, code) == (400, "context_length_exceeded")
    # Every health check was answered while the big request was still being counted.
    assert max(answered) < ended, (answered, ended)
