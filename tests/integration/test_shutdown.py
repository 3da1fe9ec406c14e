"""Stopping the gateway: SIGTERM / SIGINT (again while it stops), SIGHUP while it stops,
a stop asked for while it starts, and ``server.drain_delay``. What it owed the store is
written whatever comes.

Real ``tollway serve`` processes on the simulator, real signals, the store read afterwards.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def _stopping_gateway(
    log_dir: Path, simulator_url: str, tmp_path: Path, drain_delay: str | None = None
) -> Iterator[tuple[str, Process]]:
    """A gateway of ``stop_config`` whose store is ``tmp_path``'s ``tollway.db`` (read after
    the stop by ``_logged``), with ``server.drain_delay`` when given: its URL and process."""
    store_url = f"sqlite+aiosqlite:///{tmp_path}/tollway.db"
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": store_url}
    config = stop_config(simulator_url, store_url)
    if drain_delay is not None:
        config = {**config, "server": {"drain_delay": drain_delay}}
    with running_gateway(log_dir, config, env) as running:
        yield running


async def _send(
    url: str, session: aiohttp.ClientSession, rid: str, stream: bool, ttft_ms: int = 3000
) -> bool:
    """One chat request; whether it was answered whole."""
    body = {"model": "priced-chat", "stream": stream,
            "messages": [{"role": "user", "content": "hello"}]}  # fmt: skip
    slow = {"x-sim-tpot-ms": "100", "x-sim-output-tokens": "30"} if stream else {}
    headers = {"Authorization": f"Bearer {CLIENT_KEY}", "x-request-id": rid,
               "x-sim-test-tag": rid, **slow}  # fmt: skip
    if not stream:
        headers["x-sim-ttft-ms"] = str(ttft_ms)
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
    with _stopping_gateway(log_dir, simulator_url, tmp_path) as (url, process):
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
    with _stopping_gateway(log_dir, simulator_url, tmp_path) as (url, process):
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


DRAIN_DELAY = 1.5


def test_a_drain_delay_serves_new_connections_while_readiness_fails(
    log_dir: Path, simulator_url: str, tmp_path: Path
) -> None:
    # Kubernetes takes a pod out of its Service while the pod already has SIGTERM: the
    # gateway closed its listener at once, so connections sent meanwhile were refused and
    # /health/ready never got to answer 503 (a preStop sleep was the only way round it).
    with _stopping_gateway(log_dir, simulator_url, tmp_path, "1.5s") as (url, process):
        seen = asyncio.run(_while_draining(url, simulator_url, process))
        assert process.proc.wait(30) == 0
        output = process.output()
    assert seen["checked_within"] < DRAIN_DELAY, "the checks came after the delay"
    assert seen["ready"] == (503, "draining")
    assert seen["live"] == 200
    assert seen["new_request_answered"]
    assert seen["refused_after_the_delay"]
    assert seen["in_flight_answered"] == 2
    assert "Traceback" not in output, output
    assert "SIGHUP ignored: the gateway is stopping" in output and "config reloaded" not in output
    rows, spend = _logged(tmp_path / "tollway.db")
    assert len(rows) == 3 and all(status == 200 for _, status, _ in rows)
    assert spend == sum(cost for _, _, cost in rows) > 0


async def _while_draining(url: str, simulator_url: str, process: Process) -> dict[str, Any]:
    """Two slow requests in flight, SIGTERM and SIGHUP; then, on new connections, what the
    health routes and a chat request get during the delay, and whether a connection is
    refused once it is over (the requests in flight still running)."""
    seen: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        rids = {f"drain-{uuid.uuid4().hex[:12]}" for _ in range(2)}
        in_flight = [asyncio.create_task(_send(url, session, rid, False, ttft_ms=4000))
                     for rid in rids]  # fmt: skip
        deadline = time.monotonic() + 10
        while not rids <= await _at_the_simulator(session, simulator_url):
            assert time.monotonic() < deadline, "the requests did not reach the simulator"
            await asyncio.sleep(0.05)
        process.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        await asyncio.sleep(0.2)
        process.proc.send_signal(signal.SIGHUP)
        # force_close: every request below on a connection of its own, opened after SIGTERM.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as new:
            async with new.get(url + "/health/ready") as response:
                seen["ready"] = (response.status, (await response.json())["status"])
            async with new.get(url + "/health/live") as response:
                seen["live"] = response.status
            rid = f"drain-new-{uuid.uuid4().hex[:8]}"
            seen["new_request_answered"] = await _send(url, new, rid, False, ttft_ms=0)
            seen["checked_within"] = time.monotonic() - signalled
            await asyncio.sleep(DRAIN_DELAY + 0.5 - (time.monotonic() - signalled))
            try:
                async with new.get(url + "/health/live"):
                    seen["refused_after_the_delay"] = False
            except aiohttp.ClientConnectorError:
                seen["refused_after_the_delay"] = True
        seen["in_flight_answered"] = sum(await asyncio.gather(*in_flight))
    return seen


def test_without_a_drain_delay_the_listener_closes_at_once(
    log_dir: Path, simulator_url: str, tmp_path: Path
) -> None:
    # drain_delay 0s (the default) stops as before: new connections refused from SIGTERM on,
    # the requests in flight finished.
    with _stopping_gateway(log_dir, simulator_url, tmp_path) as (url, process):
        answered, refused = asyncio.run(_refused_after_sigterm(url, simulator_url, process))
        assert process.proc.wait(30) == 0
    assert refused and answered
    assert len(_logged(tmp_path / "tollway.db")[0]) == 1


async def _refused_after_sigterm(
    url: str, simulator_url: str, process: Process
) -> tuple[bool, bool]:
    """One slow request in flight, SIGTERM; whether a new connection 0.3 s later is refused,
    and whether the request in flight was answered whole."""
    async with aiohttp.ClientSession() as session:
        rid = f"nodrain-{uuid.uuid4().hex[:12]}"
        in_flight = asyncio.create_task(_send(url, session, rid, False))
        deadline = time.monotonic() + 10
        while rid not in await _at_the_simulator(session, simulator_url):
            assert time.monotonic() < deadline, "the request did not reach the simulator"
            await asyncio.sleep(0.05)
        process.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as new:
            try:
                async with new.get(url + "/health/live"):
                    refused = False
            except aiohttp.ClientConnectorError:
                refused = True
        return await in_flight, refused


def test_a_second_signal_skips_the_rest_of_the_drain_delay(
    log_dir: Path, simulator_url: str, tmp_path: Path
) -> None:
    # Ctrl-C twice, or a supervisor in a hurry: the second signal ends the delay (the
    # requests in flight still finish and are written), a third is ignored as before.
    with _stopping_gateway(log_dir, simulator_url, tmp_path, "60s") as (url, process):
        started = time.monotonic()
        stops = [signal.SIGTERM, signal.SIGINT, signal.SIGTERM]
        answered = asyncio.run(_slow_requests_then(url, simulator_url, process, stops))
        assert process.proc.wait(30) == 0
        took = time.monotonic() - started
        output = process.output()
    assert took < 20, "the drain delay ran its course"
    assert answered == 6
    assert "SIGINT: the rest of the drain delay is skipped" in output, output
    assert "SIGTERM ignored: the gateway is already stopping" in output
    assert "Traceback" not in output
    assert len(_logged(tmp_path / "tollway.db")[0]) == 6


# One request of each kind the gateway answers: (method, path, body), all with the admin key,
# which is a virtual key as well. The Anthropic one is streamed: its answer is SSE.
_CHAT = [{"role": "user", "content": "hello"}]
ROUTES_WHILE_DRAINING: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/chat/completions", {"model": "priced-chat", "messages": _CHAT}),
    ("POST", "/v1/messages",
     {"model": "priced-chat", "max_tokens": 16, "stream": True, "messages": _CHAT}),
    ("POST", "/v1/responses", {"model": "priced-chat", "input": "hello"}),
    ("GET", "/admin/keys", None),
    ("GET", "/health/ready", None),
    ("GET", "/no-such-route", None),
]  # fmt: skip


def test_while_draining_every_answer_closes_its_connection(
    log_dir: Path, simulator_url: str, tmp_path: Path
) -> None:
    # During the drain delay the answers on kept-alive connections said nothing of the stop:
    # clients and proxies with the connection pooled sent their next requests to the stopping
    # replica until its listener closed and one of them failed.
    # Long, so that an open connection is told apart from one the listener's close ended;
    # a second signal skips the rest of it.
    with _stopping_gateway(log_dir, simulator_url, tmp_path, "30s") as (url, process):
        port = int(url.rsplit(":", 1)[1])
        pooled = [_connect(port) for _ in ROUTES_WHILE_DRAINING]
        for sock in pooled:  # kept alive before the stop
            status, headers, _ = _exchange(sock, "GET", "/health/live", None)
            assert status == 200 and headers.get("connection", "") != "close"
            assert _open(sock)
        process.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        fresh = _connect(port)  # a new connection during the delay: served, then closed
        status, headers, body = _exchange(fresh, "GET", "/health/ready", None)
        while status == 200:  # until the gateway has the signal
            assert time.monotonic() - signalled < 10, "readiness never failed"
            fresh.close()
            fresh = _connect(port)
            status, headers, body = _exchange(fresh, "GET", "/health/ready", None)
        assert (status, headers.get("connection")) == (503, "close"), (status, headers)
        assert b"draining" in body and not _open(fresh)
        for sock, (method, path, payload) in zip(pooled, ROUTES_WHILE_DRAINING, strict=True):
            status, headers, body = _exchange(sock, method, path, payload)
            assert status == {"/health/ready": 503, "/no-such-route": 404}.get(path, 200), body
            assert headers.get("connection") == "close", (path, headers)
            assert not _open(sock), f"{path}: the connection stayed open"
            assert b"message_stop" in body or path != "/v1/messages", body
        assert time.monotonic() - signalled < 20, "the checks came after the delay"
        process.proc.send_signal(signal.SIGINT)  # the rest of the delay is skipped
        assert process.proc.wait(30) == 0
        assert "Traceback" not in process.output()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _exchange(
    sock: socket.socket, method: str, path: str, payload: dict[str, Any] | None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request on ``sock`` (kept alive unless the server says otherwise): the
    answer's status, headers (lower-case names) and whole body."""
    body = b"" if payload is None else json.dumps(payload).encode()
    head = (f"{method} {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {CLIENT_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
    sock.sendall(head.encode() + body)
    response = http.client.HTTPResponse(sock)
    response.begin()
    content = response.read()  # to the end of the body, chunked or not; the socket stays open
    return response.status, {k.lower(): v for k, v in response.getheaders()}, content


def _open(sock: socket.socket) -> bool:
    """Whether the server keeps ``sock`` open (nothing more is expected on it): no end of
    stream within half a second."""
    sock.settimeout(0.5)
    try:
        return sock.recv(1) != b""
    except TimeoutError:
        return True
    except ConnectionResetError:
        return False
    finally:
        sock.settimeout(10)
