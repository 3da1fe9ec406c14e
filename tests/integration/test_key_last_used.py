"""A key's ``last_used_at``: written to the store in batches while the gateway runs, and at
shutdown, so an admin can tell a key in use from one that can go.

Gateway processes on SQLite and on PostgreSQL, keys made and listed through the admin API,
used through the real ``openai`` SDK.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_identity import Admin, chat, refused
from tests.support import postgres_database, running_gateway


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, log_dir: Path) -> Iterator[str]:
    """A store the test's gateways share (one after the other)."""
    if request.param == "postgresql":
        databases = postgres_database()
        yield next(databases)
        next(databases, None)
    else:
        yield f"sqlite+aiosqlite:///{log_dir}/last-used-{time.monotonic_ns()}.db"


def gateway_config(simulator_url: str, store_url: str, **auth: Any) -> dict[str, Any]:
    return {
        "store": {"url": store_url},
        "auth": auth,
        "models": [{"name": "open-model", "deployments": [{
            "provider": "openai", "model": "sim-chat", "api_base": simulator_url + "/v1",
            "api_key": "env:TEST_UPSTREAM_KEY"}]}],
    }  # fmt: skip


def last_used(admin: Admin, key_id: str) -> dt.datetime | None:
    stamp = admin("GET", f"/admin/keys/{key_id}")["last_used_at"]
    return None if stamp is None else dt.datetime.fromisoformat(stamp)


def test_a_keys_last_use_is_written_when_the_gateway_stops_and_while_it_runs(
    log_dir: Path, simulator_url: str, store_url: str
) -> None:
    # Two gateways on one store, one after the other (each start costs seconds): the first
    # on the default interval (minutes), stopped right after a key's use; the second finds
    # that use written, then writes uses itself every 200 ms while it runs.
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": store_url}
    stopping = gateway_config(simulator_url, store_url)
    with running_gateway(log_dir, stopping, env) as (url, _):
        stopped = Admin(url)("POST", "/admin/keys", {"name": "used-then-stopped"}, 201)
        assert chat(url, stopped["key"])
    config = gateway_config(simulator_url, store_url, last_used_interval="200ms")
    with running_gateway(log_dir, config, env) as (url, _):
        admin = Admin(url)
        assert last_used(admin, stopped["id"]) is not None  # written when the first stopped
        used = admin("POST", "/admin/keys", {"name": "used"}, 201)
        idle = admin("POST", "/admin/keys", {"name": "idle"}, 201)
        blocked = admin("POST", "/admin/keys", {"name": "blocked"}, 201)
        admin("POST", f"/admin/keys/{blocked['id']}/block")
        assert last_used(admin, used["id"]) is None
        before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        assert chat(url, used["key"])
        assert refused(url, blocked["key"]).status_code == 401
        deadline = time.monotonic() + 10
        while last_used(admin, used["id"]) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        stamp = last_used(admin, used["id"])
        assert stamp is not None and before <= stamp <= dt.datetime.now(dt.UTC)
        # Neither a key nobody used nor a refused one counts as used.
        assert last_used(admin, idle["id"]) is None
        assert last_used(admin, blocked["id"]) is None
        listed = {key["id"]: key for key in admin("GET", "/admin/keys")["data"]}
        assert listed[used["id"]]["last_used_at"] is not None
