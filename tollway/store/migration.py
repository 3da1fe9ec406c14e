"""Schema migrations with Alembic, run from code: at gateway start, by the CLI, by tests.

The scripts live in ``migrations/``; ``alembic.ini`` beside this module serves both this
code and the ``alembic`` command used to write new revisions (docs/store.md).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.store.engine import check_schema_name, make_engine
from tollway.store.errors import SchemaMismatch

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")


def alembic_config(connection: Connection | None = None) -> Config:
    """Tollway's Alembic config; migrations run on ``connection`` when one is given."""
    config = Config(ALEMBIC_INI)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations folder has no revision"
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database on ``connection`` is at; ``None`` when never migrated."""
    return MigrationContext.configure(connection).get_current_revision()


def ensure_current(connection: Connection) -> None:
    """Raise ``SchemaMismatch`` unless the database is at ``head_revision()``."""
    current, head = current_revision(connection), head_revision()
    if current != head:
        found = "empty (never migrated)" if current is None else f"at revision {current}"
        raise SchemaMismatch(
            f"the store's schema is {found} but this Tollway needs revision {head}: "
            "run the migrations (see docs/store.md)"
        )


async def upgrade_engine(
    engine: AsyncEngine, revision: str = "head", *, schema: str | None = None
) -> None:
    """Upgrade the database behind ``engine`` (into ``schema``, created if need be)."""
    async with engine.begin() as connection:
        if schema is not None:
            await create_schema(connection, schema)
        await connection.run_sync(_upgrade, revision)


async def create_schema(connection: AsyncConnection, schema: str) -> None:
    """Create PostgreSQL schema ``schema`` unless it exists."""
    check_schema_name(schema)
    await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))


async def migrate(url: str, *, schema: str | None = None, revision: str = "head") -> None:
    """Upgrade the database at ``url`` (in ``schema``, PostgreSQL only) to ``revision``."""
    # Safe across processes (replicas take a PostgreSQL advisory lock in env.py), but not
    # twice at once in one process: Alembic keeps its migration context in a module global.
    engine = make_engine(url, schema=schema)
    try:
        await upgrade_engine(engine, revision, schema=schema)
    finally:
        await engine.dispose()


async def downgrade(url: str, revision: str, *, schema: str | None = None) -> None:
    """Downgrade the database at ``url`` to ``revision`` (``"base"`` empties it)."""
    engine = make_engine(url, schema=schema)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_downgrade, revision)
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


def _downgrade(connection: Connection, revision: str) -> None:
    command.downgrade(alembic_config(connection), revision)
