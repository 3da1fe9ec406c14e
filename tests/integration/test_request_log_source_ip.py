"""The request log filtered by the address requests came from (``source_ip``), on SQLite and
PostgreSQL, through ``GET /admin/logs``, its OpenAPI document and ``tollway logs list|export``.

Clients on two loopback addresses (127.0.0.1 and 127.0.0.2, both the machine's own) send
answered and refused requests to a real gateway.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, postgres_database, running_gateway, tollway_command

ADMIN = {"Authorization": f"Bearer {CLIENT_KEY}"}
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}
ELSEWHERE = "127.0.0.2"


@dataclass(frozen=True)
class Sent:
    """The module's gateway and the request ids sent from each address."""

    url: str
    from_here: set[str]
    from_elsewhere: set[str]
    refused_elsewhere: str


def _client(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def _logs(url: str, **params: str) -> httpx.Response:
    return httpx.get(url + "/admin/logs", params={"limit": "1000", **params}, headers=ADMIN)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def sent(
    request: pytest.FixtureRequest,
    log_dir: Path,
    simulator_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Sent]:
    databases = None
    if request.param == "postgresql":
        databases = postgres_database()
        store_url = next(databases)
    else:
        store_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('source-ip')}/tollway.db"
    openai = {"provider": "openai", "api_base": f"{simulator_url}/v1",
              "api_key": "env:TEST_UPSTREAM_KEY", "model": "sim-chat"}  # fmt: skip
    config = {
        "store": {"url": store_url},
        "models": [{"name": "chat", "deployments": [openai]}],
        "telemetry": {"request_log": {"flush_interval": "100ms"}},
    }
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": store_url}
    with running_gateway(log_dir, config, env) as (url, _):
        made = httpx.post(url + "/admin/keys", json={"name": "k"}, headers=ADMIN).json()
        key = {"Authorization": f"Bearer {made['key']}"}
        ids: dict[str, set[str]] = {"127.0.0.1": set(), ELSEWHERE: set()}
        refused = f"refused-{uuid.uuid4().hex[:8]}"
        for address, count in (("127.0.0.1", 3), (ELSEWHERE, 2)):
            with _client(address) as client:
                for _ in range(count):
                    rid = f"from-{address}-{uuid.uuid4().hex[:8]}"
                    answer = client.post(url + "/v1/chat/completions", json=CHAT,
                                         headers={**key, "x-request-id": rid})  # fmt: skip
                    assert answer.status_code == 200, answer.text
                    ids[address].add(rid)
        with _client(ELSEWHERE) as client:  # refused before the pipeline: logged all the same
            answer = client.post(url + "/v1/chat/completions", json=CHAT,
                                 headers={"x-request-id": refused})  # fmt: skip
            assert answer.status_code == 401
        ids[ELSEWHERE].add(refused)
        every = ids["127.0.0.1"] | ids[ELSEWHERE]
        deadline = time.monotonic() + 15
        while {r["request_id"] for r in _logs(url).json()["data"]} < every:
            assert time.monotonic() < deadline, "requests not logged"
            time.sleep(0.1)
        yield Sent(url, ids["127.0.0.1"], ids[ELSEWHERE], refused)
    if databases is not None:
        next(databases, None)


def _ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {row["request_id"] for row in response.json()["data"]}


def test_logs_filtered_by_source_ip_are_those_from_that_address(sent: Sent) -> None:
    assert _ids(_logs(sent.url, source_ip=ELSEWHERE)) == sent.from_elsewhere
    assert _ids(_logs(sent.url, source_ip="127.0.0.1")) >= sent.from_here
    assert not _ids(_logs(sent.url, source_ip="127.0.0.1")) & sent.from_elsewhere
    # With the other filters: who was refused from there.
    assert _ids(_logs(sent.url, source_ip=ELSEWHERE, status="401")) == {sent.refused_elsewhere}
    # An IPv4 client of a dual-stack listener is stored as ::ffff:a.b.c.d: either finds both.
    assert _ids(_logs(sent.url, source_ip=f"::ffff:{ELSEWHERE}")) == sent.from_elsewhere
    assert _ids(_logs(sent.url, source_ip="::ffff:7f00:2")) == sent.from_elsewhere
    assert _ids(_logs(sent.url, source_ip="10.9.8.7")) == set()
    exported = _logs(sent.url, source_ip=ELSEWHERE, format="jsonl")
    assert {json.loads(line)["request_id"] for line in exported.text.splitlines()} == (
        sent.from_elsewhere
    )


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("10.0.0.0/8", "one address, not a network"),
        ("localhost", "an IPv4 or IPv6 address"),
        ("127.0.0.256", "an IPv4 or IPv6 address"),
    ],
)
def test_a_source_ip_that_is_not_one_address_is_a_400_naming_it(
    sent: Sent, value: str, says: str
) -> None:
    answer = _logs(sent.url, source_ip=value)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "source_ip" and says in error["message"]


def test_the_openapi_document_lists_the_logs_filters(sent: Sent) -> None:
    document = httpx.get(sent.url + "/admin/openapi.json", headers=ADMIN).json()
    parameters = document["paths"]["/admin/logs"]["get"]["parameters"]
    query = {p["name"]: p for p in parameters if p["in"] == "query"}
    assert {"user", "team", "key", "model", "status", "source_ip", "since", "until", "limit",
            "cursor", "format"} <= set(query)  # fmt: skip
    assert "not a network" in query["source_ip"]["description"]


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOLLWAY_URL": url, "TOLLWAY_ADMIN_KEY": CLIENT_KEY}
    return subprocess.run(
        tollway_command(*args), capture_output=True, text=True, timeout=60, env=env
    )


def test_tollway_logs_list_and_export_filter_by_source_ip(sent: Sent) -> None:
    listed = _cli(sent.url, "logs", "list", "--source-ip", ELSEWHERE, "--limit", "100", "--json")
    assert listed.returncode == 0, listed.stderr
    rows: list[dict[str, Any]] = json.loads(listed.stdout)["data"]
    assert {row["request_id"] for row in rows} == sent.from_elsewhere
    assert {row["source_ip"] for row in rows} == {ELSEWHERE}

    exported = _cli(sent.url, "logs", "export", "--format", "jsonl", "--source-ip", ELSEWHERE)
    assert exported.returncode == 0, exported.stderr
    assert {json.loads(line)["request_id"] for line in exported.stdout.splitlines()} == (
        sent.from_elsewhere
    )
    refused = _cli(sent.url, "logs", "list", "--source-ip", "10.0.0.0/8")
    assert refused.returncode == 1 and "not a network" in refused.stderr
