"""Sessions to read and short write transactions for the repositories, with what the
database raises turned into store errors.

A write transaction on SQLite begins with ``BEGIN IMMEDIATE``: it takes the file's write
lock before its first read, so what it reads to decide a write (does the team exist, is
there a membership to change) is what it writes over. Python's ``sqlite3`` would begin only
at the first ``INSERT``/``UPDATE``/``DELETE``, leaving the reads before it outside the
transaction (a team deleted in between made the update of it a ``StaleDataError``, a 500);
and a transaction begun ``DEFERRED`` that reads first cannot take the lock once another
writer committed (``database is locked``, however long the busy timeout). In one process the
write transactions also take turns on an ``asyncio.Lock`` first, so writers waiting for the
file hold no pooled connection (the reads, the key lookups among them, keep those) and are
woken in order instead of polling. Reads never wait: WAL lets them run beside a writer.

On PostgreSQL a write transaction is a plain one; its repositories lock the rows they read
to decide (``FOR UPDATE``, ``FOR KEY SHARE``) or write by ``INSERT ... ON CONFLICT``.
A deadlock or serialization failure there, like a SQLite file still locked after the busy
timeout, is ``StoreBusy``: rolled back, and worth retrying.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from tollway.store.errors import InvalidRecord, RecordConflict, StoreBusy
from tollway.store.records import UNSET

_SQLITE_BUSY = frozenset({5, 6})
"""SQLITE_BUSY and SQLITE_LOCKED, the primary codes of every "locked" result."""

_POSTGRES_RETRY = frozenset({"40001", "40P01", "55P03"})
"""serialization_failure, deadlock_detected, lock_not_available."""


class Sessions:
    """The store's sessions: ``sessions()`` to read, ``sessions.write()`` to change things."""

    def __init__(self, engine: AsyncEngine, *, busy_timeout: float) -> None:
        """``busy_timeout``: how long a SQLite write waits for its turn in this process
        (the file's own busy timeout then bounds the wait for other processes)."""
        self._factory = async_sessionmaker(engine, expire_on_commit=False)
        sqlite = engine.dialect.name == "sqlite"
        self._turn = asyncio.Lock() if sqlite else None
        self._busy_timeout = busy_timeout

    def __call__(self) -> AsyncSession:
        """A session for reads (``async with``); it writes nothing."""
        return self._factory()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session in a write transaction, committed on exit; ``StoreBusy`` when other
        writers kept it waiting past the busy timeout (or PostgreSQL gave up on it)."""
        try:
            if self._turn is None:
                async with self._factory.begin() as session:
                    yield session
                return
            await self._wait_turn()
            try:
                async with self._factory.begin() as session:
                    await session.execute(text("BEGIN IMMEDIATE"))
                    yield session
            finally:
                self._turn.release()
        except DBAPIError as error:
            if is_contention(error):
                raise StoreBusy(
                    "the store is busy with other writes; nothing was changed, try again"
                ) from error
            raise

    async def _wait_turn(self) -> None:
        assert self._turn is not None
        try:
            async with asyncio.timeout(self._busy_timeout):
                await self._turn.acquire()
        except TimeoutError:
            raise StoreBusy(
                f"the store's other writes took more than {self._busy_timeout:g} s; "
                "nothing was changed, try again"
            ) from None


def is_contention(error: DBAPIError) -> bool:
    """Whether ``error`` is the database refusing a write for other writers (rolled back,
    retryable): SQLite's "database is locked", PostgreSQL's deadlock or serialization
    failure."""
    original = error.orig
    code = getattr(original, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _SQLITE_BUSY
    return getattr(original, "sqlstate", None) in _POSTGRES_RETRY


@asynccontextmanager
async def transaction(sessions: Sessions, conflict: str) -> AsyncIterator[AsyncSession]:
    """A write transaction committed on exit; a constraint violation, or a row another
    transaction changed under an ORM update, raises ``RecordConflict(conflict)``."""
    try:
        async with sessions.write() as session:
            yield session
    except (IntegrityError, StaleDataError) as error:
        raise RecordConflict(conflict) from error


def dialect_insert(session: AsyncSession) -> Callable[[Any], Any]:
    """The ``insert`` of the session's database, which has ``on_conflict_do_update``: a
    create-or-replace is one statement, not a read that a concurrent insert can overtake."""
    dialect = session.get_bind().dialect.name
    return postgres_insert if dialect == "postgresql" else sqlite_insert


def given(**values: Any) -> dict[str, Any]:
    """The keyword arguments that were given (not ``UNSET``)."""
    return {name: value for name, value in values.items() if value is not UNSET}


def require_one_of(value: str, allowed: Iterable[str], field: str) -> None:
    """Raise ``InvalidRecord`` unless ``value`` is one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise InvalidRecord(f"{field} must be one of {', '.join(allowed)}; got {value!r}")
