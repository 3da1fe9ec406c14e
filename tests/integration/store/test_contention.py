"""Writes that wait for other writers: reads go on meanwhile, and a write the database gives
up on (a PostgreSQL deadlock, a SQLite file locked past the busy timeout) is ``StoreBusy``
with nothing written."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest
from sqlalchemy import text

from tests.integration.store.conftest import Database
from tollway.store import NewKey, RecordNotFound, Store, StoreBusy, generate_key
from tollway.store.engine import make_engine


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # WAL: one writer at a time
async def test_reads_go_on_while_writers_wait_for_a_locked_file(database: Database) -> None:
    store = Store(database.url, busy_timeout=5.0)
    await store.open()
    path = database.url.removeprefix("sqlite+aiosqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)  # another process, say the CLI
    holder.execute("BEGIN IMMEDIATE")
    try:
        names = [f"waiting-{n}-{time.monotonic_ns()}" for n in range(20)]
        writes = [asyncio.create_task(store.teams.create(name)) for name in names]
        await asyncio.sleep(0.2)
        # Twenty writers waiting held every pooled connection (5 and 10 more), so a key
        # lookup waited for the file's lock too; now they wait for their turn without one.
        started = time.monotonic()
        with pytest.raises(RecordNotFound):
            await asyncio.wait_for(store.keys.get_by_hash("0" * 64), 2.0)
        assert time.monotonic() - started < 1.0
        assert not any(write.done() for write in writes)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    made = await asyncio.gather(*writes)
    assert sorted(team.name for team in made) == sorted(names)
    await store.close()


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_write_waiting_past_the_busy_timeout_is_store_busy(database: Database) -> None:
    store = Store(database.url, busy_timeout=0.2)
    await store.open()
    path = database.url.removeprefix("sqlite+aiosqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        name = f"busy-{time.monotonic_ns()}"
        # The first waits on the file; the second for its turn behind the first.
        first, second = await asyncio.gather(
            store.teams.create(name), store.teams.create(name + "-2"), return_exceptions=True
        )
        assert isinstance(first, StoreBusy) and isinstance(second, StoreBusy)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with pytest.raises(RecordNotFound):
        await store.teams.get_by_name(name)
    assert (await store.teams.create(name)).name == name
    await store.close()


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_a_deadlock_on_postgresql_is_store_busy_with_nothing_written(
    store: Store, database: Database
) -> None:
    team = await store.teams.create(f"deadlock-{time.monotonic_ns()}")
    made = generate_key()
    key = await store.keys.create(
        NewKey(name="k", prefix=made.prefix, key_hash=made.key_hash, team_id=team.id)
    )
    other = make_engine(database.url, schema=database.schema)
    try:
        async with other.connect() as connection:
            # Never the one PostgreSQL picks to end: it checks for deadlocks after 10 s.
            await connection.execute(text("SET LOCAL deadlock_timeout = '10s'"))
            await connection.execute(
                text("UPDATE virtual_keys SET name = 'held' WHERE id = :id"), {"id": key.id}
            )
            # Deleting the team locks it, then waits for the key this transaction holds...
            delete = asyncio.create_task(store.teams.delete(team.id))
            await asyncio.sleep(0.3)
            # ... while this waits for the team: a deadlock, which ends the delete.
            lock_team = connection.execute(
                text("SELECT id FROM teams WHERE id = :id FOR UPDATE"), {"id": team.id}
            )
            await asyncio.wait_for(lock_team, 10)
            with pytest.raises(StoreBusy):
                await asyncio.wait_for(delete, 10)
            await connection.rollback()
    finally:
        await other.dispose()
    assert (await store.teams.get(team.id)).name == team.name
    assert (await store.keys.get(key.id)).status == "active"
