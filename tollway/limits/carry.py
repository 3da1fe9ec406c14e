"""Spend carried over into a budget's account when the budget's period changes.

Accounts are per period (``team:t1:day:2026-11-15``), so a team budget made monthly charged
a new, empty ``team:t1:month:2026-11-01``: what the team had spent this month under its
daily budget was not in it, and the month's limit came on top. The spend a scope's accounts
of *other* periods recorded since the new period began is the spend this account lacks.

Only periods no budget of the scope is in force for are read: a request charges every
budget of its scope, so an account still charged alongside the new one would hold the new
one's own spend too. Those accounts take no new requests, only the settlements of requests
admitted before the change; ``LimitService`` reads them again until none holds a reservation.
Accounts of one period do not overlap; two periods' may (a team that had a daily and a
weekly budget), so the larger of the periods' sums is carried, never their total.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from tollway.limits.backend import CARRIED, Limiter
from tollway.limits.budget import Budget
from tollway.limits.periods import Period, period_key, period_start
from tollway.store import SpendTally, Store

_PERIODS: tuple[Period, ...] = ("day", "week", "month", "total")


@dataclass(frozen=True, slots=True)
class Carried:
    """What a budget's account is to carry over, and whether it may still grow."""

    account: str
    micros: int
    reserved_micros: int
    """Still reserved in the accounts read: requests admitted before the change, which
    settle there and raise what is to be carried."""


def _own(tally: SpendTally) -> int:
    """What an account recorded itself: not what it carried over from others."""
    return tally.total - tally.epochs.get(CARRIED, 0)


async def carried_spend(
    budget: Budget,
    account: str,
    in_force: Collection[Period],
    now: dt.datetime,
    zone: ZoneInfo,
    store: Store,
    limiter: Limiter,
) -> Carried | None:
    """What ``budget``'s ``account`` is to carry over from its scope's accounts of the
    periods not in ``in_force`` since its period began; ``None``: none to read from."""
    periods = [p for p in _PERIODS if p != budget.period and p not in in_force]
    if not periods:
        return None
    start = period_start(budget.period, now, zone).date()
    today = now.astimezone(zone).date()
    prefix = f"{budget.scope}:{budget.scope_id}:"
    best = reserved = 0
    for period in periods:
        if period == "total":
            if budget.period != "total":
                continue  # spend of all time, none of it placed in a period
            stored = await store.limits.tallies([prefix + "total"])
        else:
            stored = {
                name: tally
                for name, tally in (await store.limits.tallies_under(f"{prefix}{period}:")).items()
                if _within(name[len(prefix) + len(period) + 1 :], start, today)
            }
        # The current one may not be written yet; read a past one from the store alone (a
        # read of one the backend does not hold would make it an empty one in Redis).
        current = prefix + period_key(period, now, zone)
        within = period == "total" or _within(
            current[len(prefix) + len(period) + 1 :], start, today
        )
        if within and (current in stored or limiter.known_spent(current) is not None):
            (state,) = await limiter.accounts([current])
            live = state.tally or SpendTally(state.spent_micros)
            stored[current] = stored.get(current, SpendTally()).merge(live)
            reserved += state.reserved_micros
        best = max(best, sum(_own(tally) for tally in stored.values()))
    return Carried(account, best, reserved)


def _within(started: str, start: dt.date, today: dt.date) -> bool:
    """Whether an account whose period began on ``started`` (ISO) began in ``start..today``."""
    try:
        return start <= dt.date.fromisoformat(started) <= today
    except ValueError:
        return False
