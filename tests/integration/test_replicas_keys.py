"""Key revocation across replicas: two gateway processes on one PostgreSQL database and one
Redis, as a fleet runs. What one replica ends, the other refuses within the reconcile bound
(``auth.reconcile_interval``), in the client's dialect; a block made through one cannot be
lifted with less authority through the other."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, postgres_database, redis_url, running_gateways, unique_prefix

BOUND = 1.0
"""The replicas' ``auth.reconcile_interval``: the longest another replica may take."""


@pytest.fixture(scope="module")
def fleet(log_dir: Path, simulator_url: str) -> Iterator[tuple[str, str]]:
    """Two replicas on one fresh PostgreSQL database and a shared Redis."""
    databases = postgres_database()
    store = next(databases)
    redis = redis_url()
    config = {
        "store": {"url": store},
        "auth": {"reconcile_interval": f"{BOUND}s"},
        "limits": {"backend": "redis", "redis_url": "env:TOLLWAY_REDIS_URL",
                   "redis_prefix": unique_prefix("keys")},
        "models": [{"name": "chat", "deployments": [{
            "provider": "openai", "model": "sim-chat", "api_base": simulator_url + "/v1",
            "api_key": "env:TEST_UPSTREAM_KEY"}]}],
    }  # fmt: skip
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": store}
    env["TOLLWAY_REDIS_URL"] = redis
    with running_gateways(log_dir, [(config, env)] * 2) as [(first, _), (second, _)]:
        yield first, second
    next(databases, None)


def admin_api(url: str, key: str = CLIENT_KEY) -> Callable[..., Any]:
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def call(method: str, path: str, body: dict[str, Any] | None = None, expect: int = 200) -> Any:
        response = client.request(method, path, json=body)
        assert response.status_code == expect, response.text
        return response.json() if response.content else None

    return call


def refusal(url: str, key: str) -> tuple[str | None, str | None]:
    """(OpenAI error code, Anthropic error type) for ``key``; (None, None) when it works."""
    code = kind = None
    try:
        openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
    except openai.AuthenticationError as error:
        code = error.code
    try:
        anthropic.Anthropic(base_url=url, api_key=key, max_retries=0).messages.create(
            model="chat", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    except anthropic.AuthenticationError as error:
        assert isinstance(error.body, dict)
        kind = error.body["error"]["type"]
    return code, kind


def refused_within_bound(url: str, key: str, code: str) -> None:
    deadline = time.monotonic() + BOUND + 1.5  # the interval, a reload, and a request
    while (seen := refusal(url, key)) != (code, "authentication_error"):
        assert time.monotonic() < deadline, f"still {seen} after {BOUND + 1.5} s"
        time.sleep(0.1)


def test_a_key_revoked_on_one_replica_is_refused_by_the_other(fleet: tuple[str, str]) -> None:
    first, second = fleet
    made = admin_api(first)("POST", "/admin/keys", {"name": "shared"}, 201)
    assert refusal(second, made["key"]) == (None, None)
    admin_api(first)("POST", f"/admin/keys/{made['id']}/revoke")
    assert refusal(first, made["key"]) == ("key_revoked", "authentication_error")  # at once
    refused_within_bound(second, made["key"], "key_revoked")


def test_blocking_a_rotated_key_on_one_replica_ends_its_old_secret_on_the_other(
    fleet: tuple[str, str],
) -> None:
    first, second = fleet
    admin = admin_api(first)
    old = admin("POST", "/admin/keys", {"name": "rotating"}, 201)
    new = admin("POST", f"/admin/keys/{old['id']}/rotate", {"grace_period": "1h"}, 201)
    assert refusal(second, old["key"]) == (None, None)  # in its grace period
    admin("POST", f"/admin/keys/{new['id']}/block")
    refused_within_bound(second, new["key"], "key_blocked")
    refused_within_bound(second, old["key"], "key_revoked")


def test_an_admins_block_made_on_one_replica_holds_on_the_other(fleet: tuple[str, str]) -> None:
    first, second = fleet
    admin = admin_api(first)
    team = admin("POST", "/admin/teams", {"name": f"fleet-{uuid.uuid4().hex[:6]}"}, 201)
    user = admin("POST", "/admin/users", {"email": f"f-{uuid.uuid4().hex[:6]}@example.com"}, 201)
    admin("POST", f"/admin/teams/{team['id']}/members", {"user_id": user["id"]}, 201)
    owned = {"name": "own", "user_id": user["id"], "team_id": team["id"]}
    as_owner = admin_api(second, admin("POST", "/admin/keys", owned, 201)["key"])
    key = admin("POST", "/admin/keys", owned, 201)
    admin("POST", f"/admin/keys/{key['id']}/block")
    denied = as_owner("POST", f"/admin/keys/{key['id']}/unblock", expect=403)
    assert denied["error"]["code"] == "insufficient_role"
    refused_within_bound(second, key["key"], "key_blocked")
