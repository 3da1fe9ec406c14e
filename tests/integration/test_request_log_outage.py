"""The request log across a PostgreSQL outage: nothing lost, nothing written twice.

A gateway on a fresh database of its own; the outage is made from an admin connection
(``ALTER DATABASE ... WITH ALLOW_CONNECTIONS false`` and ``pg_terminate_backend`` of the
gateway's connections), so the gateway sees exactly what a store that went away looks like.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_request_log import chat, log_config
from tests.support import CLIENT_KEY, POSTGRES_URL, Process, postgres_database, running_gateway


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh PostgreSQL database (its URL) for one test."""
    databases = postgres_database()
    url = next(databases)
    yield url
    next(databases, None)


def run_sql(url: str, *statements: str) -> list[Any]:
    """Run statements on ``url`` (autocommit); the rows of the last one."""

    async def run() -> list[Any]:
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
        rows: list[Any] = []
        try:
            async with asyncio.timeout(10), engine.connect() as connection:
                for statement in statements:
                    result = await connection.execute(text(statement))
                    rows = list(result) if result.returns_rows else []
        finally:
            await engine.dispose()
        return rows

    return asyncio.run(run())


def cut(database_url: str) -> None:
    """Make the database unreachable for the gateway, as a store outage does."""
    name = database_url.rsplit("/", 1)[1]
    run_sql(
        POSTGRES_URL,
        f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false',
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
    )


def restore(database_url: str) -> None:
    name = database_url.rsplit("/", 1)[1]
    run_sql(POSTGRES_URL, f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')


def stored(database_url: str) -> dict[str, int]:
    """How many rows each request id has in the request log."""
    rows = run_sql(database_url, "SELECT request_id, count(*) FROM request_log GROUP BY 1")
    return {request_id: count for request_id, count in rows}


def wait_stored(database_url: str, request_ids: set[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        counts = stored(database_url)
        if request_ids <= set(counts) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert request_ids <= set(counts), f"never stored: {request_ids - set(counts)}"
    assert counts == dict.fromkeys(request_ids, 1), "every record exactly once"


def metric(url: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", httpx.get(url + "/metrics").text, re.MULTILINE)
    assert match is not None, name
    return float(match.group(1))


def spool_files(spool: Path) -> list[Path]:
    return sorted(spool.glob("*.jsonl"))


def requests(url: str, count: int) -> set[str]:
    """``count`` chat completions, each of which must succeed; their request ids."""
    ids = set()
    for _ in range(count):
        answer = chat(url)
        assert answer.status_code == 200, answer.text
        ids.add(answer.headers["x-request-id"])
    return ids


def gateway_config(simulator_url: str, database_url: str, spool: Path) -> dict[str, Any]:
    return log_config(
        simulator_url, database_url, chain=True, spool_dir=str(spool), retry_interval="500ms",
        write_timeout="3s",
    )  # fmt: skip


def no_traceback(process: Process) -> None:
    assert "Traceback" not in process.output(), process.output()[-3000:]


def test_records_written_during_an_outage_arrive_exactly_once(
    log_dir: Path, simulator_url: str, database: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": database}
    config = gateway_config(simulator_url, database, spool)
    with running_gateway(log_dir, config, env) as (url, process):
        before = requests(url, 5)
        wait_stored(database, before)
        cut(database)
        try:
            during = requests(url, 20)  # the store is down: requests are not held up
            deadline = time.monotonic() + 20
            while metric(url, "tollway_request_log_records_spooled_total") < 20:
                assert time.monotonic() < deadline, "records were not spooled"
                time.sleep(0.2)
            assert spool_files(spool)
            # Private: the records say who called what (and may hold kept bodies).
            assert stat.S_IMODE(spool.stat().st_mode) == 0o700
            assert {stat.S_IMODE(f.stat().st_mode) for f in spool_files(spool)} == {0o600}
            assert metric(url, "tollway_request_log_lag_seconds") > 0
            assert metric(url, "tollway_request_log_records_dropped_total") == 0
        finally:
            restore(database)
        after = requests(url, 5)
        wait_stored(database, before | during | after)
        assert len(stored(database)) == 30
        deadline = time.monotonic() + 10
        while spool_files(spool) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert spool_files(spool) == []
        assert metric(url, "tollway_request_log_records_written_total") == 30
        assert metric(url, "tollway_request_log_lag_seconds") == 0
        no_traceback(process)


def test_a_spool_left_at_shutdown_is_replayed_at_the_next_start(
    log_dir: Path, simulator_url: str, database: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": database}
    config = gateway_config(simulator_url, database, spool)
    try:
        with running_gateway(log_dir, config, env) as (url, first):
            before = requests(url, 2)
            wait_stored(database, before)
            cut(database)
            during = requests(url, 10)
        # Stopped while the store was down: what was queued went to the spool.
        no_traceback(first)
        assert sum(len(f.read_text().splitlines()) for f in spool_files(spool)) == 10
    finally:
        restore(database)
    assert set(stored(database)) == before
    with running_gateway(log_dir, config, env) as (url, second):
        later = requests(url, 1)
        wait_stored(database, before | during | later)
        assert spool_files(spool) == []
        no_traceback(second)
    rows = run_sql(database, "SELECT count(DISTINCT chain_id), count(*) FROM request_log")
    assert tuple(rows[0]) == (2, 13)  # one chain per process


class Partition:
    """A TCP proxy to PostgreSQL that can stop passing data both ways, as a network
    partition does: connections stay open and nothing comes back (a refused connection,
    as ``cut`` makes, fails at once; this fails by timing out). ``url``: the database
    through the proxy."""

    def __init__(self, database_url: str) -> None:
        where = urlsplit(database_url)
        self.upstream = (where.hostname or "127.0.0.1", where.port or 5432)
        self.cut = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        port = self._server.getsockname()[1]
        user = where.netloc.rsplit("@", 1)[0] + "@" if "@" in where.netloc else ""
        self.url = database_url.replace(where.netloc, f"{user}127.0.0.1:{port}")
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self._sockets.append(client)
            if self.cut.is_set():
                threading.Thread(target=self._pump, args=(client, None), daemon=True).start()
                continue
            upstream = socket.create_connection(self.upstream)
            self._sockets.append(upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket | None) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            if sink is not None and not self.cut.is_set():
                try:
                    sink.sendall(data)
                except OSError:
                    return

    def close(self) -> None:
        self._server.close()
        for connection in self._sockets:
            connection.close()


def spooled_rows(spool: Path) -> int:
    return sum(len(f.read_text().splitlines()) for f in spool_files(spool))


def test_a_store_that_stops_answering_holds_up_no_shutdown_and_loses_nothing(
    log_dir: Path, simulator_url: str, database: str, tmp_path: Path
) -> None:
    # Stopped while its store was partitioned away, the gateway closed the request log last,
    # after the budget spend's last write (which waits out the store's connect_timeout), and
    # the log itself tried the spool once more and finished any try under way (write_timeout
    # and a ping each): time a process manager's grace period may not give, and a SIGKILL
    # then loses the queue. Now what is queued goes to the spool at once.
    partition = Partition(database)
    spool = tmp_path / "spool"
    config = gateway_config(simulator_url, partition.url, spool)
    config["telemetry"]["request_log"].update(write_timeout="2s", flush_interval="1s")
    config["limits"] = {"budgets": [{"scope": "org", "id": "*", "limit_usd": 1000}]}
    config["store"]["connect_timeout"] = "3s"  # the spend's last write waits this long
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": partition.url}
    try:
        with running_gateway(log_dir, config, env) as (url, process):
            before = requests(url, 3)
            wait_stored(database, before)
            partition.cut.set()
            started = time.monotonic()
            during = requests(url, 10)
            assert time.monotonic() - started < 2.0  # requests are not held up
            deadline = time.monotonic() + 30
            while metric(url, "tollway_request_log_records_spooled_total") < 10:
                assert time.monotonic() < deadline, "records were not spooled"
                time.sleep(0.2)
            later = requests(url, 5)
            time.sleep(0.3)  # queued, and (most likely) a try of the spool under way
            stopping = time.monotonic()
            process.proc.send_signal(signal.SIGTERM)
            while spooled_rows(spool) < 15:
                assert time.monotonic() - stopping < 1.5, "the queue was not spooled at once"
                time.sleep(0.05)
            assert process.proc.wait(30) == 0
            # (The spend's last write fails with a traceback of its own: the store is away.)
            assert "failed unexpectedly" not in process.output()
        assert spooled_rows(spool) == 15
    finally:
        partition.close()
    env["TOLLWAY_STORE_URL"] = database
    with running_gateway(log_dir, gateway_config(simulator_url, database, spool), env) as (
        url,
        process,
    ):
        wait_stored(database, before | during | later)
        assert spool_files(spool) == []
        no_traceback(process)


def test_refusals_during_an_outage_are_spooled_and_stored_once_it_is_over(
    log_dir: Path, simulator_url: str, database: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": database}
    config = gateway_config(simulator_url, database, spool)
    chat_url = "/v1/chat/completions"
    with running_gateway(log_dir, config, env) as (url, process):
        cut(database)
        try:
            refused = {}
            for n, (headers, body, status) in enumerate([
                ({}, b'{"model": "priced-chat"}', 401),  # no key: nothing to look up
                ({"Authorization": f"Bearer {CLIENT_KEY}"}, b"{not json", 400),  # key in memory
                # A key not in memory cannot be checked while the store is down: 503.
                ({"Authorization": "Bearer tw-not-a-known-key-0123456789"}, b"{}", 503),
            ]):  # fmt: skip
                rid = f"refused-in-outage-{n}"
                sent = httpx.post(url + chat_url, content=body,
                                  headers={**headers, "x-request-id": rid})  # fmt: skip
                assert sent.status_code == status, sent.text
                refused[rid] = status
            deadline = time.monotonic() + 20
            while metric(url, "tollway_request_log_records_spooled_total") < len(refused):
                assert time.monotonic() < deadline, "refusals were not spooled"
                time.sleep(0.2)
        finally:
            restore(database)
        wait_stored(database, set(refused))
        rows = run_sql(database, "SELECT request_id, status, hash FROM request_log")
        assert {rid: status for rid, status, _ in rows} == refused
        assert all(digest is not None for _, _, digest in rows)  # in the chain
        no_traceback(process)
