"""Currency budgets: their definitions, the period accounts they charge, and their events.

Amounts are integer micro-dollars so concurrent arithmetic is exact and cheap (no Decimal
on the hot path). Admission reserves a request's worst case; settlement replaces the
reservation with the actual cost; ``spent + reserved`` never passes the limit through
admission, so concurrent requests cannot overspend (limits/backend.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from tollway.limits.backend import MICRO, Settled
from tollway.limits.events import BudgetEvent, BudgetListener
from tollway.limits.periods import Period

Policy = Literal["reject", "shrink"]
Scope = Literal["key", "user", "team", "org"]
DEFAULT_THRESHOLDS = (0.5, 0.8, 1.0)


@dataclass(frozen=True, slots=True)
class Budget:
    """A hard spending limit of one key, user, team or the whole organisation per period.

    ``policy``: what admission does when the budget cannot cover a request's worst case:
    ``reject`` it (429 ``budget_exceeded``) or ``shrink`` its max output tokens to what the
    budget still pays for. ``soft_ratio`` with ``downgrade``: once that share is spent,
    requests for a model in ``downgrade`` go to the cheaper model it names instead.
    """

    scope: Scope
    scope_id: str
    period: Period
    limit_micros: int
    policy: Policy = "reject"
    soft_ratio: float | None = None
    downgrade: Mapping[str, str] = field(default_factory=dict)

    @property
    def limit_usd(self) -> float:
        """The limit in dollars."""
        return self.limit_micros / MICRO


def affordable_output(
    remaining_micros: int, input_micros: int, output_micros_per_token: float
) -> int:
    """Output tokens the budget still pays for after the input (``shrink`` policy)."""
    if output_micros_per_token <= 0:
        return 1 << 30
    left = remaining_micros - input_micros
    return max(0, int(left // output_micros_per_token))


def crossings(
    budget: Budget, settled: Settled, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> list[BudgetEvent]:
    """The thresholds this settlement crossed (each crosses once: spend only grows)."""
    limit = settled.limit_micros
    if limit <= 0:
        return []
    before, after = settled.spent_before / limit, settled.spent_after / limit
    return [
        BudgetEvent(
            scope=budget.scope,
            scope_id=budget.scope_id,
            period=settled.account[len(budget.scope) + len(budget.scope_id) + 2 :],
            limit_usd=limit / MICRO,
            spent_usd=settled.spent_after / MICRO,
            threshold=threshold,
        )
        for threshold in thresholds
        if before < threshold <= after
    ]


def notify(listeners: Sequence[BudgetListener], events: Sequence[BudgetEvent]) -> None:
    """Hand events to every listener, after the current request step when a loop runs."""
    if not events or not listeners:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        _deliver(listeners, events)
        return
    # Off the hot path: settlement returns before any listener runs.
    loop.call_soon(_deliver, listeners, events)


def _deliver(listeners: Sequence[BudgetListener], events: Sequence[BudgetEvent]) -> None:
    for event in events:
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # alerting must never break settlement
                continue
