"""The pipeline stage that feeds the alert sources from every finished request.

Only ``on_complete``: by then cost is settled (``ctx.cost_usd``) and every upstream attempt
is in ``ctx.tries``. It adds to in-memory buckets and returns; judging the buckets and
delivering alerts happen in the alert manager's background task.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tollway.alerts.errors import ErrorStorms
from tollway.alerts.spend import SpendRate
from tollway.core.context import RequestContext
from tollway.core.pipeline import Stage


class AlertStage(Stage):
    """Records each request's spend per scope and its attempts per deployment."""

    name = "alerts"

    def __init__(
        self,
        spend: SpendRate | None,
        errors: ErrorStorms | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spend = spend
        self.errors = errors
        self._clock = clock

    async def on_complete(self, ctx: RequestContext) -> None:
        now: float | None = None
        spend, cost, principal = self.spend, ctx.cost_usd, ctx.principal
        if spend is not None and cost and principal is not None:
            now = self._clock()
            spend.record(principal, cost, now)
        if self.errors is not None and ctx.tries:
            self.errors.record(ctx.tries, self._clock() if now is None else now)
