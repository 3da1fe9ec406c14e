"""Spend-rate anomalies: a key (or user, or team) suddenly spending far above its own habit.

The case this is for is the job scheduled every minute by mistake: nothing is over a
budget yet, but a key that spent $0.30 a minute for the last hour now spends $6 a minute.

Per request (``record``) the settled cost is added to the current bucket of each configured
scope (window.py: O(1), a dict lookup and two array writes). In the background
(``evaluate``) each scope's spend over the last ``window`` is compared with its rate over
the ``baseline`` before the window:

- with a baseline (some spend in it): alert when the window's rate (USD per minute) is more
  than ``factor`` times the baseline's AND the window's spend is at least ``min_usd``;
- without one (a new scope, or one idle for longer than the baseline): alert when the
  window's spend passes ``max_usd_per_window``, if set.

The baseline's rate is its spend over the time the scope was actually seen in it (from the
scope's first bucket when that is younger than the baseline), so a key that started a
steady job ten minutes ago is not compared with an hour of zeros. Scopes with no spend for
longer than window + baseline are dropped, and at most ``MAX_SCOPES`` are tracked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

from tollway.alerts.alert import Alert, money, seconds_text
from tollway.alerts.window import WINDOW_BUCKETS, Clock, Ring
from tollway.auth.principal import Principal
from tollway.config.schema import SpendRateConfig

MAX_SCOPES = 100_000
"""Scopes tracked at once per scope kind; spend of further new scopes is not tracked."""


class SpendRate:
    """Per-scope spend buckets and the anomaly rule over them."""

    def __init__(self, config: SpendRateConfig, wall: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = Clock(config.window)
        self._wall = wall
        self._baseline_buckets = max(1, round(config.baseline / self.clock.width))
        self._size = WINDOW_BUCKETS + self._baseline_buckets + 1
        self._scopes: dict[str, dict[str, Ring]] = {scope: {} for scope in config.scopes}
        self._getters: tuple[tuple[dict[str, Ring], Callable[[Principal], str | None]], ...] = (
            tuple((self._scopes[scope], _ID_OF[scope]) for scope in config.scopes)
        )

    def record(self, principal: Principal, cost_usd: float, now: float) -> None:
        """Add a settled request's cost to its scopes' current bucket (the request path)."""
        number = self.clock.bucket(now)
        for rings, id_of in self._getters:
            scope_id = id_of(principal)
            if scope_id is None:
                continue
            ring = rings.get(scope_id)
            if ring is None:
                if len(rings) >= MAX_SCOPES:
                    continue
                ring = rings[scope_id] = Ring(self._size, 1, number)
            ring.add(number, 0, cost_usd)

    def tracked(self) -> int:
        """How many scopes are tracked now."""
        return sum(len(rings) for rings in self._scopes.values())

    def evaluate(self, now: float) -> list[Alert]:
        """Alerts for every scope over the rule at ``now``; drops idle scopes."""
        alerts: list[Alert] = []
        current = self.clock.bucket(now)
        forget_before = current - self._size + 1
        for scope, rings in self._scopes.items():
            for scope_id, ring in list(rings.items()):
                if ring.last < forget_before:
                    del rings[scope_id]
                    continue
                alert = self.judge(scope, scope_id, ring, now)
                if alert is not None:
                    alerts.append(alert)
        return alerts

    def judge(self, scope: str, scope_id: str, ring: Ring, now: float) -> Alert | None:
        """The alert for one scope's ring at ``now``, if its spend is anomalous."""
        config = self.config
        start = self.clock.window_start(now)
        spent = ring.total(0, start, start + WINDOW_BUCKETS - 1)
        ceiling = config.max_usd_per_window
        if spent <= 0 or (spent < config.min_usd and (ceiling is None or spent <= ceiling)):
            return None  # most scopes, most of the time: no need to read the baseline
        rate = spent / self.clock.covered(now) * 60
        base_start = max(ring.first, start - self._baseline_buckets)
        base_spent = ring.total(0, base_start, start - 1) if base_start < start else 0.0
        values: dict[str, float | int | str] = {
            "window_s": config.window,
            "baseline_s": config.baseline,
            "window_usd": round(spent, 6),
            "window_usd_per_min": round(rate, 6),
        }
        where = f"{scope} {scope_id}"
        window = seconds_text(config.window)
        if base_spent <= 0:
            if ceiling is None or spent <= ceiling:
                return None
            values["max_usd_per_window"] = ceiling
            message = (
                f"{where} spent {money(spent)} in the last {window} with no spend in the "
                f"{seconds_text(config.baseline)} before (more than {money(ceiling)} a window)"
            )
            return self._alert(scope, scope_id, message, values)
        base_rate = base_spent / ((start - base_start) * self.clock.width) * 60
        if spent < config.min_usd or rate <= config.factor * base_rate:
            return None
        values |= {
            "baseline_usd_per_min": round(base_rate, 6),
            "ratio": round(rate / base_rate, 2),
            "factor": config.factor,
            "min_usd": config.min_usd,
        }
        message = (
            f"{where} is spending {money(rate)}/min over the last {window}, "
            f"{rate / base_rate:.1f}x its baseline of {money(base_rate)}/min over the "
            f"{seconds_text(config.baseline)} before ({money(spent)} in the window)"
        )
        return self._alert(scope, scope_id, message, values)

    def _alert(
        self, scope: str, scope_id: str, message: str, values: dict[str, float | int | str]
    ) -> Alert:
        return Alert(
            kind="spend_rate",
            severity="warning",
            scope=scope,
            scope_id=scope_id,
            message=message,
            dedup_key=f"spend_rate:{scope}:{scope_id}:{self.config.window:g}s",
            time=self._wall(),
            values=values,
        )


def _key(principal: Principal) -> str | None:
    # A rotated key is the same logical key: its spend continues its chain's buckets (the
    # chain's first key id, as key-scoped budgets are kept), so rotating neither resets its
    # baseline nor starts a second alert.
    return principal.lineage or principal.id


def _user(principal: Principal) -> str | None:
    return principal.user


def _team(principal: Principal) -> str | None:
    return principal.team


_ID_OF: Mapping[str, Callable[[Principal], str | None]] = MappingProxyType(
    {"key": _key, "user": _user, "team": _team}
)
