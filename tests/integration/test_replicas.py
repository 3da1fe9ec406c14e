"""Two gateway processes on one store: keys made on one work on the other at once, and a
revocation on one reaches the other within the reconcile interval."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, postgres_database, running_gateway
from tollway.auth.bootstrap import ensure_admin
from tollway.auth.identity import Identity
from tollway.store import Store, migrate


def works(url: str, key: str) -> bool:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    try:
        client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "replica"}]
        )
    except openai.AuthenticationError:
        return False
    return True


def test_two_replicas_share_keys(log_dir: Path, simulator_url: str) -> None:
    store = f"sqlite+aiosqlite:///{log_dir}/replicas.db"
    config = {
        "store": {"url": store},
        "auth": {"reconcile_interval": "500ms"},
        "models": [{"name": "chat", "deployments": [{
            "provider": "openai", "model": "sim-chat", "api_base": simulator_url + "/v1",
            "api_key": "env:TEST_UPSTREAM_KEY"}]}],
    }  # fmt: skip
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": store}
    with (
        running_gateway(log_dir, config, env) as (first, _),
        running_gateway(log_dir, config, env) as (second, _),
    ):
        admin = httpx.Client(base_url=first, headers={"Authorization": f"Bearer {CLIENT_KEY}"})
        made = admin.post("/admin/keys", json={"name": "shared"}).json()
        assert works(second, made["key"])  # unknown to the second: found in the store at once
        admin.post(f"/admin/keys/{made['id']}/revoke").raise_for_status()
        assert not works(first, made["key"])  # the node that revoked: at once
        deadline = time.monotonic() + 1.5
        while works(second, made["key"]):
            if time.monotonic() > deadline:
                pytest.fail("the other replica still accepts the revoked key after 1.5 s")
            time.sleep(0.1)


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh PostgreSQL database (its URL) for one test."""
    databases = postgres_database()
    url = next(databases)
    yield url
    next(databases, None)


@pytest.fixture(params=["postgresql", "sqlite"])
def any_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database of each backend for one test: PostgreSQL, or a SQLite file."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/fleet.db"
        return
    yield request.getfixturevalue("database")


async def test_replicas_starting_together_make_one_first_admin(any_database: str) -> None:
    database = any_database
    await migrate(database)
    stores = [Store(database) for _ in range(3)]
    for store in stores:
        await store.open()
    try:
        made = await asyncio.gather(*(ensure_admin(Identity(store)) for store in stores))
        admins = await stores[0].users.find(role="admin")
        keys = await stores[0].keys.find()
    finally:
        for store in stores:
            await store.close()
    assert len([key for key in made if key is not None]) == 1
    assert len(admins) == 1
    assert len(keys) == 1
