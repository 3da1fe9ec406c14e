"""The SQLite batch writer: its own connection to the store's file, one transaction a batch.

Real SQLite files; what it writes is read back through the store's engine, as the request
log's readers do.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.integration.store.test_request_log import context
from tollway.config.schema import RequestLogConfig
from tollway.store import RequestLogFilter, Store
from tollway.store.sqlite_writer import WRITER_NICENESS, SqliteWriter, file_database
from tollway.telemetry.request_log import RequestLogWriter

CREATE = "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"


def test_only_a_file_database_gets_a_writer_of_its_own() -> None:
    assert file_database(make_url("sqlite+aiosqlite:////var/lib/tollway.db")) == (
        "/var/lib/tollway.db"
    )
    assert file_database(make_url("sqlite+aiosqlite:///./tollway.db")) == "./tollway.db"
    # Another connection to these would not see the engine's data.
    assert file_database(make_url("sqlite+aiosqlite://")) is None
    assert file_database(make_url("sqlite+aiosqlite:///:memory:")) is None
    assert file_database(make_url("sqlite+aiosqlite:///file:x?mode=memory&uri=true")) is None
    assert file_database(make_url("postgresql+asyncpg://u@h/db")) is None


async def test_a_batch_is_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    sqlite3.connect(path).execute(CREATE)
    writer = SqliteWriter(str(path))
    try:
        await writer.write([("INSERT INTO t (id, name) VALUES (?, ?), (?, ?)", [1, "a", 2, "b"])])
        with pytest.raises(sqlite3.IntegrityError):
            # The second statement fails: the first one's row must not stay either.
            await writer.write(
                [
                    ("INSERT INTO t (id, name) VALUES (?, ?)", [3, "c"]),
                    ("INSERT INTO t (id, name) VALUES (?, ?)", [4, None]),
                ]
            )
        await writer.write([("INSERT INTO t (id, name) VALUES (?, ?)", [5, "e"])])
    finally:
        await writer.close()
    rows = sqlite3.connect(path).execute("SELECT id, name FROM t ORDER BY id").fetchall()
    assert rows == [(1, "a"), (2, "b"), (5, "e")]


async def test_a_failed_commit_leaves_no_transaction_open(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    setup.execute(
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER "
        "REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    setup.close()
    writer = SqliteWriter(str(path))
    try:
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            # Checked only at COMMIT: the writer must roll back, or every later batch fails.
            await writer.write([("INSERT INTO child (id, parent) VALUES (?, ?)", [1, 99])])
        await writer.write(
            [
                ("INSERT INTO parent (id) VALUES (?)", [7]),
                ("INSERT INTO child (id, parent) VALUES (?, ?)", [2, 7]),
            ]
        )
    finally:
        await writer.close()
    assert sqlite3.connect(path).execute("SELECT id FROM child").fetchall() == [(2,)]


async def test_a_closed_writer_opens_again_on_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    sqlite3.connect(path).execute(CREATE)
    writer = SqliteWriter(str(path))
    await writer.write([("INSERT INTO t (id, name) VALUES (?, ?)", [1, "a"])])
    await writer.close()
    await writer.write([("INSERT INTO t (id, name) VALUES (?, ?)", [2, "b"])])
    await writer.close()
    assert sqlite3.connect(path).execute("SELECT count(*) FROM t").fetchone() == (2,)


async def test_a_missing_table_is_an_error_not_a_silent_loss(tmp_path: Path) -> None:
    writer = SqliteWriter(str(tmp_path / "empty.db"))
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await writer.write([("INSERT INTO t (id, name) VALUES (?, ?)", [1, "a"])])
    finally:
        await writer.close()


async def test_an_in_memory_store_keeps_its_request_log_on_the_engine(tmp_path: Path) -> None:
    # One in-memory database per connection: the log must go through the engine's.
    store = Store("sqlite+aiosqlite://")
    await store.open(migrate=True)
    try:
        writer = RequestLogWriter(store, RequestLogConfig(), tmp_path / "spool")
        await store.request_log.insert([writer._row(context(n), n + 1) for n in range(3)])
        page = await store.request_log.page(RequestLogFilter())
        assert [record.request_id for record in page.records] == ["req-2", "req-1", "req-0"]
    finally:
        await store.close()


async def test_none_is_still_bound_as_null(tmp_path: Path) -> None:
    # The writer's module registers an adapter for None (a faster registry lookup): the
    # value stored must stay SQL NULL, for this connection and for any other of the process.
    path = tmp_path / "w.db"
    sqlite3.connect(path).execute("CREATE TABLE n (id INTEGER PRIMARY KEY, v)")
    writer = SqliteWriter(str(path))
    try:
        await writer.write([("INSERT INTO n (id, v) VALUES (?, ?), (?, ?)", [1, None, 2, 0])])
    finally:
        await writer.close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("INSERT INTO n (id, v) VALUES (?, ?)", (3, None))
    rows = other.execute("SELECT id, v, typeof(v) FROM n ORDER BY id").fetchall()
    assert rows == [(1, None, "null"), (2, 0, "integer"), (3, None, "null")]
    assert other.execute("SELECT count(*) FROM n WHERE v IS NULL").fetchone() == (2,)


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="threads have no priority here")
async def test_the_writer_thread_runs_at_a_lower_priority_than_the_event_loop(
    tmp_path: Path,
) -> None:
    # An insert in progress then waits for the event loop sharing its core, not the reverse.
    path = tmp_path / "w.db"
    sqlite3.connect(path).execute(CREATE)
    writer = SqliteWriter(str(path))
    try:
        await writer.write([("INSERT INTO t (name) VALUES (?)", ("a",))])
        [thread] = [t for t in threading.enumerate() if t.name.startswith("tollway-sqlite")]
        assert thread.native_id is not None
        loop_niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        expected = min(loop_niceness + WRITER_NICENESS, 19)
        assert os.getpriority(os.PRIO_PROCESS, thread.native_id) == expected
    finally:
        await writer.close()
