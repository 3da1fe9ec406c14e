"""Budget threshold events handed to alert listeners, and the listener that logs them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("tollway.limits")


@dataclass(frozen=True, slots=True)
class BudgetEvent:
    """Spend in one scope and period crossed ``threshold`` (a fraction of the limit)."""

    scope: str
    scope_id: str
    period: str
    limit_usd: float
    spent_usd: float
    threshold: float
    previous_limit_usd: float | None = None
    """Set when the threshold was passed by a change of the limit (a reload, the admin API),
    not by spend: the limit before it."""


BudgetListener = Callable[[BudgetEvent], None]


def log_event(event: BudgetEvent) -> None:
    """Log ``event`` (every ``LimitService`` has this listener first)."""
    log.warning(
        "budget %s %s (%s) crossed %d%%: $%s of $%s spent",
        event.scope, event.scope_id, event.period, round(event.threshold * 100),
        _dollars(event.spent_usd), _dollars(event.limit_usd),
    )  # fmt: skip


def _dollars(usd: float) -> str:
    """Dollars to the micro-dollar budgets keep, without trailing zeros: a $0.0001 limit
    read "of $0.00" at two decimals, a $500 one reads "500"."""
    return f"{usd:.6f}".rstrip("0").rstrip(".")
