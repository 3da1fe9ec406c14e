"""The alert value every source raises and every webhook format renders.

An alert names what it is about (``kind``, ``scope``, ``scope_id``), carries its numbers in
``values`` and a sentence for people in ``message``. ``dedup_key`` says which alerts are
"the same" for de-duplication: kind, scope, id and the threshold or window, so a budget's
50% and 80% crossings are two alerts while a spend-rate condition that still holds ten
seconds later is the one already sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tollway.config.schema import AlertKind
from tollway.limits.events import BudgetEvent

Severity = Literal["info", "warning", "critical"]
Status = Literal["firing", "resolved"]

_PERIOD_WORDS = {"day": "daily", "week": "weekly", "month": "monthly", "total": "total"}


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert, as raised by a source."""

    kind: AlertKind
    severity: Severity
    scope: str
    """``key``, ``user``, ``team``, ``org`` or ``deployment``."""
    scope_id: str
    message: str
    dedup_key: str
    time: float
    """Wall-clock seconds since the epoch when it was raised."""
    values: dict[str, float | int | str] = field(default_factory=dict)
    status: Status = "firing"


def money(usd: float) -> str:
    """Dollars for people: cents, or more digits for amounts under a dollar."""
    if usd >= 1 or usd == 0:
        return f"${usd:,.2f}"
    digits = f"{usd:.6f}" if usd < 0.0001 else f"{usd:.4f}"
    whole, _, cents = digits.partition(".")
    return f"${whole}.{cents.rstrip('0').ljust(2, '0')}"


def seconds_text(seconds: float) -> str:
    """A duration as people write it: ``5m``, ``1h``, ``90s``, ``1.5s``."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def budget_alert(event: BudgetEvent, now: float) -> Alert:
    """The alert for a budget threshold crossing (limits/events.py)."""
    period, _, start = event.period.partition(":")
    percent = round(event.threshold * 100)
    since = f" (period from {start})" if start else ""
    changed = event.previous_limit_usd is not None
    message = (
        f"{event.scope} {event.scope_id} {'is past' if changed else 'crossed'} {percent}% of "
        f"its {_PERIOD_WORDS.get(period, period)} budget{since}: "
        f"{money(event.spent_usd)} of {money(event.limit_usd)}"
    )
    values: dict[str, float | int | str] = {
        "threshold": event.threshold,
        "spent_usd": round(event.spent_usd, 6),
        "limit_usd": event.limit_usd,
        "period": event.period,
    }
    if event.previous_limit_usd is not None:
        message += f", its limit changed from {money(event.previous_limit_usd)}"
        values["limit_changed"] = True
        values["previous_limit_usd"] = event.previous_limit_usd
    severity: Severity = (
        "critical" if event.threshold >= 1 else "warning" if event.threshold >= 0.8 else "info"
    )
    return Alert(
        kind="budget",
        severity=severity,
        scope=event.scope,
        scope_id=event.scope_id,
        message=message,
        dedup_key=f"budget:{event.scope}:{event.scope_id}:{event.period}:{event.threshold:g}",
        time=now,
        values=values,
    )
