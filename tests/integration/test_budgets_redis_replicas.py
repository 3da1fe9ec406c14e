"""Two gateway processes sharing budgets through a Redis of their own (``redis-server``
started here, so FLUSHALL wipes nobody else's keys) and one PostgreSQL store: bursts, cut
streams, failures and fallbacks, and Redis losing its data mid-period (a FLUSHALL, a restart
without persistence).

The store is written only every minute here, far behind Redis: what the replicas saw in
Redis' replies has to bring back the spend the store has not been told of yet.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from redis import Redis

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_budgets import PRICEY
from tests.support import (
    CLIENT_KEY,
    Process,
    free_port,
    postgres_database,
    running_gateways,
    unavailable,
    unique_prefix,
)
from tollway.limits.backend import Claim, RateSpec, Ticket
from tollway.limits.redis import RedisLimiter

BUDGET_USD = 3.00
WORST = (40 * PRICEY["input"] + 45 * PRICEY["output"]) / 1e6
"""The most one of these tests' requests can cost: a few input tokens, up to 45 output."""


class PrivateRedis:
    """A ``redis-server`` without persistence on a port of its own; ``restart`` loses all."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log_dir = log_dir
        self._runs = 0
        self._process: Process | None = None
        self.start()

    def start(self) -> None:
        self._runs += 1
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no"]
        log = self._log_dir / f"redis-{self.port}-{self._runs}.log"
        self._process = Process(args, log)
        deadline = time.monotonic() + 10
        while True:
            try:
                with Redis.from_url(self.url, socket_timeout=1) as client:
                    client.ping()
                return
            except OSError:
                pass
            except Exception as exc:  # redis-py's ConnectionError is not an OSError
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start: {exc}") from exc
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    def restart(self) -> None:
        """Stop and start again: with no persistence, everything is gone."""
        self.stop()
        self.start()

    def flushall(self) -> None:
        with Redis.from_url(self.url) as client:
            client.flushall()


@pytest.fixture(scope="module")
def redis_server(log_dir: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed")
    server = PrivateRedis(log_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def store_url() -> Iterator[str]:
    yield from postgres_database()


def loss_config(simulator_url: str) -> dict[str, Any]:
    deployment = {
        "provider": "openai", "model": "sim-chat", "api_base": f"{simulator_url}/v1",
        "api_key": "env:TEST_UPSTREAM_KEY", "price": PRICEY,
    }  # fmt: skip
    return {
        "auth": {"reconcile_interval": "500ms"},
        "upstream": {"forward_headers": ["x-sim-*"]},
        "models": [
            {"name": "pricey", "deployments": [deployment]},
            {
                "name": "pricey-pair",
                "deployments": [
                    {**deployment, "id": "pair-a"},
                    {**deployment, "id": "pair-b"},
                ],
                "strategy": "priority",
            },
            {
                "name": "pricey-fallback",
                "deployments": [
                    {**deployment, "id": "dead", "api_base": "http://127.0.0.1:9/v1"},
                    {**deployment, "id": "live"},
                ],
                "strategy": "priority",
            },
        ],
        "limits": {
            "backend": "redis",
            "redis_url": "env:TOLLWAY_REDIS_URL",
            "redis_timeout": "2s",
            "spend_flush_interval": "60s",
        },
    }


@pytest.fixture(scope="module")
def two_gateways(
    log_dir: Path, simulator_url: str, redis_server: PrivateRedis, store_url: str
) -> Iterator[list[str]]:
    config = {**loss_config(simulator_url), "store": {"url": store_url}}
    env = {
        "TEST_UPSTREAM_KEY": UPSTREAM_KEY,
        "TOLLWAY_REDIS_URL": redis_server.url,
        "TOLLWAY_STORE_URL": store_url,
    }
    with running_gateways(log_dir, [(config, env)] * 2) as gateways:
        yield [url for url, _ in gateways]


def admin(url: str, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(
        method, url + path, json=body, headers={"authorization": f"Bearer {CLIENT_KEY}"}
    )
    assert response.status_code == 200, response.text
    return response.json()


def new_key_with_budget(urls: list[str], limit_usd: float = BUDGET_USD) -> tuple[str, str]:
    """A fresh key with a day budget of ``limit_usd``, known to every gateway: (its id,
    the key)."""
    created = httpx.post(
        urls[0] + "/admin/keys",
        json={"name": "loss"},
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
    ).json()
    key_id = created["id"]
    body = {"scope": "key", "scope_id": key_id, "period": "day", "limit_usd": limit_usd}
    admin(urls[0], "PUT", "/admin/budgets", body)
    deadline = time.monotonic() + 10
    for url in urls[1:]:  # the others read it at their next reconcile
        while not admin(url, "GET", f"/admin/budgets?scope=key&scope_id={key_id}")["data"]:
            assert time.monotonic() < deadline, "the budget never reached the other gateway"
            time.sleep(0.1)
    return key_id, created["key"]


def budget_row(url: str, key_id: str) -> dict[str, Any]:
    (row,) = admin(url, "GET", f"/admin/budgets?scope=key&scope_id={key_id}")["data"]
    assert isinstance(row, dict)
    return row


def micros(usd: float) -> int:
    return round(usd * 1_000_000)


def wait_settled(url: str, key_id: str) -> dict[str, Any]:
    """The budget row once nothing is reserved (a client that left settles after it)."""
    deadline = time.monotonic() + 10
    while True:
        row = budget_row(url, key_id)
        if row["reserved_usd"] == 0 or time.monotonic() > deadline:
            return row
        time.sleep(0.1)


async def test_a_burst_across_two_gateways_never_overspends_a_small_budget(
    two_gateways: list[str],
) -> None:
    key_id, key = new_key_with_budget(two_gateways, 0.75)
    clients = [
        openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0) for url in two_gateways
    ]

    async def one(i: int) -> float | str:
        try:
            raw = await clients[i % 2].chat.completions.with_raw_response.create(
                model="pricey",
                messages=[{"role": "user", "content": f"burst {i}"}],
                max_tokens=10 + i % 30,
                stream=i % 3 == 0,
                stream_options={"include_usage": True} if i % 3 == 0 else None,
            )
        except openai.RateLimitError as exc:
            return str(exc.code)
        if i % 3:
            return float(raw.headers["x-tollway-cost-usd"])
        usage = None
        async for chunk in raw.parse():  # type: ignore[union-attr]
            usage = chunk.usage or usage
        assert usage is not None
        return (
            usage.prompt_tokens * PRICEY["input"] + usage.completion_tokens * PRICEY["output"]
        ) / 1e6

    results = await asyncio.gather(*(one(i) for i in range(240)))
    for client in clients:
        await client.close()
    refused = [r for r in results if isinstance(r, str)]
    costs = [r for r in results if isinstance(r, float)]
    assert refused and set(refused) == {"budget_exceeded"} and costs
    for url in two_gateways:
        row = budget_row(url, key_id)
        assert micros(row["spent_usd"]) == sum(map(micros, costs)) <= micros(0.75)
        assert row["reserved_usd"] == 0


def test_a_client_that_leaves_mid_stream_pays_for_what_was_generated(
    two_gateways: list[str],
) -> None:
    key_id, key = new_key_with_budget(two_gateways)
    body = {
        "model": "pricey", "stream": True, "max_tokens": 200,
        "messages": [{"role": "user", "content": "tell a long story"}],
    }  # fmt: skip
    headers = {"authorization": f"Bearer {key}", "x-sim-tpot-ms": "40"}
    with httpx.stream(
        "POST", two_gateways[1] + "/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        held = BUDGET_USD - float(response.headers["x-tollway-budget-remaining-usd"])
        lines = response.iter_lines()
        for _ in range(5):
            next(lines)
    # Gone after a few of 200 tokens: the reservation is released, the start is paid for.
    row = wait_settled(two_gateways[0], key_id)
    assert row["reserved_usd"] == 0
    assert 0 < row["spent_usd"] < held / 4


def test_a_request_failing_on_every_candidate_costs_nothing(two_gateways: list[str]) -> None:
    # Providers bill no call that failed with an error status (docs/limits.md).
    key_id, key = new_key_with_budget(two_gateways)
    answer = httpx.post(
        two_gateways[0] + "/v1/chat/completions",
        json={
            "model": "pricey-pair",
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "x"}],
        },
        headers={"authorization": f"Bearer {key}", "x-sim-fault": "status:500"},
        timeout=30,
    )
    assert answer.status_code == 502, answer.text
    assert int(answer.headers["x-tollway-attempts"]) >= 2
    row = budget_row(two_gateways[1], key_id)
    assert (row["spent_usd"], row["reserved_usd"]) == (0, 0)


def test_a_fallback_is_charged_for_the_attempt_that_answered_only(
    two_gateways: list[str],
) -> None:
    key_id, key = new_key_with_budget(two_gateways)
    client = openai.OpenAI(base_url=two_gateways[0] + "/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="pricey-fallback", messages=[{"role": "user", "content": "x"}], max_tokens=20
    )
    assert raw.headers["x-tollway-deployment"] == "live"
    assert raw.headers["x-tollway-fallbacks"] == "1"
    row = budget_row(two_gateways[1], key_id)
    assert micros(row["spent_usd"]) == micros(float(raw.headers["x-tollway-cost-usd"])) > 0
    assert row["reserved_usd"] == 0


def test_flushall_mid_period_never_forgets_spend(
    two_gateways: list[str], redis_server: PrivateRedis
) -> None:
    # The first admission after the FLUSHALL wrote spent=0 for the account, so every loss
    # gave the key its whole budget again: it spent several times its $3.
    key_id, key = new_key_with_budget(two_gateways)
    clients = [
        openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0) for url in two_gateways
    ]
    costs: list[float] = []
    with pytest.raises(openai.RateLimitError) as caught:
        for i in range(400):
            raw = clients[i % 2].chat.completions.with_raw_response.create(
                model="pricey",
                messages=[{"role": "user", "content": f"loop {i}"}],
                max_tokens=20 + i % 25,
            )
            costs.append(float(raw.headers["x-tollway-cost-usd"]))
            if i % 5 == 4:
                redis_server.flushall()
    assert caught.value.code == "budget_exceeded"
    assert len(costs) >= 10
    spent = sum(map(micros, costs))
    for url in two_gateways:
        row = budget_row(url, key_id)
        assert micros(row["spent_usd"]) == spent
        assert row["reserved_usd"] == 0
    assert spent <= micros(BUDGET_USD)
    assert micros(BUDGET_USD) - spent < micros(WORST)


async def test_concurrent_clients_on_two_gateways_through_losses_stop_at_the_budget(
    two_gateways: list[str], redis_server: PrivateRedis
) -> None:
    key_id, key = new_key_with_budget(two_gateways)
    clients = [
        openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0) for url in two_gateways
    ]
    costs: list[float] = []
    losses: list[float] = []

    async def lose_data() -> None:
        # While requests are in flight on both gateways, early in the budget (a loss while
        # the budget is nearly spent may let in what other replicas' requests in flight
        # would have taken, until they next reach Redis: docs/limits.md).
        while len(losses) < 3:
            await asyncio.sleep(0.01)
            if sum(costs) >= (len(losses) + 1) * 0.2 * BUDGET_USD:
                redis_server.flushall()
                losses.append(sum(costs))

    async def loop(client: openai.AsyncOpenAI, worker: int) -> None:
        for i in range(400):
            try:
                raw = await client.chat.completions.with_raw_response.create(
                    model="pricey",
                    messages=[{"role": "user", "content": f"job {worker} run {i}"}],
                    max_tokens=20 + (worker * 7 + i) % 25,
                    extra_headers={"x-sim-ttft-ms": "20"},
                )
            except openai.RateLimitError as exc:
                assert exc.code == "budget_exceeded"
                return
            costs.append(float(raw.headers["x-tollway-cost-usd"]))
        raise AssertionError("the budget never stopped the loop")

    watcher = asyncio.create_task(lose_data())
    await asyncio.gather(*(loop(clients[w % 2], w) for w in range(8)))
    watcher.cancel()
    for client in clients:
        await client.close()
    assert len(losses) == 3
    spent = sum(map(micros, costs))
    for url in two_gateways:
        row = budget_row(url, key_id)
        assert micros(row["spent_usd"]) == spent
        assert row["reserved_usd"] == 0
    assert spent <= micros(BUDGET_USD)
    assert micros(BUDGET_USD) - spent < micros(WORST)


def test_a_redis_restart_without_persistence_never_forgets_spend(
    two_gateways: list[str], redis_server: PrivateRedis
) -> None:
    key_id, key = new_key_with_budget(two_gateways)
    headers = {"authorization": f"Bearer {key}"}
    costs: list[float] = []
    for i in range(400):
        body = {
            "model": "pricey", "max_tokens": 20 + i % 25,
            "messages": [{"role": "user", "content": f"restart {i}"}],
        }  # fmt: skip
        url = two_gateways[i % 2]
        answer = httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=10)
        if answer.status_code == 503:  # connections the restart cut: retry as a client would
            assert answer.json()["error"]["code"] == "limiter_unavailable"
            continue
        if answer.status_code == 429:
            assert answer.json()["error"]["code"] == "budget_exceeded"
            break
        assert answer.status_code == 200, answer.text
        costs.append(float(answer.headers["x-tollway-cost-usd"]))
        if len(costs) % 7 == 0:
            redis_server.restart()
    else:
        raise AssertionError("the budget never stopped the loop")
    spent = sum(map(micros, costs))
    row = budget_row(two_gateways[0], key_id)
    assert micros(row["spent_usd"]) == spent
    assert spent <= micros(BUDGET_USD)
    assert micros(BUDGET_USD) - spent < micros(WORST)


async def test_a_restarted_redis_answers_the_next_admission_not_a_503(
    redis_server: PrivateRedis,
) -> None:
    # A restarted Redis has closed every pooled connection; each was used once more, failed,
    # and turned one request into a 503 limiter_unavailable.
    limiter = RedisLimiter(redis_server.url, unique_prefix("restart"), socket_timeout=5.0)
    scope = ("key:restart", RateSpec(rpm=100))
    try:
        assert isinstance(await limiter.admit(Claim("before", [scope])), Ticket)
        redis_server.restart()
        assert isinstance(await limiter.admit(Claim("after", [scope])), Ticket)
    finally:
        await limiter.close()
