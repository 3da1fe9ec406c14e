"""What a rebuilt limit book changes for budgets, and what follows from it.

A reload or a reconcile rebuilds the ``LimitBook``; ``LimitService`` then asks here which
budgets were added and which had their limit changed (``changes``), the threshold events a
changed limit raises (``limit_events``), and each budget's share spent under the limit in
force, for the utilisation gauge (``set_shares``). The service keeps the state (the book,
the thresholds alerted this period) and reads the spend; these take what it read.

The gauge was set at settlements only, so a limit a reload lowered showed its old share
until the next request (and a budget put back, none). An added budget's accounts are
seeded (their spend is in the store when the process did not hold them, e.g. removed
before a restart); admission meanwhile charges the new account from zero, and
``MemoryLimiter.seed`` adds the store's spend to it (Redis seeds an account it does not
hold from the store itself).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tollway.limits.backend import MICRO, AccountState, Limiter, LimiterUnavailable
from tollway.limits.book import LimitBook
from tollway.limits.budget import Budget
from tollway.limits.events import BudgetEvent

Changes = tuple[list[tuple[Budget, Budget]], list[Budget]]
"""The budgets whose limit changed (before, after), and those added."""


def changes(before: LimitBook, after: LimitBook) -> Changes:
    """The budgets of ``after`` whose limit differs from ``before``'s (and is a limit), and
    those ``before`` did not have."""
    changed: list[tuple[Budget, Budget]] = []
    added: list[Budget] = []
    old = {(b.scope, b.scope_id, b.period): b for b in before.every_budget()}
    for budget in after.every_budget():
        previous = old.get((budget.scope, budget.scope_id, budget.period))
        if previous is None:
            added.append(budget)
        elif previous.limit_micros != budget.limit_micros and budget.limit_micros > 0:
            changed.append((previous, budget))
    return changed, added


async def limit_events(
    limiter: Limiter,
    changed: Sequence[tuple[Budget, Budget]],
    states: Sequence[AccountState],
    alerted: dict[str, set[float]],
    thresholds: Sequence[float],
) -> list[BudgetEvent]:
    """Events for budgets whose limit changed from the first budget to the second of each
    pair (``states``: their accounts now): the thresholds the spend of this period has
    passed under the new limit and had not under the old one, each once (not those in
    ``alerted``, which this process already raised for the period, and which gets them;
    across replicas sharing Redis, one replica sends them)."""
    events: list[BudgetEvent] = []
    for (previous, budget), state in zip(changed, states, strict=True):
        spent = state.spent_micros
        alerted_now = alerted.setdefault(state.account, set())
        for threshold in thresholds:
            passed_before = previous.limit_micros > 0 and spent >= threshold * previous.limit_micros
            if threshold in alerted_now or passed_before or spent < threshold * budget.limit_micros:
                continue
            notice = f"{state.account}:{threshold:g}:{budget.limit_micros}"
            try:
                first = await limiter.first_notice(notice, 86_400)
            except LimiterUnavailable:
                first = True  # twice across replicas rather than never
            alerted_now.add(threshold)
            if first:
                events.append(
                    BudgetEvent(
                        scope=budget.scope,
                        scope_id=budget.scope_id,
                        period=state.account[len(budget.scope) + len(budget.scope_id) + 2 :],
                        limit_usd=budget.limit_usd,
                        spent_usd=spent / MICRO,
                        threshold=threshold,
                        previous_limit_usd=previous.limit_usd,
                    )
                )
    return events


def set_shares(
    budgets: Sequence[Budget],
    states: Sequence[AccountState],
    book: LimitBook,
    utilisation: Callable[[str, str, str, float], None],
) -> None:
    """Tell ``utilisation`` each budget's share spent (``states``: their accounts), by the
    limit ``book`` puts in force: a later change may have come while the spend was read
    (its own judgement may even have finished first), and a share under a limit replaced
    since would overwrite the right one."""
    current = {(b.scope, b.scope_id, b.period): b for b in book.every_budget()}
    for budget, state in zip(budgets, states, strict=True):
        now = current.get((budget.scope, budget.scope_id, budget.period))
        if now is None or now.limit_micros <= 0:
            continue  # removed since: its series left /metrics with it
        ratio = state.spent_micros / now.limit_micros
        utilisation(budget.scope, budget.scope_id, budget.period, ratio)
