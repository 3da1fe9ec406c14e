"""Locks every process on one store respects: one replica at a time does a one-off job.

Replicas starting together on an empty store must make its first admin once, not once each.
On PostgreSQL the lock is a session advisory lock, held on a connection of its own (so the
work done under it may use the pool freely) and released with that connection should the
process die. On a SQLite file it is an ``flock`` of a file beside the database, which every
process on that machine (the only ones that can share the file) respects. An in-memory
database has one process by definition: nothing to lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.store.sqlite_writer import file_database


def lock_id(name: str) -> int:
    """A stable signed 64-bit advisory lock id for ``name``."""
    digest = hashlib.sha256(f"tollway:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@asynccontextmanager
async def store_lock(engine: AsyncEngine, name: str) -> AsyncIterator[None]:
    """Hold the lock ``name`` on the store behind ``engine`` (waiting for it) inside the block."""
    backend = engine.url.get_backend_name()
    if backend == "postgresql":
        async with _advisory_lock(engine, lock_id(name)):
            yield
        return
    database = file_database(engine.url)
    if database is None:
        yield
        return
    async with _file_lock(f"{database}.{name}.lock"):
        yield


@asynccontextmanager
async def _advisory_lock(engine: AsyncEngine, key: int) -> AsyncIterator[None]:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        await connection.commit()
        try:
            yield
        finally:
            try:
                await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                await connection.commit()
            except Exception:
                # Never back into the pool holding the lock: a closed session releases it.
                await connection.invalidate()


@asynccontextmanager
async def _file_lock(path: str) -> AsyncIterator[None]:
    import fcntl  # POSIX only, like uvloop; imported where the lock is taken

    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing the descriptor releases the lock
