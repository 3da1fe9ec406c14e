"""A budget or rate limit set while a reconcile reads the store is not dropped by it.

``LimitService.load`` runs at every reconcile and after each change through the admin API;
a reconcile that read the budgets before a change and landed after the change's own load
rebuilt the book without it, so the new budget (a key's, a team's) did not apply until the
next reconcile. The reconcile is held between the database's answer and its use
(``held.py``) on a real store.
"""

from __future__ import annotations

import asyncio

from tests.integration.held import held_after
from tollway.config.schema import LimitsConfig
from tollway.limits.memory import MemoryLimiter
from tollway.limits.service import LimitService
from tollway.store import Store

ALL_BUDGETS = r"FROM budgets"


async def test_a_budget_set_while_a_reconcile_reads_is_not_dropped_by_it(store: Store) -> None:
    config = LimitsConfig()
    limits = LimitService(config, MemoryLimiter(), store)
    await limits.load()
    user = await store.users.create(kind="service", name="budgeted")  # a budget needs its user
    with held_after(ALL_BUDGETS) as hold:
        reconcile = asyncio.create_task(limits.load())
        await hold.wait()  # the reconcile has read no budgets
        await store.limits.put_budget("user", user.id, "day", 1_000_000, policy="reject")
        await limits.load()  # what the admin API does after the change
        hold.release()
        await reconcile
    assert [(b.scope, b.scope_id) for b in limits.book.every_budget()] == [("user", user.id)]
    await limits.close()
