"""A budget a reload puts back after a restart goes on from its period's spend.

A gateway started without a budget holds no account of it; when a reload adds the budget,
its spend is read from the store in the background (a reload cannot wait), and admission
meanwhile charges a new account. The store's spend must be added to that account, once, and
before its spend is written back: it started from zero before. On a real store.
"""

from __future__ import annotations

from tollway.config.schema import LimitsConfig
from tollway.limits.backend import BudgetClaim, Claim, Ticket
from tollway.limits.memory import MemoryLimiter
from tollway.limits.service import LimitService
from tollway.store import Store

BUDGETED = LimitsConfig.model_validate(
    {"budgets": [{"scope": "team", "id": "t", "period": "day", "limit_usd": 1}]}
)


def charge(limits: LimitService, micros: int) -> Ticket:
    """Admit and settle one request of team ``t`` costing ``micros``."""
    [budget] = limits.book.every_budget()
    assert limits.immediate is not None
    claim = Claim(
        "r", budgets=(BudgetClaim(limits.account(budget), budget.limit_micros),),
        reserve_micros=micros,
    )  # fmt: skip
    ticket = limits.immediate.admit_now(claim)
    assert isinstance(ticket, Ticket), ticket
    limits.settle_now(ticket, 0, micros, [budget])
    return ticket


async def test_a_budget_a_reload_adds_after_a_restart_goes_on_from_its_spend(
    store: Store,
) -> None:
    before = LimitService(BUDGETED, MemoryLimiter(), store)
    await before.load()
    charge(before, 300_000)
    await before.close()  # writes the spend
    [budget] = before.book.every_budget()
    account = before.account(budget)

    after = LimitService(LimitsConfig(), MemoryLimiter(), store)  # restarted without it
    await after.load()
    after.reconfigure(BUDGETED)  # a reload puts it back
    # Admitted before the store's spend is read: charged to an account that lacks it.
    early = charge(after, 100)
    assert early.budget_remaining_micros is not None
    await after.flush()
    assert after.limiter.known_spent(account) == 300_100
    assert await store.limits.spend([account]) == {account: 300_100}
    late = charge(after, 100)
    assert late.budget_remaining_micros == 1_000_000 - 300_100 - 100
    await after.close()
