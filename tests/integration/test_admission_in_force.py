"""Requests pass the admission stage only while a rate limit or budget is in force.

With nothing to enforce the admission stage's five hooks would find nothing to do on every
request (about 7,000 instructions a request, docs/performance.md), so the gateway runs its
requests through a pipeline without it; a budget set through the admin API applies from the
next request, and once it is removed requests go without admission again. The gateway runs
in this process (``create_app`` on a real port) so the pipeline a request gets can be seen;
the client is the real ``openai`` SDK, the upstream the simulator process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import gateway_config
from tests.integration.in_process import gateway_in_process
from tests.support import CLIENT_KEY
from tollway.gateway import Gateway
from tollway.limits.stage import Admission

PRICE = {"input": 2.5, "output": 10.0}


@pytest.fixture
async def served(tmp_path: Path, simulator_url: str) -> AsyncIterator[tuple[str, Gateway]]:
    config = gateway_config(simulator_url)
    for group in config["models"]:
        for deployment in group["deployments"]:
            deployment["price"] = PRICE
    config["store"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}"}
    config["server"] = {"reload_interval": None}
    async with gateway_in_process(config) as served:
        yield served


def admitted(gateway: Gateway) -> bool:
    """Whether the pipeline requests get now has the admission stage."""
    return any(isinstance(stage, Admission) for stage in gateway.pipeline._stages)


async def test_admission_runs_only_while_a_limit_or_budget_is_in_force(
    served: tuple[str, Gateway],
) -> None:
    url, gateway = served
    auth = {"Authorization": f"Bearer {CLIENT_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=auth) as admin:
        created = await admin.post("/admin/keys", json={"name": "app"})
        assert created.status_code == 201, created.text
        key_id, key = created.json()["id"], created.json()["key"]
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0)

        async def budget_header() -> str | None:
            raw = await client.chat.completions.with_raw_response.create(
                model="test-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=5
            )
            return raw.headers.get("x-tollway-budget-remaining-usd")

        assert not admitted(gateway)
        assert await budget_header() is None

        budget = {"scope": "key", "scope_id": key_id, "period": "day", "limit_usd": 1.0}
        assert (await admin.put("/admin/budgets", json=budget)).status_code == 200
        assert admitted(gateway)
        left = await budget_header()  # the very next request is admitted and settled
        assert left is not None and 0 < float(left) < 1.0
        spent = (await admin.get(f"/admin/budgets?scope=key&scope_id={key_id}")).json()
        assert spent["data"][0]["spent_usd"] == pytest.approx(1.0 - float(left), abs=1e-6)

        removed = await admin.delete(f"/admin/budgets/key/{key_id}/day")
        assert removed.status_code in (200, 204), removed.text
        assert not admitted(gateway)
        assert await budget_header() is None
