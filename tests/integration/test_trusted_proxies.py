"""The client's address behind a reverse proxy (``server.trusted_proxies``,
dialects/client_address.py), through a real gateway process.

The "proxy" is a client on 127.0.0.2 (a trusted address) that sends ``X-Forwarded-For`` as
a proxy would; a client on 127.0.0.1 (not trusted) sends the same header, as anyone may.
What the gateway makes of them shows in the request log, the audit trail, the access log
and the unknown-key lookup limit, which each go by the client's address.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.key_lookups import key_made_elsewhere, refused_unasked
from tests.support import CLIENT_KEY, Process, running_gateway, wait_for_ids

ADMIN = {"Authorization": f"Bearer {CLIENT_KEY}"}
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}
PROXY = "127.0.0.2"
DIRECT = "127.0.0.1"
BURST = 3


@dataclass(frozen=True)
class Behind:
    """The module's gateway, behind the proxy on 127.0.0.2."""

    url: str
    process: Process
    store_url: str
    proxy: httpx.Client
    direct: httpx.Client


def _client(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


@pytest.fixture(scope="module")
def behind(log_dir: Path, simulator_url: str) -> Iterator[Behind]:
    openai = {"provider": "openai", "api_base": f"{simulator_url}/v1",
              "api_key": "env:TEST_UPSTREAM_KEY", "model": "sim-chat"}  # fmt: skip
    config = {
        "server": {"trusted_proxies": [PROXY, "10.0.0.0/8"], "access_log": True},
        "auth": {"unknown_key_lookups_per_second": 0.001, "unknown_key_lookups_burst": BURST},
        "models": [{"name": "chat", "deployments": [openai]}],
        "telemetry": {"request_log": {"flush_interval": "100ms"}},
    }
    with (
        running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, process),
        _client(PROXY) as proxy,
        _client(DIRECT) as direct,
    ):
        store_url = f"sqlite+aiosqlite:///{log_dir}/gateway-{url.rsplit(':', 1)[1]}.db"
        yield Behind(url, process, store_url, proxy, direct)


def _forwarded(*values: str) -> list[tuple[str, str]]:
    """A fresh request id and one ``X-Forwarded-For`` header per value."""
    return [("x-request-id", f"xff-{uuid.uuid4().hex[:10]}")] + [
        ("X-Forwarded-For", value) for value in values
    ]


def _logged_sources(url: str, sent: dict[str, str]) -> dict[str, str | None]:
    """The request log's ``source_ip`` of each request id sent, once all are written."""

    def rows() -> list[dict[str, Any]]:
        page = httpx.get(url + "/admin/logs", params={"limit": "1000"}, headers=ADMIN)
        return list(page.json()["data"])

    found = wait_for_ids(rows, set(sent), "logged")
    return {rid: found[rid]["source_ip"] for rid in sent}


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        # The right-most address the trusted hops vouch for; what the client wrote to the
        # left of it (198.51.100.9) is its own word.
        (("198.51.100.9, 203.0.113.7, 10.1.2.3",), "203.0.113.7"),
        # Each proxy its own header: one list, in order.
        (("203.0.113.8", "10.1.2.3"), "203.0.113.8"),
        (("[2001:db8::7]:443",), "2001:db8::7"),
        (("203.0.113.9:51234",), "203.0.113.9"),
        # An entry that is no address before an untrusted one is reached: the peer.
        (("203.0.113.7, unknown",), PROXY),
        (("",), PROXY),
        # A client inside the trusted network: every hop trusted, the left-most.
        (("10.0.0.5, 10.1.2.3",), "10.0.0.5"),
        ((), PROXY),  # the proxy's own request
    ],
)
def test_a_trusted_proxys_requests_are_logged_from_the_address_it_forwards_for(
    behind: Behind, forwarded: tuple[str, ...], client: str
) -> None:
    key = {"Authorization": f"Bearer {CLIENT_KEY}"}
    answered = _forwarded(*forwarded)
    assert behind.proxy.post(
        behind.url + "/v1/chat/completions", json=CHAT, headers=[*answered, *key.items()]
    ).status_code == 200  # fmt: skip
    refused = _forwarded(*forwarded)  # no key: refused before the pipeline, logged all the same
    assert behind.proxy.post(
        behind.url + "/v1/chat/completions", json=CHAT, headers=refused
    ).status_code == 401  # fmt: skip
    sent = {answered[0][1]: client, refused[0][1]: client}
    assert _logged_sources(behind.url, sent) == sent


def test_an_untrusted_peers_forwarded_for_is_ignored(behind: Behind) -> None:
    # Anyone may send the header: from a peer that is no trusted proxy it names no one.
    headers = [*_forwarded("203.0.113.66"), *ADMIN.items()]
    answer = behind.direct.post(behind.url + "/v1/chat/completions", json=CHAT, headers=headers)
    assert answer.status_code == 200
    rid = headers[0][1]
    assert _logged_sources(behind.url, {rid: DIRECT}) == {rid: DIRECT}


def _audited(url: str, request_ids: set[str]) -> dict[str, Any]:
    def events() -> list[dict[str, Any]]:
        page = httpx.get(url + "/admin/audit", params={"limit": "1000"}, headers=ADMIN)
        return list(page.json()["data"])

    return wait_for_ids(events, request_ids, "audited")


def test_admin_changes_and_denials_are_audited_from_the_forwarded_address(
    behind: Behind,
) -> None:
    made = _forwarded("203.0.113.20, 10.1.2.3")
    answer = behind.proxy.post(
        behind.url + "/admin/keys", json={"name": "via-proxy"}, headers=[*made, *ADMIN.items()]
    )
    assert answer.status_code == 201, answer.text
    denied = _forwarded("203.0.113.21")
    answer = behind.proxy.get(behind.url + "/admin/keys", headers=denied)
    assert answer.status_code == 401
    spoofed = _forwarded("203.0.113.22")
    answer = behind.direct.get(behind.url + "/admin/keys", headers=spoofed)
    assert answer.status_code == 401
    events = _audited(behind.url, {made[0][1], denied[0][1], spoofed[0][1]})
    assert events[made[0][1]]["action"] == "key.create"
    assert events[made[0][1]]["source_ip"] == "203.0.113.20"
    assert events[denied[0][1]]["action"] == "admin.denied"
    assert events[denied[0][1]]["source_ip"] == "203.0.113.21"
    assert events[spoofed[0][1]]["source_ip"] == DIRECT
    # Found by that address too.
    page = httpx.get(
        behind.url + "/admin/audit", params={"source_ip": "203.0.113.20"}, headers=ADMIN
    ).json()
    assert made[0][1] in {event["request_id"] for event in page["data"]}


def test_the_access_log_begins_with_the_forwarded_address(behind: Behind) -> None:
    agent = f"probe-{uuid.uuid4().hex[:8]}"
    headers = [*_forwarded("203.0.113.30"), ("User-Agent", agent)]
    assert behind.proxy.get(behind.url + "/health/live", headers=headers).status_code == 200
    deadline = time.monotonic() + 5
    while agent not in behind.process.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    (line,) = [line for line in behind.process.output().splitlines() if agent in line]
    assert "203.0.113.30 " in line and PROXY not in line


def test_unknown_key_lookups_are_limited_per_forwarded_client_not_per_proxy(
    behind: Behind,
) -> None:
    def chat(client: httpx.Client, key: str, *forwarded: str) -> int:
        headers = [("x-api-key", key), *(("X-Forwarded-For", v) for v in forwarded)]
        return client.post(
            behind.url + "/v1/chat/completions", json=CHAT, headers=headers
        ).status_code

    before = refused_unasked(behind.url)
    # One client behind the proxy sends random keys past its burst...
    for n in range(BURST + 2):
        assert chat(behind.proxy, f"tw-random-{n}", "203.0.113.40") == 401
    assert refused_unasked(behind.url) == before + 2
    # ...and a key this gateway does not hold yet is not looked up for it, but is for
    # another client of the same proxy (before the change, the proxy's one bucket was spent).
    key = asyncio.run(key_made_elsewhere(behind.store_url))
    assert chat(behind.proxy, key, "203.0.113.40") == 401
    assert refused_unasked(behind.url) == before + 3
    assert chat(behind.proxy, key, "203.0.113.41") == 200

    # A client that is no proxy does not get a fresh bucket by naming another address.
    for n in range(BURST + 2):
        assert chat(behind.direct, f"tw-direct-{n}", f"203.0.113.{50 + n}") == 401
    assert refused_unasked(behind.url) == before + 5
