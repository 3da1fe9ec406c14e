"""``Store``: one engine, its sessions, and a repository per aggregate."""

from __future__ import annotations

import asyncio
import os
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from tollway.store.audit import AuditRepository
from tollway.store.changes import ChangeFeed
from tollway.store.credentials import CredentialRepository
from tollway.store.crypto import SecretBox
from tollway.store.engine import (
    BUSY_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    DEFAULT_URL,
    make_engine,
    redacted,
    store_url,
)
from tollway.store.errors import StoreError
from tollway.store.limits import LimitRepository
from tollway.store.locks import store_lock
from tollway.store.migration import ensure_current, upgrade_engine
from tollway.store.reports import ReportRepository
from tollway.store.request_log import RequestLogRepository
from tollway.store.sqlite_writer import SqliteWriter, file_database
from tollway.store.teams import TeamRepository
from tollway.store.transaction import Sessions
from tollway.store.users import UserRepository
from tollway.store.virtual_keys import KeyRepository


class Store:
    """The durable store of teams, users, keys, credentials, audit events and the request log."""

    # Built from settings at start-up, opened, passed to what needs it, closed at shutdown.
    # Every repository method runs its own short transaction and returns frozen records,
    # so nothing outside ever holds a session. Nothing here belongs on the hot path: the
    # gateway loads what it needs into memory (``keys.all_active``) and refreshes it.

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        schema: str | None = None,
        secret_box: SecretBox | None = None,
        echo: bool = False,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        busy_timeout: float = BUSY_TIMEOUT_S,
    ) -> None:
        """Set up the engine; nothing connects before ``open``.

        ``url``: ``sqlite+aiosqlite:///PATH`` or ``postgresql+asyncpg://...`` (docs/store.md).
        ``schema``: a PostgreSQL schema to keep the tables in, instead of the default.
        ``secret_box``: encrypts credentials; by default built from ``TOLLWAY_VAULT_KEY``
        when a credential is first written or revealed.
        ``echo``: log every SQL statement.
        ``connect_timeout``: how long a new PostgreSQL connection may take.
        ``busy_timeout``: how long a write to a SQLite file waits for other writers before
        raising ``StoreBusy``.
        """
        self._where = redacted(store_url(url))
        self._schema = schema
        self._engine = make_engine(
            url,
            schema=schema,
            echo=echo,
            connect_timeout=connect_timeout,
            busy_timeout=busy_timeout,
        )
        self._secret_box = secret_box
        sessions = Sessions(self._engine, busy_timeout=busy_timeout)
        self.teams = TeamRepository(sessions)
        self.users = UserRepository(sessions)
        self.keys = KeyRepository(sessions)
        self.credentials = CredentialRepository(sessions, self._vault)
        self.audit = AuditRepository(sessions)
        self.limits = LimitRepository(sessions)
        database = file_database(self._engine.url)
        self._sqlite_writer = (
            None if database is None else SqliteWriter(database, timeout=busy_timeout)
        )
        self.request_log = RequestLogRepository(sessions, self._sqlite_writer)
        self.reports = ReportRepository(sessions)
        self.changes = ChangeFeed(self._engine, schema)

    async def open(self, *, migrate: bool = False) -> None:
        """Connect and check the schema is current (``migrate``: upgrade it first)."""
        database = file_database(self._engine.url)
        problem = None if database is None else _unusable_directory(database)
        if problem is not None:
            raise StoreError(f"cannot use the store at {self._where}: {problem}")
        try:
            if migrate:
                await upgrade_engine(self._engine, schema=self._schema)
            async with self._engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
                await connection.run_sync(ensure_current)
        except (SQLAlchemyError, OSError) as error:
            raise StoreError(f"cannot use the store at {self._where}: {error}") from error

    async def reachable(self) -> bool:
        """Whether the database answers a trivial query within 2 s now (after an error:
        tells an outage from a fault in what was asked)."""
        try:
            async with asyncio.timeout(2.0), self._engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    def exclusive(self, name: str) -> AbstractAsyncContextManager[None]:
        """A lock every process on this store respects, held inside an ``async with``
        (replicas starting together do a one-off job, such as the first admin, once)."""
        return store_lock(self._engine, name)

    async def close(self) -> None:
        """Close every pooled connection."""
        if self._sqlite_writer is not None:
            await self._sqlite_writer.close()
        await self._engine.dispose()

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Store({self._where!r})"

    def _vault(self) -> SecretBox:
        # Built on first use: a gateway keeping no credentials in the store needs no key.
        if self._secret_box is None:
            self._secret_box = SecretBox.from_environ()
        return self._secret_box


def _unusable_directory(database: str) -> str | None:
    """What keeps SQLite from making ``database`` (and its journal) in its directory, or None.

    Asked before connecting: SQLite says only "unable to open database file", and the
    connection that failed left a thread that answered after the event loop had closed,
    with a traceback under the one line saying why the gateway did not start.
    """
    directory = Path(database).absolute().parent
    if not directory.is_dir():
        return f"the directory {directory} does not exist"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"the directory {directory} is not writable by this user"
    return None
