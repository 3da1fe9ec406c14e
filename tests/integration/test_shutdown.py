"""Stopping the gateway: SIGTERM / SIGINT (again while it stops), SIGHUP while it stops,
and a stop asked for while it starts. What it owed the store is written whatever comes.

Real ``tollway serve`` processes on the simulator, real signals, the store read afterwards.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_request_log import log_config
from tests.support import (
    CLIENT_KEY,
    Process,
    _gateway_process,
    fresh_store,
    running_gateway,
    wait_http,
)

BUDGET = {"scope": "org", "id": "*", "period": "day", "limit_usd": 100000}


def stop_config(simulator_url: str, store_url: str) -> dict[str, Any]:
    """Nothing written before shutdown: the request log and spend only by the last writes."""
    config = log_config(simulator_url, store_url, flush_interval="60s", batch_size=1000)
    config["limits"] = {"backend": "memory", "spend_flush_interval": "60s", "budgets": [BUDGET]}
    return config


async def _send(url: str, session: aiohttp.ClientSession, rid: str, stream: bool) -> bool:
    """One chat request; whether it was answered whole."""
    body = {"model": "priced-chat", "stream": stream,
            "messages": [{"role": "user", "content": "hello"}]}  # fmt: skip
    slow = {"x-sim-tpot-ms": "100", "x-sim-output-tokens": "30"} if stream else {}
    headers = {"Authorization": f"Bearer {CLIENT_KEY}", "x-request-id": rid,
               "x-sim-test-tag": rid, **slow}  # fmt: skip
    if not stream:
        headers["x-sim-ttft-ms"] = "3000"
    try:
        async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
            text = await r.text()
    except aiohttp.ClientError:
        return False
    return r.status == 200 and ("[DONE]" in text if stream else '"choices"' in text)


async def _slow_requests_then(
    url: str, simulator_url: str, process: Process, signals: list[signal.Signals]
) -> int:
    """Six slow requests (half streamed) in flight, then ``signals`` 0.3 s apart; how many
    were answered whole."""
    async with aiohttp.ClientSession() as session:
        rids = {f"stop-{uuid.uuid4().hex[:12]}" for _ in range(6)}
        sent = [asyncio.create_task(_send(url, session, rid, n % 2 == 0))
                for n, rid in enumerate(rids)]  # fmt: skip
        deadline = time.monotonic() + 10
        while not rids <= await _at_the_simulator(session, simulator_url):
            assert time.monotonic() < deadline, "the requests did not reach the simulator"
            await asyncio.sleep(0.05)
        for sig in signals:
            process.proc.send_signal(sig)
            await asyncio.sleep(0.3)
        return sum(await asyncio.gather(*sent))


async def _at_the_simulator(session: aiohttp.ClientSession, simulator_url: str) -> set[str]:
    async with session.get(simulator_url + "/_sim/requests") as response:
        recorded = await response.json()
    return {r["headers"].get("x-sim-test-tag", "") for r in recorded}


def _logged(db_path: Path) -> tuple[list[tuple[str, int, int]], int]:
    """The request log's rows (request id, status, cost) and the budget's spend."""
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT request_id, status, cost_micros FROM request_log").fetchall()
        spend = db.execute("SELECT sum(spent_micros) FROM budget_spend").fetchone()[0]
    return rows, spend or 0


@pytest.mark.parametrize("again", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_while_stopping_loses_nothing(
    log_dir: Path, simulator_url: str, tmp_path: Path, again: signal.Signals
) -> None:
    # A second SIGTERM / SIGINT (Ctrl-C twice, a supervisor that repeats itself) while the
    # gateway waited for requests in flight cancelled the whole shutdown: requests cut, a
    # traceback, and neither the request log's queue nor the budget spend ever written.
    store_url = f"sqlite+aiosqlite:///{tmp_path}/tollway.db"
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": store_url}
    with running_gateway(log_dir, stop_config(simulator_url, store_url), env) as (url, process):
        first = signal.SIGINT if again == signal.SIGINT else signal.SIGTERM
        answered = asyncio.run(_slow_requests_then(url, simulator_url, process, [first, again]))
        assert process.proc.wait(30) == 0
        output = process.output()
        assert "Traceback" not in output, output
        assert "ignored: the gateway is already stopping" in output
    assert answered == 6
    rows, spend = _logged(tmp_path / "tollway.db")
    assert len(rows) == 6 and all(status == 200 for _, status, _ in rows)
    assert spend == sum(cost for _, _, cost in rows) > 0


def test_sighup_while_stopping_reloads_nothing(
    log_dir: Path, simulator_url: str, tmp_path: Path
) -> None:
    # SIGHUP is meant to be ignored once stopping, but the gateway counted as stopping only
    # after the requests in flight were done: a SIGHUP meanwhile reloaded the config.
    store_url = f"sqlite+aiosqlite:///{tmp_path}/tollway.db"
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": store_url}
    with running_gateway(log_dir, stop_config(simulator_url, store_url), env) as (url, process):
        stops = [signal.SIGTERM, signal.SIGHUP]
        answered = asyncio.run(_slow_requests_then(url, simulator_url, process, stops))
        assert process.proc.wait(30) == 0
        output = process.output()
    assert answered == 6
    assert "config reloaded" not in output and "SIGHUP ignored: the gateway is stopping" in output
    assert "Traceback" not in output
    assert len(_logged(tmp_path / "tollway.db")[0]) == 6


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_stop_asked_for_while_migrating_leaves_a_store_that_starts(
    log_dir: Path, backend: str
) -> None:
    # SIGTERM while the first start migrated the store cancelled the migration half-way:
    # SQLite's DDL is not transactional, so tables were made without the version that says
    # so, and every later start failed with "table teams already exists".
    with fresh_store(backend, log_dir, "stop-migrating") as store_url:
        env = {"TOLLWAY_STORE_URL": store_url}
        config = {"store": {"url": store_url}, "models": []}
        _stop_while_migrating(log_dir, config, env)
        with running_gateway(log_dir, config, env) as (_, process):  # on the same store
            assert "Traceback" not in process.output()


def _stop_while_migrating(log_dir: Path, config: dict[str, Any], env: dict[str, str]) -> None:
    url, process = _gateway_process(log_dir, config, env, [])
    try:
        deadline = time.monotonic() + 30
        while "Running upgrade" not in process.output():
            assert time.monotonic() < deadline and process.proc.poll() is None, process.output()
            time.sleep(0.005)
        process.proc.send_signal(signal.SIGTERM)
        assert process.proc.wait(30) == 0
        output = process.output()
        assert "Traceback" not in output, output
        assert "stopping once started" in output, output
    finally:
        process.stop()
    with pytest.raises(RuntimeError):  # it stopped without ever serving
        wait_http(url + "/health/live", timeout=0.5)
