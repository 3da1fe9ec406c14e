"""The in-memory limiter backend: all buckets and budgets of one request in one step.

Admission checks every applicable bucket, concurrency cap and budget first and only then
takes from all of them, so a refusal leaves nothing held. The event loop is single-threaded
and nothing here awaits, which makes each admission and settlement atomic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tollway.limits.bucket import ConcurrencyCap, TokenBucket
from tollway.limits.budget import BudgetAccount, notify
from tollway.limits.events import BudgetListener


@dataclass(frozen=True, slots=True)
class RateSpec:
    """Limits of one scope (e.g. ``key:abc``); ``None`` means unlimited."""

    tpm: int | None = None
    rpm: int | None = None
    max_concurrent: int | None = None


@dataclass(slots=True)
class Ticket:
    """What one admitted request holds, so settlement can give back exactly that."""

    scopes: tuple[str, ...]
    tokens: int
    budgets: tuple[BudgetAccount, ...]
    reserved_micros: int
    settled: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why admission said no."""

    code: str  # "rate_limit_exceeded" or "budget_exceeded"
    scope: str
    retry_after_s: float | None


class MemoryLimiter:
    """Buckets and concurrency per scope name, created on first use from its ``RateSpec``."""

    def __init__(
        self,
        listeners: Sequence[BudgetListener] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tpm: dict[str, TokenBucket] = {}
        self._rpm: dict[str, TokenBucket] = {}
        self._caps: dict[str, ConcurrencyCap] = {}
        self._listeners = tuple(listeners)
        self._clock = clock

    def _buckets(self, scope: str, spec: RateSpec, now: float) -> None:
        if spec.tpm is not None and scope not in self._tpm:
            self._tpm[scope] = TokenBucket(spec.tpm, 60.0, now)
        if spec.rpm is not None and scope not in self._rpm:
            self._rpm[scope] = TokenBucket(spec.rpm, 60.0, now)
        if spec.max_concurrent is not None and scope not in self._caps:
            self._caps[scope] = ConcurrencyCap(spec.max_concurrent)

    def admit(
        self,
        limits: Sequence[tuple[str, RateSpec]],
        tokens: int,
        budgets: Sequence[BudgetAccount] = (),
        reserve_micros: int = 0,
    ) -> Ticket | Refusal:
        """Take ``tokens`` and one request from every scope and reserve from every budget."""
        now = self._clock()
        for scope, spec in limits:
            self._buckets(scope, spec, now)
            refusal = self._check(scope, tokens, now)
            if refusal is not None:
                return refusal
        for account in budgets:
            if reserve_micros > account.remaining_micros:
                return Refusal("budget_exceeded", f"{account.scope}:{account.scope_id}", None)
        for scope, _ in limits:
            self._take(scope, tokens)
        for account in budgets:
            account.try_reserve(reserve_micros)
        scopes = tuple(scope for scope, _ in limits)
        return Ticket(scopes, tokens, tuple(budgets), reserve_micros)

    def _check(self, scope: str, tokens: int, now: float) -> Refusal | None:
        cap = self._caps.get(scope)
        if cap is not None and not cap.can_enter():
            return Refusal("rate_limit_exceeded", scope, None)
        rpm = self._rpm.get(scope)
        if rpm is not None and not rpm.can_take(1, now):
            return Refusal("rate_limit_exceeded", scope, rpm.retry_after(1, now))
        tpm = self._tpm.get(scope)
        if tpm is not None and not tpm.can_take(tokens, now):
            return Refusal("rate_limit_exceeded", scope, tpm.retry_after(tokens, now))
        return None

    def _take(self, scope: str, tokens: int) -> None:
        if (cap := self._caps.get(scope)) is not None:
            cap.enter()
        if (rpm := self._rpm.get(scope)) is not None:
            rpm.take(1)
        if (tpm := self._tpm.get(scope)) is not None:
            tpm.take(tokens)

    def settle(self, ticket: Ticket, actual_tokens: int, actual_micros: int) -> None:
        """Correct buckets to the actual tokens and budgets to the actual cost; idempotent."""
        if ticket.settled:
            return
        ticket.settled = True
        extra = actual_tokens - ticket.tokens
        for scope in ticket.scopes:
            if (cap := self._caps.get(scope)) is not None:
                cap.leave()
            if (tpm := self._tpm.get(scope)) is not None:
                if extra >= 0:
                    tpm.take(extra)
                else:
                    tpm.give_back(-extra)
        for account in ticket.budgets:
            notify(self._listeners, account.settle(ticket.reserved_micros, actual_micros))

    def remaining(self, scope: str) -> tuple[float | None, float | None]:
        """Remaining (requests, tokens) of a scope now, for the x-ratelimit headers."""
        now = self._clock()
        rpm, tpm = self._rpm.get(scope), self._tpm.get(scope)
        return (
            None if rpm is None else max(0.0, rpm.refill(now)),
            None if tpm is None else max(0.0, tpm.refill(now)),
        )
