"""Async engines for the two backends: a SQLite file (default) and PostgreSQL."""

from __future__ import annotations

import logging
import re
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tollway.store.errors import StoreError

DEFAULT_URL = "sqlite+aiosqlite:///./tollway.db"
"""A SQLite file in the working directory: the single-node default."""

_ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def store_url(url: str) -> URL:
    """``url`` parsed, with the async driver filled in (``postgresql://`` → ``+asyncpg``)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"{url!r} is not a database URL") from None
    backend = parsed.get_backend_name()
    driver = _ASYNC_DRIVERS.get(backend)
    if driver is None:
        raise StoreError(
            f"unsupported store URL {redacted(parsed)}: use sqlite+aiosqlite:///PATH "
            "or postgresql+asyncpg://USER@HOST/DATABASE"
        )
    if "+" in parsed.drivername and parsed.get_driver_name() != driver:
        raise StoreError(f"store URL {redacted(parsed)} needs the async driver {driver!r}")
    return parsed.set(drivername=f"{backend}+{driver}")


def redacted(url: URL) -> str:
    """``url`` for messages and logs: the password hidden."""
    return url.render_as_string(hide_password=True)


CONNECT_TIMEOUT_S = 10.0
"""A new PostgreSQL connection's limit (asyncpg's own is 60 s): a database host that drops
packets otherwise holds every admin call and start-up for a minute."""

BUSY_TIMEOUT_S = 30.0
"""How long a write to a SQLite file waits for other writers before giving up (``StoreBusy``)."""


def make_engine(
    url: str,
    *,
    schema: str | None = None,
    echo: bool = False,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    busy_timeout: float = BUSY_TIMEOUT_S,
) -> AsyncEngine:
    """An async engine for ``url``; ``schema`` (PostgreSQL only) becomes the search path;
    ``connect_timeout`` bounds a new PostgreSQL connection (SQLite has no connection to wait
    for); ``busy_timeout`` is how long a SQLite connection waits for the file's write lock."""
    parsed = store_url(url)
    if parsed.get_backend_name() == "sqlite":
        if schema is not None:
            raise StoreError("a schema can only be set for PostgreSQL")
        # aiosqlite logs every call at DEBUG with its arguments, a statement's parameters
        # among them (a key a client sent where a key id goes, the rows written): a gateway
        # run with --log-level debug printed them. ``echo`` is SQLAlchemy's own log.
        logging.getLogger("aiosqlite").setLevel(logging.INFO)
        engine = create_async_engine(parsed, echo=echo, connect_args={"timeout": busy_timeout})
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {"timeout": connect_timeout}
    if schema is not None:
        check_schema_name(schema)
        connect_args["server_settings"] = {"search_path": schema}
    return create_async_engine(parsed, echo=echo, pool_pre_ping=True, connect_args=connect_args)


def check_schema_name(schema: str) -> None:
    """Raise ``StoreError`` unless ``schema`` is a plain lower-case SQL identifier."""
    # It is put into DDL and the search path as it is, so only a safe shape is accepted.
    if not _SCHEMA_NAME.match(schema):
        raise StoreError(f"schema {schema!r} must be a lower-case SQL identifier")


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # SQLite enforces foreign keys only when asked, per connection; WAL lets readers run
    # while the batch writer writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Statement journals (a multi-row insert that may skip conflicts has one) in memory: on
    # disk each was a temporary file created, written page by page and removed per batch.
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()
