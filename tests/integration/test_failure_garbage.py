"""Failed requests leave no reference cycles behind.

A kept error's traceback holds the frames it passed through, and they hold the request's
context, which holds the error. Left as they are, every failed request (and every failed
attempt) is garbage only the cyclic collector can free; during an upstream outage, when
every request fails, that took about a quarter of the gateway's CPU. The gateway runs in
this process so its objects can be counted with the collector switched off.
"""

from __future__ import annotations

import gc
from pathlib import Path

import httpx
from aiohttp import web

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, free_port
from tollway.app import create_app
from tollway.config import validate_settings
from tollway.core.context import RequestContext


def _live_contexts() -> int:
    return sum(1 for obj in gc.get_objects() if isinstance(obj, RequestContext))


async def test_failed_requests_are_freed_without_the_cycle_collector(
    tmp_path: Path, simulator_url: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connect refused
    settings = validate_settings(
        {
            "store": {"url": f"sqlite+aiosqlite:///{tmp_path}/gw.db"},
            "server": {"reload_interval": None},
            "telemetry": {"request_log": {"enabled": False}},
            "models": [
                {"name": "down", "deployments": [{"provider": "openai", "model": "m",
                                                   "api_base": dead}]},
                {"name": "failover", "deployments": [
                    {"provider": "openai", "model": "m", "api_base": dead, "id": "dead"},
                    {"provider": "openai", "model": "sim-chat", "api_base": f"{simulator_url}/v1",
                     "id": "alive", "api_key": "env:TEST_UPSTREAM_KEY"},
                ]},
            ],
        },
        source="test",
    )  # fmt: skip
    app = create_app(settings, {"TOLLWAY_ADMIN_KEY": CLIENT_KEY, "TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    body = {"messages": [{"role": "user", "content": "hi"}]}
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {CLIENT_KEY}"},
            timeout=30,
        ) as client:
            warm = await client.post("/v1/chat/completions", json={**body, "model": "down"})
            assert warm.status_code == 502
            gc.collect()
            gc.disable()
            try:
                before = _live_contexts()
                for model, status in (("down", 502), ("failover", 200)) * 10:
                    answer = await client.post(
                        "/v1/chat/completions", json={**body, "model": model}
                    )
                    assert answer.status_code == status, answer.text
                left = _live_contexts() - before
            finally:
                gc.enable()
    finally:
        await runner.cleanup()
    assert left == 0, f"{left} request contexts are held by reference cycles"
