"""Currency budgets with reservations (in-memory ledger).

Admission reserves the worst case; settlement replaces the reservation with the actual
cost. Amounts are integer micro-dollars so concurrent arithmetic is exact and cheap (no
Decimal on the hot path). ``spent + reserved`` never exceeds the hard limit through
admission, so concurrent requests cannot overspend.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from tollway.limits.events import BudgetEvent, BudgetListener

MICRO = 1_000_000
Policy = Literal["reject", "shrink"]


def to_micros(usd: float) -> int:
    """Dollars to integer micro-dollars (rounded up: never under-reserve)."""
    return int(-(-usd * MICRO // 1))


@dataclass(slots=True)
class BudgetAccount:
    """One scope's budget in its current period."""

    scope: str
    scope_id: str
    period: str
    limit_micros: int
    thresholds: Sequence[float] = (0.5, 0.8, 1.0)
    spent_micros: int = 0
    reserved_micros: int = 0
    crossed: set[float] = field(default_factory=set)

    @property
    def remaining_micros(self) -> int:
        """What admission may still reserve."""
        return max(0, self.limit_micros - self.spent_micros - self.reserved_micros)

    def try_reserve(self, micros: int) -> bool:
        """Reserve ``micros`` if the budget still covers it."""
        if micros > self.remaining_micros:
            return False
        self.reserved_micros += micros
        return True

    def settle(self, reserved: int, actual: int) -> list[BudgetEvent]:
        """Replace a reservation with the actual cost; return newly crossed thresholds."""
        self.reserved_micros = max(0, self.reserved_micros - reserved)
        self.spent_micros += actual
        return self._crossings()

    def _crossings(self) -> list[BudgetEvent]:
        events: list[BudgetEvent] = []
        if self.limit_micros <= 0:
            return events
        ratio = self.spent_micros / self.limit_micros
        for threshold in self.thresholds:
            if ratio >= threshold and threshold not in self.crossed:
                self.crossed.add(threshold)
                events.append(
                    BudgetEvent(
                        scope=self.scope,
                        scope_id=self.scope_id,
                        period=self.period,
                        limit_usd=self.limit_micros / MICRO,
                        spent_usd=self.spent_micros / MICRO,
                        threshold=threshold,
                    )
                )
        return events


def affordable_output(
    remaining_micros: int, input_micros: int, output_micros_per_token: float
) -> int:
    """Output tokens the budget still pays for after the input (``shrink`` policy)."""
    if output_micros_per_token <= 0:
        return 1 << 30
    left = remaining_micros - input_micros
    return max(0, int(left // output_micros_per_token))


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
