"""The alert manager: sources in, de-duplication, delivery out (docs/alerts.md).

Three sources raise alerts:

- budget threshold events from ``LimitService.listeners`` (``on_budget_event``), handed
  over by the limits layer after the request step;
- spend-rate anomalies (spend.py) and error storms (errors.py), fed per request by
  ``AlertStage`` and judged here every ``evaluate_interval`` in a background task.

Every alert passes ``raise_alert``: an alert whose ``dedup_key`` was sent less than
``dedup_window`` ago is dropped (counted); otherwise it is logged, counted and handed to
``Delivery``, which posts it in the background. The key is taken when the alert is raised,
not when a webhook accepts it, so a webhook that is down cannot turn one condition into a
stream of retries from every evaluation. A ``resolved`` alert forgets its firing key, so a
storm that comes back after recovering is news again.

The manager exists only when ``alerts.webhooks`` is not empty: with nowhere to send
alerts, nothing is tracked and requests pay nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection

from tollway.alerts.alert import Alert, budget_alert
from tollway.alerts.delivery import Delivery
from tollway.alerts.errors import ErrorStorms
from tollway.alerts.spend import SpendRate
from tollway.alerts.stage import AlertStage
from tollway.auth.vault import Vault
from tollway.config.schema import AlertsConfig
from tollway.limits.events import BudgetEvent
from tollway.telemetry.metrics import Metrics

log = logging.getLogger("tollway.alerts")


class AlertManager:
    """Raises, de-duplicates and delivers alerts; owns the background evaluation."""

    def __init__(
        self,
        config: AlertsConfig,
        vault: Vault,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``clock`` measures windows and the dedup window; ``wall`` stamps alerts."""
        self.config = config
        self.metrics = metrics
        self._clock = clock
        self._wall = wall
        self.spend = SpendRate(config.spend_rate, wall) if config.spend_rate.enabled else None
        self.errors = ErrorStorms(config.errors, wall) if config.errors.enabled else None
        self.delivery = Delivery(config, vault, self._delivery_failed)
        self._sent: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def build(
        cls, config: AlertsConfig, vault: Vault, metrics: Metrics | None = None
    ) -> AlertManager | None:
        """The manager for ``config``, or ``None`` when no webhook is configured."""
        return cls(config, vault, metrics) if config.webhooks else None

    def stage(self) -> AlertStage | None:
        """The pipeline stage feeding the per-request sources, if any is enabled."""
        if self.spend is None and self.errors is None:
            return None
        return AlertStage(self.spend, self.errors, self._clock)

    # --- sources ------------------------------------------------------------------------

    def on_budget_event(self, event: BudgetEvent) -> None:
        """A ``LimitService`` listener: a budget threshold crossing becomes an alert."""
        self.raise_alert(budget_alert(event, self._wall()))

    def keep_deployments(self, deployments: Collection[str]) -> None:
        """After a reload: drop the error-storm state of deployments no longer configured."""
        if self.errors is not None:
            self.errors.keep(deployments)

    def evaluate(self) -> list[Alert]:
        """Judge spend rates and error ratios now; the alerts that were raised (not
        de-duplicated away)."""
        now = self._clock()
        candidates: list[Alert] = []
        if self.spend is not None:
            candidates += self.spend.evaluate(now)
        if self.errors is not None:
            candidates += self.errors.evaluate(now)
        expired = [
            key for key, sent in self._sent.items() if now - sent >= self.config.dedup_window
        ]
        for key in expired:
            del self._sent[key]
        return [alert for alert in candidates if self._raise_judged(alert)]

    def _raise_judged(self, alert: Alert) -> bool:
        """``raise_alert`` for an evaluation's alert; a storm's recovery with ``errors.resolved``
        off is not sent, but still forgets the storm's key: a storm after it is news again."""
        if alert.status == "resolved" and not self.config.errors.resolved:
            self._sent.pop(alert.dedup_key, None)
            return False
        return self.raise_alert(alert)

    # --- de-duplication and delivery ----------------------------------------------------

    def raise_alert(self, alert: Alert) -> bool:
        """Send ``alert`` unless the same one was sent within ``dedup_window``."""
        now = self._clock()
        if alert.status == "resolved":
            self._sent.pop(alert.dedup_key, None)
        else:
            sent = self._sent.get(alert.dedup_key)
            if sent is not None and now - sent < self.config.dedup_window:
                if self.metrics is not None:
                    self.metrics.count_alert_deduplicated(alert.kind)
                return False
            self._sent[alert.dedup_key] = now
        if self.metrics is not None:
            self.metrics.count_alert(alert.kind, alert.status)
        log.warning("alert %s %s: %s", alert.kind, alert.status, alert.message)
        self.delivery.send(alert)
        return True

    def _delivery_failed(self, webhook: str) -> None:
        if self.metrics is not None:
            self.metrics.count_alert_delivery_failure(webhook)

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the delivery session and start evaluating in the background."""
        await self.delivery.start()
        for name in self.delivery.missing_urls():
            log.warning("the url of webhook %s cannot be resolved; its alerts will fail", name)
        # Always: besides judging the sources, evaluation expires old dedup keys.
        self._task = asyncio.create_task(self._evaluate_loop(), name="tollway-alerts")

    async def _evaluate_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.evaluate_interval)
            try:
                self.evaluate()
            except Exception as exc:  # the next round tries again; never end evaluating
                log.error("evaluating alerts failed: %s: %s", type(exc).__name__, exc)

    async def close(self) -> None:
        """Stop evaluating, let deliveries in flight finish (bounded), close the session."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.delivery.close()
