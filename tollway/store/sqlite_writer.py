"""Batch writes to a SQLite file over a connection of their own, on a thread of their own.

The request log inserts a batch of rows several times a second on the gateway's one core.
Through SQLAlchemy's async engine each batch crossed to aiosqlite's thread once per driver
call (begin, execute, commit, cursor handling), each crossing a wake-up of both threads,
and the greenlet bridge ran around every one. One crossing per batch to a plain ``sqlite3``
connection costs about 5 µs a request less on the gateway under load, and 13.6 against
19.6 µs a row in isolation (docs/performance.md). Reads, migrations and the other tables
keep using the engine: WAL mode lets this connection write while the engine's read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.engine import URL

from tollway.store.engine import sqlite_pragmas

Statement = tuple[str, Sequence[Any]]
"""One SQL statement and its parameters."""

# The sqlite3 module binds int, float and str as they are, but looks every other value up in
# its adapter registry first, None included: a miss costs two failed attribute lookups, one
# raising and formatting an AttributeError. A request log row has about 8 NULLs, so that
# was ~22,000 instructions a request (bench/instructions.py) and 1.4 us a row. With an
# adapter for None (a C callable answering None, so the value is still bound as NULL) the
# lookup hits at once; it still costs about 1,200 instructions a value (a bool's too), which
# is why request log statements leave out the columns NULL in every row and bind booleans
# as ints (store/request_log.py). The registry is the module's, so this
# holds for every sqlite3 connection of the process, SQLAlchemy's too, with the same
# result: NULL.
_NULL: Callable[[None], None] = {}.get  # type: ignore[assignment]  # get(None) answers None
sqlite3.register_adapter(type(None), _NULL)


class Unexpected(Exception):
    """A batch changed another number of rows than it had to (rolled back)."""


def file_database(url: URL) -> str | None:
    """The path of the SQLite file ``url`` names; None for an in-memory or URI database
    (another connection would not see the same data, so those stay on the engine)."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:") or url.query:
        return None
    return database


class SqliteWriter:
    """Runs batches of statements, each batch one transaction, on one worker thread."""

    def __init__(self, database: str, *, timeout: float = 30.0) -> None:
        self._database = database
        self._timeout = timeout
        self._executor: ThreadPoolExecutor | None = None  # started by the first write
        self._connection: sqlite3.Connection | None = None  # used on the worker thread only

    async def write(self, statements: Sequence[Statement], expect: int | None = None) -> int:
        """Run ``statements`` in one transaction; raises what SQLite raises (rolled back).
        Returns how many rows they changed; when that is not ``expect`` (if given), rolls
        back and raises ``Unexpected``."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="tollway-sqlite")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._write, statements, expect)

    async def close(self) -> None:
        """Close the connection and stop the thread (after a batch in progress); a later
        write opens them again."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, self._close)
            executor.shutdown(wait=False)

    def _write(self, statements: Sequence[Statement], expect: int | None) -> int:
        connection = self._connection
        if connection is None:
            _lower_priority()
            # Autocommit mode: the transaction is the explicit BEGIN ... COMMIT below.
            connection = sqlite3.connect(
                self._database, timeout=self._timeout, isolation_level=None
            )
            sqlite_pragmas(connection, None)
            self._connection = connection
        connection.execute("BEGIN IMMEDIATE")
        changed = 0
        try:
            for sql, parameters in statements:
                changed += connection.execute(sql, parameters).rowcount
            if expect is not None and changed != expect:
                raise Unexpected(f"{changed} rows changed, not {expect}")
            connection.execute("COMMIT")  # may fail too (deferred constraints, a busy file)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            raise
        return changed

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


WRITER_NICENESS = 10
"""How much lower the writer thread's CPU priority is than the event loop's (Linux nice: a
weight of about a tenth of the loop's while both want the core, still three times what the
request log's inserts take at full load)."""


def _lower_priority() -> None:
    """Lower this thread's priority, so that the event loop sharing its core is not held up by
    an insert in progress: the insert waits instead (no client waits on it). Measured with the
    request log's batches (1,000 rows): about 2% less CPU a request than at the same priority
    (docs/performance.md, "Session 17"). Where threads have no priority of their own, nothing."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICENESS)
