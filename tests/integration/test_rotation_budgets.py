"""A rotated key keeps its budgets, its spend so far and its rate limits.

Through a real gateway and the simulated provider, with budgets and limits set through the
admin API: the new key of a rotation, and the old secret during its grace period, draw on
the one account of the key they replace, so rotating (which members may do to their own
keys) escapes no budget.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_budgets import admin, budget_config, new_key, set_budget, spend
from tests.support import running_gateway


@pytest.fixture(scope="module")
def gateway(log_dir: Path, simulator_url: str) -> Iterator[str]:
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    with running_gateway(log_dir, budget_config(simulator_url), env) as (url, _):
        yield url


def rotate(url: str, key_id: str, grace: str | None = None) -> tuple[str, str]:
    body = {"grace_period": grace} if grace else None
    rotated: dict[str, Any] = admin(url, "POST", f"/admin/keys/{key_id}/rotate", body, 201)
    return rotated["id"], rotated["key"]


def ask(client: openai.OpenAI) -> float:
    raw = client.chat.completions.with_raw_response.create(
        model="pricey", messages=[{"role": "user", "content": "loop again"}], max_tokens=40
    )
    return float(raw.headers["x-tollway-cost-usd"])


def client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


def test_a_rotated_key_keeps_its_budget_and_spend_and_shares_it_with_its_old_secret(
    gateway: str,
) -> None:
    first_id, first = new_key(gateway)
    set_budget(gateway, first_id, 1.00)
    costs = [ask(client(gateway, first)) for _ in range(3)]
    second_id, second = rotate(gateway, first_id, grace="1h")
    # The new key's row is the old one's: same budget, the spend so far carried over.
    row = spend(gateway, second_id)
    assert (row["scope_id"], row["limit_usd"]) == (first_id, 1.00)
    assert row["spent_usd"] == pytest.approx(sum(costs), abs=1e-5)
    # During the grace period the old and the new secret draw on one budget, not two.
    secrets = [client(gateway, first), client(gateway, second)]
    with pytest.raises(openai.RateLimitError) as caught:
        for turn in range(200):
            costs.append(ask(secrets[turn % 2]))
    assert caught.value.code == "budget_exceeded"
    row = spend(gateway, first_id)
    assert row["spent_usd"] <= 1.00
    assert row["spent_usd"] == pytest.approx(sum(costs), abs=1e-5)
    for secret in secrets:
        with pytest.raises(openai.RateLimitError) as refused:
            ask(secret)
        assert refused.value.code == "budget_exceeded"
    # A second rotation (no grace) joins the same chain: still refused, still one account.
    third_id, third = rotate(gateway, second_id)
    assert admin(gateway, "GET", f"/admin/keys/{third_id}")["lineage_id"] == first_id
    with pytest.raises(openai.RateLimitError) as refused:
        ask(client(gateway, third))
    assert refused.value.code == "budget_exceeded"
    assert spend(gateway, third_id)["spent_usd"] == pytest.approx(sum(costs), abs=1e-5)
    assert admin(gateway, "GET", f"/admin/keys/{second_id}")["lineage_id"] == first_id


def test_a_budget_set_on_the_new_key_covers_the_old_secret_in_its_grace_period(
    gateway: str,
) -> None:
    first_id, first = new_key(gateway)
    second_id, second = rotate(gateway, first_id, grace="1h")
    set_budget(gateway, second_id, 0.60)
    secrets = [client(gateway, first), client(gateway, second)]
    costs: list[float] = []
    with pytest.raises(openai.RateLimitError) as caught:
        for turn in range(200):
            costs.append(ask(secrets[turn % 2]))
    assert caught.value.code == "budget_exceeded"
    assert len(costs) >= 2
    row = spend(gateway, second_id)
    assert row["spent_usd"] <= 0.60
    assert row["spent_usd"] == pytest.approx(sum(costs), abs=1e-5)


def test_a_rotated_key_keeps_its_rate_limit_shared_with_its_old_secret(gateway: str) -> None:
    first_id, first = new_key(gateway)
    limit = {"scope": "key", "scope_id": first_id, "rpm": 2}
    admin(gateway, "PUT", "/admin/limits", limit)
    _, second = rotate(gateway, first_id, grace="1h")
    mine = admin(gateway, "GET", "/admin/limits")["data"]
    assert {"scope": "key", "scope_id": first_id, "rpm": 2} | {"source": "store"} in [
        {k: row[k] for k in ("scope", "scope_id", "rpm", "source")} for row in mine
    ]
    ask(client(gateway, first))
    ask(client(gateway, second))
    for secret in (first, second):
        with pytest.raises(openai.RateLimitError) as refused:
            ask(client(gateway, secret))
        assert refused.value.code == "rate_limit_exceeded"
