"""Error and fallback storms per deployment, and their recovery.

Per request (``record``) every upstream attempt in ``ctx.tries`` adds to its deployment's
current bucket (window.py): one attempt; one error when the attempt failed in a way that is
the deployment's fault (a retryable error: 5xx, 429, timeout, connection, its own auth; not
a malformed request, which would fail anywhere); one fallback when the next attempt of the
same request went to another deployment. An attempt the model group's deadline cut short
counts for nothing, as it does for the deployment's health (routing/health.py).

In the background (``evaluate``), over the last ``window``, a deployment is in a storm when

- it had at least ``min_attempts`` attempts and at least ``error_ratio`` of them failed, or
- ``min_fallbacks`` is set and at least that many requests fell back away from it.

A storm raises an ``error_storm`` alert at every evaluation while it lasts (the manager's
de-duplication sends it once per ``dedup_window``). A deployment in a storm whose window
then holds attempts, fewer than ``error_ratio`` of them failed, and fewer than
``min_fallbacks`` fell back, has recovered: one ``resolved`` alert (the manager sends it
when ``resolved`` is on; either way it ends the storm's de-duplication). A deployment that
gets no attempts at all (its circuit open, no traffic) stays in its storm until attempts
show otherwise. Deployments not in a storm and
idle for a whole window are dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence

from tollway.alerts.alert import Alert, Status, seconds_text
from tollway.alerts.window import WINDOW_BUCKETS, Clock, Ring
from tollway.config.schema import ErrorStormConfig
from tollway.core.context import Attempt

ATTEMPTS, ERRORS, FALLBACKS = 0, 1, 2


class ErrorStorms:
    """Per-deployment attempt, error and fallback buckets, and the storm rule over them."""

    def __init__(self, config: ErrorStormConfig, wall: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = Clock(config.window)
        self._wall = wall
        self._rings: dict[str, Ring] = {}
        self._last_error: dict[str, str] = {}
        self._storms: set[str] = set()

    def record(self, tries: Sequence[Attempt], now: float) -> None:
        """Count a finished request's attempts (the request path)."""
        number = self.clock.bucket(now)
        rings = self._rings
        previous: str | None = None
        for attempt in tries:
            if attempt.cut_short:
                continue  # the deadline's doing, as the deployment's health counts it
            deployment = attempt.deployment.id
            ring = rings.get(deployment)
            if ring is None:
                ring = rings[deployment] = Ring(WINDOW_BUCKETS + 1, 3, number)
            ring.add(number, ATTEMPTS, 1)
            error = attempt.error
            if error is not None and error.retryable:
                ring.add(number, ERRORS, 1)
                status = getattr(error, "upstream_status", error.status)
                self._last_error[deployment] = f"{type(error).__name__} ({status})"
            if previous is not None and previous != deployment:
                rings[previous].add(number, FALLBACKS, 1)
            previous = deployment

    def keep(self, deployments: Collection[str]) -> None:
        """Forget the buckets, last error and storm of every deployment not in
        ``deployments`` (a reload removed it): a removed deployment gets no attempts, so a
        storm of its would never see it recover, and its state stayed for the life of the
        process (a deployment given that id again began in the old one's storm)."""
        for gone in [d for d in self._rings if d not in deployments]:
            del self._rings[gone]
        for gone in [d for d in self._last_error if d not in deployments]:
            del self._last_error[gone]
        self._storms &= set(deployments)

    def in_storm(self) -> frozenset[str]:
        """The deployments in a storm now."""
        return frozenset(self._storms)

    def evaluate(self, now: float) -> list[Alert]:
        """Storm alerts, and resolved ones for deployments that recovered."""
        alerts: list[Alert] = []
        start = self.clock.window_start(now)
        end = start + WINDOW_BUCKETS - 1
        for deployment, ring in list(self._rings.items()):
            attempts = ring.total(ATTEMPTS, start, end)
            errors = ring.total(ERRORS, start, end)
            fallbacks = ring.total(FALLBACKS, start, end)
            if self._storm(attempts, errors, fallbacks):
                self._storms.add(deployment)
                alerts.append(self._alert(deployment, attempts, errors, fallbacks, "firing"))
            elif deployment in self._storms:
                if attempts > 0 and errors < self.config.error_ratio * attempts:
                    self._storms.discard(deployment)
                    alerts.append(self._alert(deployment, attempts, errors, fallbacks, "resolved"))
            elif ring.last < start:
                del self._rings[deployment]
                self._last_error.pop(deployment, None)
        return alerts

    def _storm(self, attempts: float, errors: float, fallbacks: float) -> bool:
        config = self.config
        if attempts >= config.min_attempts and errors >= config.error_ratio * attempts:
            return True
        return config.min_fallbacks is not None and fallbacks >= config.min_fallbacks

    def _alert(
        self, deployment: str, attempts: float, errors: float, fallbacks: float, status: Status
    ) -> Alert:
        window = seconds_text(self.config.window)
        ratio = errors / attempts if attempts else 0.0
        counts = (
            f"{errors:.0f} of {attempts:.0f} attempts failed ({ratio:.0%}) in the last {window}"
        )
        values: dict[str, float | int | str] = {
            "window_s": self.config.window,
            "attempts": int(attempts),
            "errors": int(errors),
            "error_ratio": round(ratio, 4),
            "fallbacks": int(fallbacks),
            "threshold": self.config.error_ratio,
            "min_attempts": self.config.min_attempts,
        }
        last_error = self._last_error.get(deployment)
        if status == "resolved":
            message = f"deployment {deployment} recovered: {counts}"
        else:
            message = f"deployment {deployment} is failing: {counts}"
            if fallbacks:
                message += f"; {fallbacks:.0f} requests fell back to another deployment"
            if last_error:
                message += f"; last error {last_error}"
                values["last_error"] = last_error
        return Alert(
            kind="error_storm",
            severity="info" if status == "resolved" else "critical",
            scope="deployment",
            scope_id=deployment,
            message=message,
            dedup_key=f"error_storm:deployment:{deployment}:{self.config.window:g}s",
            time=self._wall(),
            values=values,
            status=status,
        )
