"""Budget spend on both backends: tallies merged by the larger of each part, old rows."""

from __future__ import annotations

import asyncio

from tests.integration.store.conftest import Database
from tests.integration.store.test_request_log import execute
from tollway.store import SpendTally, Store


async def test_tallies_merge_by_the_larger_of_each_part(store: Store) -> None:
    # Replicas write what each knows: a part one knew more of is never lowered by another,
    # and a part both knew is counted once.
    account = "team:t:month:2026-12-01"
    await store.limits.record_spend({account: SpendTally(100, {"e1": 50})})
    await store.limits.record_spend({account: SpendTally(0, {"e1": 30, "e2": 70})})
    assert await store.limits.tallies([account]) == {account: SpendTally(100, {"e1": 50, "e2": 70})}
    assert await store.limits.spend([account]) == {account: 220}
    await store.limits.record_spend({account: SpendTally(100, {"e1": 50})})  # again: no change
    assert await store.limits.spend([account]) == {account: 220}


async def test_writers_at_once_lose_no_part(store: Store) -> None:
    # Each writer knows one part of each account, one of them new to the store.
    accounts = ["key:a:total", "key:b:total"]
    await store.limits.record_spend({accounts[0]: SpendTally(5)})
    writes = [
        store.limits.record_spend({name: SpendTally(0, {f"e{i}": i}) for name in accounts})
        for i in range(1, 9)
    ]
    await asyncio.gather(*writes)
    parts = {f"e{i}": i for i in range(1, 9)}
    assert await store.limits.tallies(accounts) == {
        accounts[0]: SpendTally(5, parts),
        accounts[1]: SpendTally(0, parts),
    }
    assert await store.limits.spend(accounts) == {accounts[0]: 41, accounts[1]: 36}


async def test_a_row_from_before_tallies_is_spend_before_any_epoch(
    store: Store, database: Database
) -> None:
    for account in ("key:old:total", "key:older:total"):
        await execute(
            database,
            "INSERT INTO budget_spend (account, spent_micros, updated_at)"
            " VALUES (:account, 500, CURRENT_TIMESTAMP)",
            account=account,
        )
    assert await store.limits.tallies(["key:old:total"]) == {"key:old:total": SpendTally(500)}
    # Its total may include an epoch Redis still holds: merged as totals were, the larger of
    # the two, once (then by parts).
    await store.limits.record_spend(
        {"key:old:total": SpendTally(0, {"e": 600}), "key:older:total": SpendTally(0, {"e": 200})}
    )
    assert await store.limits.tallies(["key:old:total", "key:older:total"]) == {
        "key:old:total": SpendTally(0, {"e": 600}),
        "key:older:total": SpendTally(300, {"e": 200}),
    }
    assert await store.limits.spend(["key:old:total", "key:older:total"]) == {
        "key:old:total": 600,
        "key:older:total": 500,
    }
