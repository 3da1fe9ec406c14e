"""Budgets and limits across config reloads: what the file says is in force at once, and
what was spent in the period stays spent whatever the file said in between.

The gateway runs in this process (``create_app`` on a real port) from a config file the test
rewrites and reloads through ``POST /admin/reload``, as an operator would; the client is the
real ``openai`` SDK, the upstream the simulator process. ``LimitService.flush`` is what the
gateway's spend loop runs every ``limits.spend_flush_interval``: called here so the test does
not wait for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.conftest import gateway_config
from tests.integration.in_process import gateway_in_process
from tests.support import CLIENT_KEY, redis_url, unique_prefix
from tollway.gateway import Gateway

PRICE = {"input": 1000.0, "output": 4000.0}  # USD per 1M tokens: cents per request
ADMIN = {"Authorization": f"Bearer {CLIENT_KEY}"}
HI = [{"role": "user", "content": "hi"}]


@dataclass
class Served:
    """A gateway served from a config file the test may rewrite."""

    url: str
    gateway: Gateway
    path: Path
    config: dict[str, Any]
    admin: httpx.AsyncClient

    async def reload(self, **limits: Any) -> None:
        """Write the file with ``limits`` over the running ones, and reload it."""
        self.config["limits"] = {**self.config["limits"], **limits}
        self.path.write_text(yaml.safe_dump(self.config))
        answer = await self.admin.post("/admin/reload")
        assert answer.status_code == 200, answer.text

    async def budget(self, scope: str, scope_id: str) -> dict[str, Any]:
        """The one budget of ``scope_id`` as ``GET /admin/budgets`` shows it."""
        listed = await self.admin.get(f"/admin/budgets?scope={scope}&scope_id={scope_id}")
        assert listed.status_code == 200, listed.text
        (row,) = listed.json()["data"]
        return dict(row)


@pytest.fixture(params=["memory", "redis"])
async def served(
    request: pytest.FixtureRequest, tmp_path: Path, simulator_url: str
) -> AsyncIterator[Served]:
    config = gateway_config(simulator_url)
    config["models"] = [group for group in config["models"] if group["name"] == "test-chat"]
    for group in config["models"]:
        for deployment in group["deployments"]:
            deployment["price"] = PRICE
    config["store"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}"}
    config["server"] = {"reload_interval": None}
    config["limits"] = {"backend": "memory"}
    if request.param == "redis":
        config["limits"] = {
            "backend": "redis",
            "redis_url": redis_url(),  # no password: nothing secret in the file
            "redis_prefix": unique_prefix("reload").rstrip(":"),
        }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    async with (
        gateway_in_process(config, config_path=path) as (url, gateway),
        httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=15) as admin,
    ):
        yield Served(url, gateway, path, config, admin)


async def spend_once(served: Served, key: str) -> float:
    """One small chat completion; what its budget has left after it, by its header."""
    client = openai.AsyncOpenAI(base_url=served.url + "/v1", api_key=key, max_retries=0)
    raw = await client.chat.completions.with_raw_response.create(
        model="test-chat", messages=HI, max_tokens=5
    )
    return float(raw.headers["x-tollway-budget-remaining-usd"])


async def new_key(served: Served) -> tuple[str, str]:
    created = await served.admin.post("/admin/keys", json={"name": "app"})
    assert created.status_code == 201, created.text
    return created.json()["id"], created.json()["key"]


async def test_a_budget_removed_and_added_back_goes_on_from_its_spend(served: Served) -> None:
    key_id, key = await new_key(served)
    budget = {"scope": "key", "id": key_id, "period": "day", "limit_usd": 1.0}
    await served.reload(budgets=[budget])
    await spend_once(served, key)
    spent = (await served.budget("key", key_id))["spent_usd"]
    assert spent > 0

    await served.reload(budgets=[])  # an operator's edit takes it away for a while
    await served.gateway.limits.flush()  # the spend loop's round: written, then forgotten
    await served.reload(budgets=[budget])

    row = await served.budget("key", key_id)
    assert row["spent_usd"] == pytest.approx(spent, abs=1e-6)
    left = await spend_once(served, key)
    assert left < 1.0 - spent


def utilisation(metrics: str, scope_id: str) -> float | None:
    """``tollway_budget_utilisation_ratio`` of the budget of ``scope_id``, if shown."""
    for line in metrics.splitlines():
        if line.startswith("tollway_budget_utilisation_ratio{") and scope_id in line:
            return float(line.rsplit(" ", 1)[1])
    return None


async def shown_utilisation(served: Served, scope_id: str, expected: float) -> float | None:
    """The budget's share on ``/metrics`` once it is ``expected`` (set in the background
    after a reload: its spend is read first), or what it shows after two seconds."""
    for _ in range(40):
        shown = utilisation((await served.admin.get("/metrics")).text, scope_id)
        if shown is not None and shown == pytest.approx(expected, abs=1e-6):
            break
        await asyncio.sleep(0.05)
    return shown


async def test_metrics_show_a_budgets_share_under_its_reloaded_limit(served: Served) -> None:
    # The gauge was set at settlements only: a limit lowered (or a budget put back) by a
    # reload showed the old share until the team's next request, while /admin showed the new.
    key_id, key = await new_key(served)
    budget = {"scope": "key", "id": key_id, "period": "day", "limit_usd": 1.0}
    await served.reload(budgets=[budget])
    await spend_once(served, key)
    spent = (await served.budget("key", key_id))["spent_usd"]
    metrics = (await served.admin.get("/metrics")).text
    assert utilisation(metrics, key_id) == pytest.approx(spent, abs=1e-6)

    await served.reload(budgets=[{**budget, "limit_usd": 0.1}])
    row = await served.budget("key", key_id)
    assert row["used"] == pytest.approx(spent / 0.1, abs=1e-3)
    shown = await shown_utilisation(served, key_id, spent / 0.1)
    assert shown == pytest.approx(spent / 0.1, abs=1e-6)

    await served.reload(budgets=[])
    assert utilisation((await served.admin.get("/metrics")).text, key_id) is None
    await served.reload(budgets=[budget])
    assert await shown_utilisation(served, key_id, spent) == pytest.approx(spent, abs=1e-6)


async def carried_over(served: Served, key_id: str, spent: float) -> float:
    """The budget's spend once it shows ``spent`` (carried over in the background after a
    reload: the store and the backend are read first), or what it shows after two seconds."""
    shown = 0.0
    for _ in range(40):
        shown = (await served.budget("key", key_id))["spent_usd"]
        if shown == pytest.approx(spent, abs=1e-6):
            break
        await asyncio.sleep(0.05)
    return shown


async def test_a_budget_whose_period_changes_starts_from_the_spend_already_made_in_it(
    served: Served,
) -> None:
    # A daily budget made monthly started the month's account from zero: a key that had
    # spent $900 of this month under a $1,000 daily budget got $1,000 more on top.
    key_id, key = await new_key(served)
    daily = {"scope": "key", "id": key_id, "period": "day", "limit_usd": 1.0}
    await served.reload(budgets=[daily])
    await spend_once(served, key)
    await served.gateway.limits.flush()  # part of it in the store, the rest only in the backend
    await spend_once(served, key)
    spent = (await served.budget("key", key_id))["spent_usd"]
    one_request = spent / 2
    assert spent > 0

    # Room for half a request more this month: the next one's worst case does not fit.
    monthly = {**daily, "period": "month", "limit_usd": round(spent + one_request / 2, 6)}
    await served.reload(budgets=[monthly])

    assert await carried_over(served, key_id, spent) == pytest.approx(spent, abs=1e-6)
    client = openai.AsyncOpenAI(base_url=served.url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(model="test-chat", messages=HI, max_tokens=5)
    assert refused.value.code == "budget_exceeded"
    # Written and read back as one part of its own: a later reload does not carry it twice.
    await served.gateway.limits.flush()
    await served.reload(budgets=[daily])
    await served.reload(budgets=[monthly])
    await asyncio.sleep(0.2)
    assert (await served.budget("key", key_id))["spent_usd"] == pytest.approx(spent, abs=1e-6)
