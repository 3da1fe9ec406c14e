"""Budget threshold events handed to alert listeners."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


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
