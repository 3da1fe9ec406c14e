"""Fallbacks followed transitively, over real sockets: groups a -> b -> c (and c back to a),
a's and b's deployments on one simulator made to answer 500, c's on another; clients use the
openai SDK and httpx, and every request is served by c."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support import CLIENT_KEY, running_gateway, running_simulator

ADMIN = {"Authorization": f"Bearer {CLIENT_KEY}"}
HI = [{"role": "user", "content": "hello there"}]


def _chain(prefix: str, failing: str, healthy: str) -> list[dict[str, Any]]:
    """Groups ``{prefix}a`` -> ``{prefix}b`` -> ``{prefix}c`` -> ``{prefix}a`` (a cycle):
    a's and b's deployments on ``failing``, c's on ``healthy``."""

    def group(name: str, sim: str, fallback: str) -> dict[str, Any]:
        deployment = {"provider": "openai", "model": "sim-chat", "api_base": sim + "/v1",
                      "id": prefix + name}  # fmt: skip
        return {
            "name": prefix + name,
            "deployments": [deployment],
            "fallbacks": [prefix + fallback],
        }

    return [group("a", failing, "b"), group("b", failing, "c"), group("c", healthy, "a")]


@pytest.fixture(scope="module")
def sims(log_dir: Path) -> Iterator[tuple[str, str]]:
    with running_simulator(log_dir) as failing, running_simulator(log_dir) as healthy:
        httpx.post(failing + "/_sim/config", json={"fault": "status:500"}).raise_for_status()
        yield failing, healthy


@pytest.fixture(scope="module")
def gateway(log_dir: Path, sims: tuple[str, str]) -> Iterator[str]:
    failing, healthy = sims
    config = {
        "routing": {"failure_threshold": 3, "cooldown": "60s", "backoff": "10ms"},
        "models": [*_chain("", failing, healthy), *_chain("guarded-", failing, healthy)],
    }
    with running_gateway(log_dir, config) as (url, _):
        yield url


def test_a_request_reaches_its_fallbacks_fallback(gateway: str) -> None:
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0)
    served = []
    for _ in range(6):
        raw = client.chat.completions.with_raw_response.create(model="a", messages=HI)
        assert raw.parse().choices[0].message.content
        headers = raw.headers
        served.append(
            (
                headers["x-tollway-deployment"],
                int(headers["x-tollway-attempts"]),
                int(headers["x-tollway-fallbacks"]),
            )
        )
    assert {deployment for deployment, _, _ in served} == {"c"}
    # a failed, then b, then c answered...
    assert served[0][1:] == (3, 2)
    # ...until three failures each open a's and b's circuits, and c is tried at once.
    assert served[-1][1:] == (1, 0)
    rows = httpx.get(gateway + "/admin/deployments", headers=ADMIN).json()["data"]
    circuits = {row["id"]: row["circuit"] for row in rows}
    assert (circuits["a"], circuits["b"], circuits["c"]) == ("open", "open", "closed")

    stream = client.chat.completions.create(model="a", messages=HI, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def test_a_chain_goes_no_further_than_a_group_the_caller_may_not_use(gateway: str) -> None:
    def key(*allowed: str) -> dict[str, str]:
        made = httpx.post(
            gateway + "/admin/keys",
            json={"name": "chained", "allowed_models": list(allowed)},
            headers=ADMIN,
        )
        return {"Authorization": f"Bearer {made.json()['key']}"}

    def chat(headers: dict[str, str]) -> httpx.Response:
        body = {"model": "guarded-a", "messages": HI, "max_tokens": 4}
        return httpx.post(gateway + "/v1/chat/completions", json=body, headers=headers, timeout=30)

    # c is reached only through b: a key that may not use b gets a's failure, in OpenAI's shape.
    barred = chat(key("guarded-a", "guarded-c"))
    assert barred.status_code == 502
    assert barred.json()["error"]["type"]
    assert barred.headers["x-tollway-attempts"] == "1"
    rescued = chat(key("guarded-*"))
    assert rescued.status_code == 200
    assert rescued.headers["x-tollway-deployment"] == "guarded-c"
    assert rescued.headers["x-tollway-fallbacks"] == "2"
