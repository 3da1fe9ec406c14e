"""Alembic's entry point: runs migrations on the connection given by code, or on a new one.

``tollway.store.migration`` passes a connection in ``config.attributes``; the ``alembic``
command (used to write revisions) connects to ``TOLLWAY_STORE_URL`` itself.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig
from typing import Any, Literal

import sqlalchemy as sa
from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection, text

from tollway.store.columns import UTCDateTime
from tollway.store.engine import DEFAULT_URL, make_engine
from tollway.store.migration import create_schema
from tollway.store.models import Base

MIGRATION_LOCK = 7_274_020_001
"""PostgreSQL advisory lock id: replicas starting together migrate one at a time."""


def render_item(kind: str, item: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Write our column types as plain SQLAlchemy ones, so revisions never import models."""
    if kind != "type":
        return False
    if isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if isinstance(item, sa.JSON):
        autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
        return 'sa.JSON().with_variant(postgresql.JSONB(), "postgresql")'
    return False


def run_on(connection: Connection) -> None:
    """Run the pending migrations on ``connection``."""
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK})
        context.run_migrations()


async def run_on_new_engine(url: str) -> None:
    """Connect to ``url`` and run the pending migrations there."""
    schema = os.environ.get("TOLLWAY_STORE_SCHEMA") or None
    engine = make_engine(url, schema=schema)
    try:
        async with engine.begin() as connection:
            if schema is not None:
                await create_schema(connection, schema)
            await connection.run_sync(run_on)
    finally:
        await engine.dispose()


def run_offline(url: str) -> None:
    """Write the migrations' SQL instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=url,
        target_metadata=Base.metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    """Pick the connection the migrations run on."""
    config = context.config
    shared: Connection | None = config.attributes.get("connection")
    if shared is not None:
        run_on(shared)
        return
    # Only the command line configures logging; the gateway keeps its own.
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    url = os.environ.get("TOLLWAY_STORE_URL", DEFAULT_URL)
    if context.is_offline_mode():
        run_offline(url)
    else:
        asyncio.run(run_on_new_engine(url))


main()
