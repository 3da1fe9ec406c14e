"""Two gateway processes on one store: keys made on one work on the other at once, and a
revocation on one reaches the other within the reconcile interval."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, running_gateway


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
