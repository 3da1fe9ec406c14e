"""A PostgreSQL host that accepts connections and never answers: the store gives up soon."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support import free_port
from tollway.store import Store, StoreError


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never sends a byte (a host dropping replies)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # kept open, never answered

    port = free_port()
    server = await asyncio.start_server(accept, "127.0.0.1", port)
    yield port
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_a_silent_database_is_given_up_on_at_the_connect_timeout(silent_port: int) -> None:
    store = Store(f"postgresql+asyncpg://u@127.0.0.1:{silent_port}/x", connect_timeout=0.3)
    try:
        # asyncpg's own limit is 60 s: without the store's, this waits past the 5 s below.
        with pytest.raises(StoreError, match="cannot use the store"):
            async with asyncio.timeout(5):
                await store.open()
        async with asyncio.timeout(5):
            assert await store.reachable() is False
    finally:
        await store.close()
