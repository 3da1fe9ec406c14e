"""The seeds' incident with two gateway processes sharing limits and a budget through Redis,
and what happens when Redis cannot be reached."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_budgets import PRICEY
from tests.support import (
    CLIENT_KEY,
    free_port,
    redis_url,
    running_gateway,
    running_gateways,
    unique_prefix,
)

BUDGET_USD = 5.00


def shared_config(simulator_url: str, redis: str, prefix: str, **limits: Any) -> dict[str, Any]:
    deployment = {
        "provider": "openai", "model": "sim-chat", "api_base": f"{simulator_url}/v1",
        "api_key": "env:TEST_UPSTREAM_KEY", "price": PRICEY,
    }  # fmt: skip
    return {
        "models": [
            {"name": "pricey", "deployments": [deployment]},
            {"name": "pricey-tpm", "deployments": [deployment]},
        ],
        "limits": {
            "backend": "redis",
            "redis_url": "env:TOLLWAY_REDIS_URL",
            "redis_prefix": prefix,
            "models": {"pricey-tpm": {"tpm": 400}},
            "budgets": [{"scope": "org", "id": "*", "period": "total", "limit_usd": BUDGET_USD}],
            **limits,
        },
    }


@pytest.fixture(scope="module")
def two_gateways(log_dir: Path, simulator_url: str) -> Iterator[list[str]]:
    redis = redis_url()
    config = shared_config(simulator_url, redis, unique_prefix("budget"))
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_REDIS_URL": redis}
    with running_gateways(log_dir, [(config, env)] * 2) as gateways:  # a store each
        yield [url for url, _ in gateways]


def budget_row(url: str) -> dict[str, Any]:
    response = httpx.get(url + "/admin/budgets", headers={"authorization": f"Bearer {CLIENT_KEY}"})
    assert response.status_code == 200, response.text
    (row,) = response.json()["data"]
    assert isinstance(row, dict)
    return row


def test_tpm_limit_is_shared_by_both_gateways(two_gateways: list[str]) -> None:
    clients = [
        openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        for url in two_gateways
    ]
    used = 0
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as caught:
        for i in range(200):
            completion = clients[i % 2].chat.completions.create(
                model="pricey-tpm", messages=[{"role": "user", "content": "x"}], max_tokens=90
            )
            assert completion.usage is not None
            used += completion.usage.total_tokens
    elapsed = time.monotonic() - started
    assert caught.value.code == "rate_limit_exceeded"
    # One bucket of 400 tokens a minute for both: what went through is what it held plus
    # what refilled meanwhile. Two separate buckets would have let about twice that through.
    refilled = 400 / 60 * elapsed
    assert 400 - 100 <= used <= 400 + refilled


async def test_looping_clients_on_two_gateways_stop_at_one_shared_budget(
    two_gateways: list[str],
) -> None:
    clients = [
        openai.AsyncOpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        for url in two_gateways
    ]

    async def loop(client: openai.AsyncOpenAI, worker: int) -> list[float]:
        costs: list[float] = []
        for i in range(200):
            try:
                raw = await client.chat.completions.with_raw_response.create(
                    model="pricey",
                    messages=[{"role": "user", "content": f"job {worker} run {i}"}],
                    max_tokens=20 + (worker * 7 + i) % 25,
                )
            except openai.RateLimitError as exc:
                assert exc.code == "budget_exceeded"
                return costs
            costs.append(float(raw.headers["x-tollway-cost-usd"]))
        raise AssertionError("the budget never stopped the loop")

    before = budget_row(two_gateways[0])["spent_usd"]  # the tpm test's spend
    # Eight looping jobs, four on each gateway, all at once.
    results = await asyncio.gather(*(loop(clients[w % 2], w) for w in range(8)))
    for client in clients:
        await client.close()
    total = sum(sum(costs) for costs in results)
    assert sum(len(costs) for costs in results) >= 16
    # Spend settles before each answer is sent.
    rows = [budget_row(url) for url in two_gateways]
    assert rows[0]["spent_usd"] == rows[1]["spent_usd"]
    spent = rows[0]["spent_usd"]
    assert spent <= BUDGET_USD
    assert rows[0]["reserved_usd"] == 0
    assert spent - before == pytest.approx(total, abs=1e-5)
    worst = (40 * PRICEY["input"] + 45 * PRICEY["output"]) / 1e6
    assert BUDGET_USD - spent < worst


def test_unreachable_redis_answers_503_unless_fail_open(log_dir: Path, simulator_url: str) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_REDIS_URL": dead}
    body = {"model": "pricey", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5}
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    closed = shared_config(simulator_url, dead, unique_prefix("down"))
    opened = shared_config(simulator_url, dead, unique_prefix("down"), fail_open=True)
    # Started together (a store each): a start is mostly imports.
    with running_gateways(log_dir, [(closed, env), (opened, env)]) as gateways:
        (url, process), (open_url, _) = gateways
        answer = httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=10)
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "limiter_unavailable"
        assert answer.headers["retry-after"] == "1"
        # What reads budget spend says the same (it was a 500, and plain text for the estimate).
        for read in (
            httpx.get(url + "/admin/budgets", headers=headers, timeout=10),
            httpx.post(url + "/v1/estimate", json=body, headers=headers, timeout=10),
        ):
            assert read.status_code == 503, read.text
            assert read.json()["error"]["code"] == "limiter_unavailable"
        assert "Traceback" not in process.output()
        answer = httpx.post(
            open_url + "/v1/chat/completions", json=body, headers=headers, timeout=10
        )
        assert answer.status_code == 200, answer.text
        assert "x-tollway-budget-remaining-usd" not in answer.headers


class RedisSwitch:
    """A TCP relay in front of the test Redis that can be cut and restored: an outage of the
    gateway's Redis without touching Redis itself (other tests share it)."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.url = f"redis://127.0.0.1:{free_port()}{parts.path}"
        self._port = int(urlsplit(self.url).port or 0)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def up(self) -> None:
        asyncio.run_coroutine_threadsafe(self._up(), self._loop).result(5)

    def down(self) -> None:
        asyncio.run_coroutine_threadsafe(self._down(), self._loop).result(5)

    def close(self) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _up(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self._port)

    async def _down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        self._writers |= {writer, upstream_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


def test_spend_let_through_while_redis_was_down_is_charged_when_it_is_back(
    log_dir: Path, simulator_url: str
) -> None:
    # fail_open lets requests through while Redis cannot be reached; what they cost was never
    # charged to their budgets (admission took nothing, so settlement had nothing to settle),
    # and the shared budget stayed short of what had been spent.
    switch = RedisSwitch(redis_url())
    switch.up()
    try:
        env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_REDIS_URL": switch.url}
        config = shared_config(
            simulator_url, switch.url, unique_prefix("outage"), fail_open=True,
            spend_flush_interval="1s",
        )  # fmt: skip
        body = {"model": "pricey", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5}
        headers = {"authorization": f"Bearer {CLIENT_KEY}"}
        with running_gateway(log_dir, config, env) as (url, _):
            first = httpx.post(url + "/v1/chat/completions", json=body, headers=headers)
            assert first.status_code == 200, first.text
            before = budget_row(url)["spent_usd"]
            assert before == pytest.approx(float(first.headers["x-tollway-cost-usd"]), abs=1e-6)
            switch.down()
            costs = []
            for _ in range(3):
                answer = httpx.post(
                    url + "/v1/chat/completions", json=body, headers=headers, timeout=10
                )
                assert answer.status_code == 200, answer.text
                costs.append(float(answer.headers["x-tollway-cost-usd"]))
            switch.up()
            deadline = time.monotonic() + 10
            while True:
                time.sleep(0.2)
                answer = httpx.get(url + "/admin/budgets", headers=headers)
                if answer.status_code != 200:  # a pooled connection cut by the outage
                    continue
                (row,) = answer.json()["data"]
                if row["spent_usd"] > before or time.monotonic() > deadline:
                    break
            assert row["spent_usd"] == pytest.approx(before + sum(costs), abs=1e-5)
            assert row["reserved_usd"] == 0
    finally:
        switch.close()


def test_spend_not_written_because_redis_is_down_names_redis_not_the_store(
    log_dir: Path, simulator_url: str
) -> None:
    password = "redis-secret-pw-4242"
    switch = RedisSwitch(redis_url())
    switch.up()
    guarded = switch.url.replace("redis://", f"redis://default:{password}@")
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_REDIS_URL": guarded}
    config = shared_config(
        simulator_url, guarded, unique_prefix("flush"), spend_flush_interval="300ms"
    )
    body = {"model": "pricey", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5}
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    said = "budget spend not written: reading it from Redis failed: LimiterUnavailable: "
    try:
        with running_gateway(log_dir, config, env) as (url, process):
            for attempt in range(5):  # a flush between the request and the cut finds nothing
                if attempt:
                    switch.up()
                answer = httpx.post(url + "/v1/chat/completions", json=body, headers=headers)
                assert answer.status_code == 200, answer.text
                switch.down()  # settled: its spend is to be written, and Redis is gone
                deadline = time.monotonic() + 2
                while said not in process.output() and time.monotonic() < deadline:
                    time.sleep(0.05)
                if said in process.output():
                    break
            process.stop()  # the write at shutdown fails the same way
            output = process.output()
    finally:
        switch.close()
    assert said in output, output[-3000:]
    assert "budget spend not written at shutdown: reading it from Redis failed" in output
    assert "the store failed" not in output and "to the store failed" not in output
    assert f"redis://default:***@127.0.0.1:{urlsplit(switch.url).port}" in output
    assert password not in output


async def test_a_request_outliving_its_hold_keeps_its_reservation_and_slot(
    log_dir: Path, simulator_url: str
) -> None:
    # A hold expires so that a replica that died mid-request cannot keep a reservation or a
    # concurrency slot forever; one whose request was still running lost them all the same
    # (a request longer than limits.hold: fallbacks, retries, a long total timeout), and the
    # other replica then admitted past the budget (0.808 spent of 0.6) and past
    # max_concurrent (two requests in flight under a cap of one).
    redis = redis_url()
    config = shared_config(
        simulator_url, redis, unique_prefix("hold"), hold="2s",
        models={"capped": {"max_concurrent": 1}},
        budgets=[{"scope": "org", "id": "*", "period": "total", "limit_usd": 0.6}],
    )  # fmt: skip
    (pricey,) = [group for group in config["models"] if group["name"] == "pricey"]
    cheap = {**pricey["deployments"][0], "price": {"input": 0.01, "output": 0.01}}
    config["models"].append({"name": "capped", "deployments": [cheap]})
    config["upstream"] = {"forward_headers": ["x-sim-*"]}  # the simulator's pace
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_REDIS_URL": redis}
    with running_gateways(log_dir, [(config, env)] * 2) as gateways:
        clients = [
            openai.AsyncOpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
            for url, _ in gateways
        ]

        async def one(client: openai.AsyncOpenAI, model: str, after: float) -> str:
            await asyncio.sleep(after)
            try:
                stream = await client.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": "take your time"}],
                    # "pricey": a worst case of about $0.41, one fits the budget, not two.
                    max_tokens=100,
                    stream=True,
                    # About 5 s: well past the 2 s hold.
                    extra_headers={"x-sim-tpot-ms": "50", "x-sim-output-tokens": "100"},
                )
                async for _ in stream:
                    pass
            except openai.RateLimitError as exc:
                return str(exc.code)
            return "served"

        # The later two ask the other replica once the first two's holds would have expired.
        outcomes = await asyncio.gather(
            one(clients[0], "pricey", 0),
            one(clients[0], "capped", 0),
            one(clients[1], "pricey", 3.5),
            one(clients[1], "capped", 3.5),
        )
        for client in clients:
            await client.close()
        row = budget_row(gateways[0][0])
    assert outcomes == ["served", "served", "budget_exceeded", "rate_limit_exceeded"]
    assert row["spent_usd"] <= 0.6
    assert row["reserved_usd"] == 0
