"""Store lookups of unknown keys are bounded per client address (auth/miss_limit.py).

A real gateway on SQLite; clients on two loopback addresses (127.0.0.1 and 127.0.0.2, both
the machine's own) send keys it does not hold. A key written to the store behind the
gateway's back (as another replica would make one) shows whether the store was asked.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.conftest import UPSTREAM_KEY
from tests.integration.key_lookups import key_made_elsewhere, refused_unasked
from tests.support import CLIENT_KEY, running_gateway

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}
BURST = 3


def _client(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def _chat(client: httpx.Client, url: str, key: str) -> httpx.Response:
    return client.post(url + "/v1/chat/completions", json=CHAT, headers={"x-api-key": key})


def test_unknown_keys_beyond_an_address_rate_are_refused_without_a_store_lookup(
    log_dir: Path, simulator_url: str
) -> None:
    config = {
        "auth": {"unknown_key_lookups_per_second": 0.001, "unknown_key_lookups_burst": BURST},
        "models": [{"name": "chat", "deployments": [{
            "provider": "openai", "model": "sim-chat", "api_base": simulator_url + "/v1",
            "api_key": "env:TEST_UPSTREAM_KEY"}]}],
    }  # fmt: skip
    with (
        running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, _),
        _client("127.0.0.1") as here,
        _client("127.0.0.2") as elsewhere,
    ):
        store_url = f"sqlite+aiosqlite:///{log_dir}/gateway-{url.rsplit(':', 1)[1]}.db"
        answers = [_chat(here, url, f"tw-random-{n}") for n in range(BURST + 4)]
        # Every one the 401 of an unknown key, whether the store was asked or not.
        assert {a.status_code for a in answers} == {401}
        assert len({a.json()["error"]["message"] for a in answers}) == 1
        assert {a.json()["error"]["code"] for a in answers} == {"invalid_api_key"}
        assert refused_unasked(url) == 4

        # A key this gateway does not hold yet, sent from the address over its rate: not
        # looked up (it would be found). From another address it is, and then known here too.
        key = asyncio.run(key_made_elsewhere(store_url))
        assert _chat(here, url, key).status_code == 401
        assert refused_unasked(url) == 5
        assert _chat(elsewhere, url, key).status_code == 200
        assert _chat(here, url, key).status_code == 200
        # Known keys are never counted against the address.
        assert _chat(here, url, CLIENT_KEY).status_code == 200
        assert refused_unasked(url) == 5
