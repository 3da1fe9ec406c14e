"""Databases for the store tests: a SQLite file and a PostgreSQL schema of their own.

PostgreSQL comes from ``TOLLWAY_TEST_POSTGRES_URL``. Every test session works in a fresh
schema with a random name (the search path points there, so migrations and queries stay
inside it) and drops it at the end; other runs against the same server are not touched.
Unreachable PostgreSQL skips its tests, or fails them under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import delete, text

from tollway.store import SecretBox, Store, generate_vault_key, migrate
from tollway.store.engine import make_engine
from tollway.store.models import Base

POSTGRES_URL = os.environ.get(
    "TOLLWAY_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", "postgresql"]


@dataclass(frozen=True)
class Database:
    """Where one backend's test database is."""

    backend: str
    url: str
    schema: str | None = None

    def store(self, secret_box: SecretBox | None = None) -> Store:
        """A store on this database (not opened yet)."""
        return Store(self.url, schema=self.schema, secret_box=secret_box)

    async def fetch(self, sql: str, **params: Any) -> list[Any]:
        """The rows of a raw query, to look at what is really stored."""
        engine = make_engine(self.url, schema=self.schema)
        try:
            async with engine.connect() as connection:
                return list(await connection.execute(text(sql), params))
        finally:
            await engine.dispose()


async def _postgres_problem(url: str) -> str | None:
    engine = make_engine(url)
    try:
        async with asyncio.timeout(5), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    finally:
        await engine.dispose()
    return None


def _postgres_unavailable(problem: str) -> None:
    message = (
        f"PostgreSQL at {POSTGRES_URL} is not reachable ({problem}); start it or point "
        "TOLLWAY_TEST_POSTGRES_URL at one"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}. Under CI=true the PostgreSQL store tests must run.")
    pytest.skip(message)


@asynccontextmanager
async def fresh_database(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Database]:
    """An empty database of ``backend``, removed afterwards."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("store") / "tollway.db"
        yield Database(backend, f"sqlite+aiosqlite:///{path}")
        return
    problem = await _postgres_problem(POSTGRES_URL)
    if problem is not None:
        _postgres_unavailable(problem)
    schema = f"tollway_test_{uuid.uuid4().hex[:12]}"
    engine = make_engine(POSTGRES_URL)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield Database(backend, POSTGRES_URL, schema)
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
async def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Database]:
    """A database per backend, migrated to head once per test session."""
    async with fresh_database(request.param, tmp_path_factory) as db:
        await migrate(db.url, schema=db.schema)
        yield db


@pytest.fixture(params=BACKENDS)
async def empty_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Database]:
    """A database per backend with no tables at all, for one test."""
    async with fresh_database(request.param, tmp_path_factory) as db:
        yield db


@pytest.fixture(scope="session")
def secret_box() -> SecretBox:
    """The vault the tests' stores encrypt credentials with."""
    return SecretBox(generate_vault_key())


@pytest.fixture
async def store(database: Database, secret_box: SecretBox) -> AsyncIterator[Store]:
    """An opened store on a migrated database whose tables are empty."""
    engine = make_engine(database.url, schema=database.schema)
    try:
        async with engine.begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                await connection.execute(delete(table))
    finally:
        await engine.dispose()
    opened = database.store(secret_box)
    await opened.open()
    yield opened
    await opened.close()
