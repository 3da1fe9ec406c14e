"""The in-memory limiter backend (the default): one process's buckets, caps and budgets.

The event loop is single-threaded and nothing here awaits before it returns, so each
admission and each settlement is atomic, and the admission stage calls them as plain
functions (``admit_now``, ``settle_now``): no coroutine made on the request path. Requests
in flight hold their reservations in the ticket; when the process ends they end with it, so
nothing can leak.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence

from tollway.limits.backend import (
    CARRIED,
    AccountState,
    Claim,
    RateSpec,
    Refusal,
    Settled,
    Ticket,
)
from tollway.limits.bucket import ConcurrencyCap, TokenBucket
from tollway.store.records import SpendTally


class _Account:
    __slots__ = ("carried", "holders", "reserved", "seeded", "spent")

    def __init__(self, spent: int = 0, *, seeded: bool = False, carried: int = 0) -> None:
        self.spent = spent
        self.carried = carried
        """The part of ``spent`` carried over from other periods' accounts (``carry``)."""
        self.reserved = 0
        self.holders = 0
        """Admitted requests not settled yet (a reservation may be 0): while any is, the
        account is not pruned, so its settlement finds it."""
        self.seeded = seeded
        """Whether the store's spend of the account is in ``spent``. One admission made
        (a new period, or a budget a reload added while the store was being read) holds
        only what it charged since, until ``seed`` adds the store's to it."""


class MemoryLimiter:
    """Buckets and caps per scope name, made from their ``RateSpec`` at first use and
    refitted whenever the spec a scope is admitted with changes (a reload, the admin API)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._tpm: dict[str, TokenBucket] = {}
        self._rpm: dict[str, TokenBucket] = {}
        self._caps: dict[str, ConcurrencyCap] = {}
        self._specs: dict[str, RateSpec] = {}
        """The spec each scope's buckets and cap were last fitted to."""
        self._accounts: dict[str, _Account] = {}
        self._clock = clock

    async def admit(self, claim: Claim) -> Ticket | Refusal:
        """Take tokens and a request from every scope and reserve from every budget."""
        return self.admit_now(claim)

    def admit_now(self, claim: Claim) -> Ticket | Refusal:
        """``admit`` without a coroutine: nothing here waits (limits/stage.py calls this)."""
        now = self._clock()
        tokens = claim.tokens
        specs = self._specs
        for scope, spec in claim.limits:
            # The book makes new specs only when it is rebuilt: one identity check a scope.
            if specs.get(scope) is not spec:
                self._fit(scope, spec, now)
            refusal = self._check(scope, spec, tokens, now)
            if refusal is not None:
                return refusal
        accounts = self._accounts
        least: int | None = None
        for budget in claim.budgets:
            account = accounts.get(budget.account)
            if account is None:
                account = accounts[budget.account] = _Account()
            left = budget.limit_micros - account.spent - account.reserved
            if claim.reserve_micros > left:
                return Refusal("budget_exceeded", budget.account, None, max(0, left))
            left -= claim.reserve_micros
            least = left if least is None else min(least, left)
        ticket = Ticket(claim, budget_remaining_micros=least)
        for scope, spec in claim.limits:
            ticket.remaining[scope] = self._take(scope, spec, tokens)
        for budget in claim.budgets:
            account = accounts[budget.account]
            account.reserved += claim.reserve_micros
            account.holders += 1
        return ticket

    def _fit(self, scope: str, spec: RateSpec, now: float) -> None:
        """Make ``scope``'s buckets and cap those of ``spec``: new ones at first use; a
        changed limit applies from this request, as on Redis (a bucket keeps its level, cut
        to its new size: a change never refills anyone); a limit taken away stops refusing
        (its cap still counts the requests in flight, should it come back)."""
        self._specs[scope] = spec
        for buckets, capacity in ((self._tpm, spec.tpm), (self._rpm, spec.rpm)):
            bucket = buckets.get(scope)
            if capacity is None:
                buckets.pop(scope, None)
            elif bucket is None:
                buckets[scope] = TokenBucket(capacity, 60.0, now)
            elif bucket.capacity != capacity:
                bucket.resize(capacity)
        cap = self._caps.get(scope)
        if cap is not None:
            cap.limit = spec.max_concurrent
        elif spec.max_concurrent is not None:
            self._caps[scope] = ConcurrencyCap(spec.max_concurrent)

    def _check(self, scope: str, spec: RateSpec, tokens: int, now: float) -> Refusal | None:
        cap = self._caps.get(scope) if spec.max_concurrent is not None else None
        if cap is not None and not cap.can_enter():
            return Refusal("rate_limit_exceeded", scope, None)
        rpm = self._rpm.get(scope)
        if rpm is not None and not rpm.can_take(1, now):
            return Refusal("rate_limit_exceeded", scope, rpm.retry_after(1, now))
        tpm = self._tpm.get(scope)
        if tpm is not None and not tpm.can_take(tokens, now):
            return Refusal("rate_limit_exceeded", scope, tpm.retry_after(tokens, now))
        return None

    def _take(self, scope: str, spec: RateSpec, tokens: int) -> tuple[float | None, float | None]:
        requests = left_tokens = None
        # Only a request admitted under a cap holds a slot, as on Redis: one admitted
        # without (before a reload set the cap) frees none at settlement, so it cannot
        # free the slot of a request admitted under the cap.
        if spec.max_concurrent is not None and (cap := self._caps.get(scope)) is not None:
            cap.enter()
        if (rpm := self._rpm.get(scope)) is not None:
            rpm.take(1)
            requests = max(0.0, rpm.level)
        if (tpm := self._tpm.get(scope)) is not None:
            tpm.take(tokens)
            left_tokens = max(0.0, tpm.level)
        return requests, left_tokens

    async def settle(self, ticket: Ticket, actual_tokens: int, actual_micros: int) -> list[Settled]:
        """Correct buckets to the actual tokens and budgets to the actual cost; idempotent."""
        return self.settle_now(ticket, actual_tokens, actual_micros)

    def settle_now(self, ticket: Ticket, actual_tokens: int, actual_micros: int) -> list[Settled]:
        """``settle`` without a coroutine."""
        if ticket.settled:
            return []
        ticket.settled = True
        claim = ticket.claim
        extra = actual_tokens - claim.tokens
        for scope, spec in claim.limits:
            if spec.max_concurrent is not None and (cap := self._caps.get(scope)) is not None:
                cap.leave()
            if (tpm := self._tpm.get(scope)) is not None:
                if extra >= 0:
                    tpm.take(extra)
                else:
                    tpm.give_back(-extra)
        settled: list[Settled] = []
        for budget in claim.budgets:
            account = self._accounts[budget.account]
            before = account.spent
            account.reserved = max(0, account.reserved - claim.reserve_micros)
            account.holders -= 1
            account.spent += actual_micros
            settled.append(Settled(budget.account, budget.limit_micros, before, account.spent))
        return settled

    async def accounts(self, accounts: Sequence[str]) -> list[AccountState]:
        """Spend and reservations of ``accounts`` now."""
        states = []
        for name in accounts:
            account = self._accounts.get(name)
            if account is None:
                states.append(AccountState(name, 0, 0))
                continue
            # The carried part kept apart in the store, so a later carry raises it, not adds.
            tally = (
                SpendTally(account.spent - account.carried, {CARRIED: account.carried})
                if account.carried
                else None
            )
            states.append(AccountState(name, account.spent, account.reserved, tally))
        return states

    def unchecked(self, claim: Claim) -> Ticket:
        """A ticket holding nothing (never needed: memory is always reachable)."""
        return Ticket(Claim(claim.request_id, (), 0, claim.budgets, 0, claim.hold_s))

    def known_spent(self, account: str) -> int | None:
        """The account's spend (exact: this process holds it)."""
        held = self._accounts.get(account)
        return None if held is None else held.spent

    async def seed(self, spent: Mapping[str, SpendTally]) -> None:
        """Accounts not held yet start at their persisted spend; those admission made
        before the store was read (``_Account.seeded``) add it to what they charged since."""
        accounts = self._accounts
        for name, tally in spent.items():
            account = accounts.get(name)
            carried = tally.epochs.get(CARRIED, 0)
            if account is None:
                accounts[name] = _Account(tally.total, seeded=True, carried=carried)
            elif not account.seeded:
                account.spent += tally.total - carried
                account.seeded = True
                self._raise_carried(account, carried)

    async def carry(self, carried: Mapping[str, int]) -> None:
        """Raise accounts' carried part; one not held yet is held unseeded (``seed`` adds
        the store's spend to it)."""
        accounts = self._accounts
        for name, micros in carried.items():
            account = accounts.get(name)
            if account is None:
                account = accounts[name] = _Account()
            self._raise_carried(account, micros)

    @staticmethod
    def _raise_carried(account: _Account, micros: int) -> None:
        if micros > account.carried:
            account.spent += micros - account.carried
            account.carried = micros

    def unseeded(self) -> list[str]:
        """Accounts the store's spend was not added to yet (``seed`` them before writing
        their spend: a part written as the whole would be counted twice when seeded)."""
        return [name for name, account in self._accounts.items() if not account.seeded]

    def prune(self, keep: Collection[str], periods: Collection[str] = ()) -> None:
        """Drop accounts not in ``keep`` and of none of ``periods`` that no admitted request
        holds: a day budget's account of every past day would otherwise stay for the life of
        the process. A removed budget's account of a current period stays: should a reload
        put the budget back, it goes on from its spend at once, with no store read in
        which admission would start it from zero."""
        accounts = self._accounts
        suffixes = tuple(":" + period for period in periods)
        for name in [
            n
            for n, a in accounts.items()
            if not a.holders and n not in keep and not (suffixes and n.endswith(suffixes))
        ]:
            del accounts[name]

    async def renew(self) -> None:
        """Nothing: what a request holds here lasts as long as the process."""

    async def first_notice(self, name: str, ttl_s: int) -> bool:
        """Always: no other process shares this backend."""
        return True

    async def close(self) -> None:
        """Nothing to release."""
