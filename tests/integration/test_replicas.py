"""Gateway processes on one store: keys made on one work on the others at once, and changes
made through one (a revocation, a vault credential) reach the others within the reconcile
interval; replicas starting together on an empty store make one first admin."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, postgres_database, running_gateway
from tollway.auth.bootstrap import ensure_admin
from tollway.auth.identity import Identity
from tollway.store import Store, migrate

VAULT_KEY = "cMQ5ntLHFUx7ArDfh11W-S3pdvakc5TaHIM9p3pNBDg="  # a test-only Fernet key


def works(url: str, key: str, model: str = "chat") -> bool:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    try:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "replica"}]
        )
    except openai.AuthenticationError:
        return False
    return True


def fleet_config(simulator_url: str, store: str, reconcile: str) -> dict[str, Any]:
    """A model on the simulator by an environment key, and one by a vault credential."""
    deployment = {"provider": "openai", "model": "sim-chat", "api_base": simulator_url + "/v1"}
    return {
        "store": {"url": store},
        "auth": {"reconcile_interval": reconcile},
        "models": [
            {"name": "chat", "deployments": [{**deployment, "api_key": "env:TEST_UPSTREAM_KEY"}]},
            {"name": "vaulted", "deployments": [{**deployment, "api_key": "vault:sim"}]},
        ],
    }


@pytest.fixture(scope="module")
def sqlite_pair(log_dir: Path, simulator_url: str) -> Iterator[tuple[str, str]]:
    """Two replicas on one SQLite file, reloading the store every 500 ms."""
    store = f"sqlite+aiosqlite:///{log_dir}/replicas.db"
    config = fleet_config(simulator_url, store, "500ms")
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": store}
    env["TOLLWAY_VAULT_KEY"] = VAULT_KEY
    with (
        running_gateway(log_dir, config, env) as (first, _),
        running_gateway(log_dir, config, env) as (second, _),
    ):
        yield first, second


def within(seconds: float, condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} after {seconds} s")
        time.sleep(0.1)


def test_two_replicas_share_keys(sqlite_pair: tuple[str, str]) -> None:
    first, second = sqlite_pair
    admin = httpx.Client(base_url=first, headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    made = admin.post("/admin/keys", json={"name": "shared"}).json()
    assert works(second, made["key"])  # unknown to the second: found in the store at once
    admin.post(f"/admin/keys/{made['id']}/revoke").raise_for_status()
    assert not works(first, made["key"])  # the node that revoked: at once
    within(
        1.5,
        lambda: not works(second, made["key"]),
        "the other replica still accepts the revoked key",
    )


def upstream_refuses(url: str) -> bool:
    """Whether the vaulted model fails for want of a good credential (502)."""
    try:
        works(url, CLIENT_KEY, "vaulted")
    except openai.APIStatusError as exc:
        assert exc.status_code == 502, exc
        return True
    return False


def test_a_credential_changed_on_one_replica_is_used_by_the_others(
    sqlite_pair: tuple[str, str],
) -> None:
    first, second = sqlite_pair
    admin = httpx.Client(base_url=first, headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    assert upstream_refuses(second)  # no credential yet
    put = {"name": "sim", "provider": "openai", "secret": UPSTREAM_KEY}
    admin.put("/admin/credentials/sim", json=put).raise_for_status()
    assert not upstream_refuses(first)
    # The other replica read the store's credentials at start only: it never saw this one.
    within(1.5, lambda: not upstream_refuses(second), "the other replica lacks the credential")
    admin.put("/admin/credentials/sim", json={**put, "secret": "sk-rotated-wrong"})
    within(1.5, lambda: upstream_refuses(second), "the other replica still has the old secret")
    admin.put("/admin/credentials/sim", json=put).raise_for_status()
    within(1.5, lambda: not upstream_refuses(second), "the other replica missed the rotation")
    admin.delete("/admin/credentials/sim").raise_for_status()
    within(1.5, lambda: upstream_refuses(second), "the other replica kept a deleted credential")


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
