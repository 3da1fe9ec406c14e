"""The limits of a running gateway: its backend, the book of what applies, and spend upkeep.

One per gateway process, created at start and kept across config reloads (a reload must
not refill anyone's buckets). It reads budgets and limits from the store into a
``LimitBook`` at start and on every reconcile, seeds budget accounts with their persisted
spend, writes spend back every ``limits.spend_flush_interval`` and at shutdown, and retries
settlements the backend could not take (Redis briefly down): accounting is never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import re
import time
from collections.abc import Callable, Collection, Sequence
from zoneinfo import ZoneInfo

from tollway.config.schema import LimitsConfig
from tollway.limits.backend import (
    AccountState,
    Claim,
    ImmediateLimiter,
    Limiter,
    LimiterUnavailable,
    Refusal,
    Settled,
    Ticket,
)
from tollway.limits.book import LimitBook
from tollway.limits.book_changes import Changes, changes, limit_events, set_shares
from tollway.limits.budget import Budget, crossings, notify
from tollway.limits.carry import carried_spend
from tollway.limits.events import BudgetEvent, BudgetListener, log_event
from tollway.limits.memory import MemoryLimiter
from tollway.limits.periods import Period, period_end, period_key
from tollway.store import BudgetRecord, RateLimitRecord, SpendTally, Store

log = logging.getLogger("tollway.limits")
_MAX_UNSETTLED = 100_000
_WARN_EVERY_S = 10.0


class SpendNotWritten(Exception):
    """Budget spend could not be written to the store; the message says which part failed:
    reading the spend from the limiter's backend (Redis) or writing it to the store."""


_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^@\s]*@")


def reason(exc: BaseException) -> str:
    """A failure for a log line: its type and the first line of its text (a SQL error's
    driver message, not its statement), any URL's password masked."""
    original = getattr(exc, "orig", None) or exc
    text = _URL_PASSWORD.sub(r"\1***@", str(original).partition("\n")[0][:300])
    return f"{type(original).__name__}: {text}" if text else type(original).__name__


def _failure(exc: BaseException) -> str:
    """What a failed flush says: which part failed (``SpendNotWritten``), else the error."""
    return str(exc) if isinstance(exc, SpendNotWritten) else reason(exc)


class LimitService:
    """Admission and settlement with fail-open handling, plus the book and spend upkeep."""

    def __init__(self, config: LimitsConfig, limiter: Limiter, store: Store | None) -> None:
        self.config = config
        self.limiter = limiter
        self.immediate: ImmediateLimiter | None = (
            limiter if isinstance(limiter, MemoryLimiter) else None
        )
        """The backend again when its calls never wait (memory): the admission stage then
        admits and settles with plain calls, no coroutines on the request path."""
        self.book = LimitBook.build(config)
        self.zone = ZoneInfo(config.timezone)
        self.listeners: list[BudgetListener] = [log_event]
        self.utilisation: Callable[[str, str, str, float], None] | None = None
        """Told each settled budget's share spent: (scope, id, period, ratio); a gauge."""
        self.budgets_kept: Callable[[Collection[tuple[str, str, str]]], None] | None = None
        """Told the budgets in force (scope, id, period) whenever the book is rebuilt, so
        the gauge forgets removed ones."""
        self._store = store
        self._records: tuple[
            Sequence[BudgetRecord], Sequence[RateLimitRecord], dict[str, str], dict[str, str]
        ]
        self._records = ((), (), {}, {})
        self._loads_begun = 0
        self._load_applied = 0  # which of them the book was built from
        self._touched: set[str] = set()
        self._unsettled: list[tuple[Ticket, int, int, Sequence[Budget]]] = []
        self._task: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._warned_at = 0.0
        self._periods: dict[str, tuple[float, str]] = {}
        self._alerted: dict[str, set[float]] = {}
        """Per account of this period: the thresholds this process raised an event for."""
        self._judging_changes = False
        """Set once the store's budgets were first read: the book built from config alone
        at start is no limit a change could come from."""
        self._notices: set[asyncio.Task[None]] = set()
        self._carrying: dict[tuple[str, str, str], float] = {}
        """Budgets whose period changed (scope, id, period) -> until when (monotonic) to
        carry their spend over again at each flush: the accounts they carry from still hold
        reservations (or could not be read)."""

    # --- the request path ---------------------------------------------------------------

    async def admit(self, claim: Claim) -> Ticket | Refusal:
        """The backend's answer; when it is unreachable and ``fail_open`` is set, a ticket
        that holds nothing, so what the request costs is still charged once it is back."""
        try:
            return await self.limiter.admit(claim)
        except LimiterUnavailable as exc:
            if not self.config.fail_open:
                raise
            self._warn(f"limiter unavailable, request {claim.request_id} let through: {exc}")
            return self.limiter.unchecked(claim)

    async def settle(
        self, ticket: Ticket, tokens: int, micros: int, budgets: Sequence[Budget] = ()
    ) -> None:
        """Settle ``ticket``; queued for a retry when the backend cannot take it now."""
        try:
            settled = await self.limiter.settle(ticket, tokens, micros)
        except LimiterUnavailable as exc:
            self._warn(f"settlement of {ticket.claim.request_id} queued for retry: {exc}")
            ticket.settled = False
            if len(self._unsettled) < _MAX_UNSETTLED:
                self._unsettled.append((ticket, tokens, micros, budgets))
            return
        self._settled(settled, budgets)

    def settle_now(
        self, ticket: Ticket, tokens: int, micros: int, budgets: Sequence[Budget] = ()
    ) -> None:
        """``settle`` on an immediate backend (``self.immediate`` is set), at once."""
        assert self.immediate is not None
        self._settled(self.immediate.settle_now(ticket, tokens, micros), budgets)

    def _settled(self, settled: Sequence[Settled], budgets: Sequence[Budget]) -> None:
        if not settled:
            return
        thresholds = self.config.alert_thresholds
        events: list[BudgetEvent] = []
        utilisation = self.utilisation
        # One result per budget, in order. No ``strict=``: a keyword makes ``zip`` parse its
        # arguments the slow way, and settlement runs for every request under a budget.
        for budget, result in zip(budgets, settled):  # noqa: B905
            self._touched.add(result.account)
            crossed = crossings(budget, result, thresholds)
            if crossed:
                events += crossed
                alerted = self._alerted.setdefault(result.account, set())
                alerted.update(event.threshold for event in crossed)
            if utilisation is not None and budget.limit_micros:
                ratio = result.spent_after / budget.limit_micros
                utilisation(budget.scope, budget.scope_id, budget.period, ratio)
        notify(self.listeners, events)

    def account(self, budget: Budget) -> str:
        """The account ``budget`` charges now; period names are cached until the period
        ends, so the request path does no calendar arithmetic."""
        now = time.time()
        cached = self._periods.get(budget.period)
        if cached is None or now >= cached[0]:
            moment = dt.datetime.fromtimestamp(now, self.zone)
            end = period_end(budget.period, moment, self.zone)
            key = period_key(budget.period, moment, self.zone)
            cached = self._periods[budget.period] = (
                math.inf if end is None else end.timestamp(),
                key,
            )
        return f"{budget.scope}:{budget.scope_id}:{cached[1]}"

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            log.warning(message)

    # --- upkeep -------------------------------------------------------------------------

    async def load(self) -> None:
        """Rebuild the book from config and store, and seed new accounts' spend."""
        if self._store is None:
            return
        self._loads_begun += 1
        load = self._loads_begun
        budgets = await self._store.limits.budgets()
        limits = await self._store.limits.limits()
        teams = await self._store.teams.find()
        lineages = await self._store.keys.lineages()
        # A load that began later read later: what this one read must not replace it (a
        # reconcile that read before a budget was set would drop the budget until the next).
        if load < self._load_applied:
            return
        self._load_applied = load
        orgs = {team.id: team.organization for team in teams if team.organization}
        self._records = (budgets, limits, orgs, lineages)
        changes = self._rebuilt(LimitBook.build(self.config, budgets, limits, orgs, lineages))
        self._judging_changes = True
        await self.seed()
        self._after(*changes, seed=False)

    def stored_budgets(self) -> Sequence[BudgetRecord]:
        """Budgets read from the store at the last load."""
        return self._records[0]

    def stored_limits(self) -> Sequence[RateLimitRecord]:
        """Rate limits read from the store at the last load."""
        return self._records[1]

    def reconfigure(self, config: LimitsConfig) -> None:
        """Apply a reloaded ``limits`` section; a different backend needs a restart, so
        ``config`` is taken with the running backend's settings (``self.config`` says what
        is in force, and the next reload still finds the file asking for a restart)."""
        backend = ("backend", "redis_url", "redis_prefix", "redis_timeout")
        if any(getattr(config, name) != getattr(self.config, name) for name in backend):
            log.warning("limits backend settings changed: they apply at restart")
            config = config.model_copy(
                update={name: getattr(self.config, name) for name in backend}
            )
        book = LimitBook.build(config, *self._records)  # first: a failure changes nothing
        zone = ZoneInfo(config.timezone)
        self.config = config
        self.zone = zone
        self._periods = {}
        self._after(*self._rebuilt(book), seed=True)

    def _rebuilt(self, book: LimitBook) -> Changes:
        """Put ``book`` in force and tell what follows the budgets which are now; the
        budgets whose limit changed (before, after) and those added, once changes count."""
        before, self.book = self.book, book
        if self.budgets_kept is not None:
            kept = {(b.scope, b.scope_id, b.period) for b in book.every_budget()}
            self.budgets_kept(kept)
        return changes(before, book) if self._judging_changes else ([], [])

    def _after(
        self, changed: Sequence[tuple[Budget, Budget]], added: Sequence[Budget], *, seed: bool
    ) -> None:
        """Start ``_judge`` in the background when it has something to do (a reload cannot
        wait for the store or Redis)."""
        if not changed and not added:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._judge(changed, added, seed=seed))
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def _judge(
        self, changed: Sequence[tuple[Budget, Budget]], added: Sequence[Budget], *, seed: bool
    ) -> None:
        """After a book change: seed the ``added`` budgets' accounts (``seed``: a reload
        added them; their spend is in the store when the process did not hold them, e.g.
        removed before a restart), carry into them what their scope spent this period
        under budgets of other periods (a period changed: ``carry``), raise the ``changed``
        ones' events, and set the share spent of both on the gauge (book_changes.py says
        why).

        Admission meanwhile charges an added budget's new account from zero;
        ``MemoryLimiter.seed`` adds the store's spend to it (Redis seeds an account it
        does not hold from the store itself)."""
        if seed and added:
            try:
                await self.seed()
            except Exception as exc:  # the next reconcile seeds them; the reload stands
                log.warning("budget spend not read after a reload: %s", reason(exc))
        if added:
            await self.carry(added)
        if changed:
            await self.limit_changed(changed)
        utilisation = self.utilisation
        budgets = [budget for _, budget in changed] + [b for b in added if b.limit_micros > 0]
        if utilisation is None or not budgets:
            return
        try:
            states = await self.limiter.accounts([self.account(b) for b in budgets])
        except Exception as exc:  # the next settlement sets it
            log.warning("budgets changed, but their spend cannot be read: %s", reason(exc))
            return
        set_shares(budgets, states, self.book, utilisation)  # the book in force now

    async def limit_changed(self, changed: Sequence[tuple[Budget, Budget]]) -> None:
        """Raise the events of budgets whose limit changed from the first budget to the
        second of each pair (``limit_events``)."""
        thresholds = self.config.alert_thresholds
        accounts = [self.account(budget) for _, budget in changed]
        try:
            states = await self.limiter.accounts(accounts)
        except Exception as exc:
            log.warning("budget limits changed, but their spend cannot be read: %s", reason(exc))
            return
        events = await limit_events(self.limiter, changed, states, self._alerted, thresholds)
        notify(self.listeners, events)

    async def carry(self, budgets: Sequence[Budget]) -> None:
        """Carry into the current account of each of ``budgets`` the spend its scope's
        accounts of periods it has no budget for any more recorded since the period began
        (limits/carry.py): a daily budget made monthly goes on from this month's spend.
        Read again at each flush while those accounts hold reservations (requests admitted
        before the change settle there), for at most ``limits.hold``."""
        if self._store is None:
            return
        now = dt.datetime.fromtimestamp(time.time(), self.zone)
        for budget in budgets:
            scope = (budget.scope, budget.scope_id)
            key = (*scope, budget.period)
            group = self.book.budgets.get(scope, ())
            if not any(b.period == budget.period for b in group):
                self._carrying.pop(key, None)  # removed since
                continue
            until = self._carrying.get(key, time.monotonic() + self.config.hold)
            self._carrying[key] = until
            try:
                carried = await carried_spend(
                    budget, self.account(budget), {b.period for b in group}, now, self.zone,
                    self._store, self.limiter,
                )  # fmt: skip
                if carried is not None and carried.micros > 0:
                    await self.limiter.carry({carried.account: carried.micros})
            except Exception as exc:  # tried again at the next flush
                log.warning("spend of a budget's earlier period not carried over: %s", reason(exc))
                continue
            if carried is None or not carried.reserved_micros:
                self._carrying.pop(key, None)

    async def _carry_again(self) -> None:
        """``carry`` of the budgets whose earlier accounts may still have grown."""
        now = time.monotonic()
        due = {key for key, until in self._carrying.items() if until > now}
        self._carrying = {key: until for key, until in self._carrying.items() if key in due}
        budgets = [b for b in self.book.every_budget() if (b.scope, b.scope_id, b.period) in due]
        await self.carry(budgets)

    def _unseeded(self) -> list[str]:
        """Accounts the memory backend holds without the store's spend (none on Redis)."""
        limiter = self.limiter
        return limiter.unseeded() if isinstance(limiter, MemoryLimiter) else []

    def current_periods(self) -> set[str]:
        """The key of each kind of period now (``day:2026-12-05``, ..., ``total``)."""
        moment = dt.datetime.fromtimestamp(time.time(), self.zone)
        periods: tuple[Period, ...] = ("day", "week", "month", "total")
        return {period_key(period, moment, self.zone) for period in periods}

    def current_accounts(self) -> set[str]:
        """This period's account of every budget."""
        return {self.account(budget) for budget in self.book.every_budget()}

    async def seed(self) -> None:
        """Start this period's accounts of every budget at their persisted spend (0 when
        the store has none), where the backend does not hold them yet."""
        if self._store is None:
            return
        accounts = sorted(self.current_accounts() | set(self._unseeded()))
        if not accounts:
            return
        spent = await self._store.limits.tallies(accounts)
        try:
            await self.limiter.seed({name: spent.get(name, SpendTally()) for name in accounts})
        except LimiterUnavailable as exc:  # seeded at the next reconcile
            self._warn(f"cannot seed budget spend into the limiter now: {exc}")

    async def flush(self) -> None:
        """Retry queued settlements, write touched accounts' spend to the store, then let
        the backend forget accounts no budget charges any more (past periods)."""
        pending, self._unsettled = self._unsettled, []
        for ticket, tokens, micros, budgets in pending:
            await self.settle(ticket, tokens, micros, budgets)
        if self._store is not None and self._unseeded():
            await self.seed()  # before their spend is written: a part is not the whole
        if self._carrying:
            await self._carry_again()
        if self._store is None:
            self._touched.clear()  # nowhere to write them
        elif self._touched:
            touched, self._touched = self._touched, set()
            try:
                states = await self.limiter.accounts(sorted(touched))
            except Exception as exc:
                self._touched |= touched  # written next time
                # Not the store's failure: the spend to write cannot be read (Redis down).
                where = "Redis" if isinstance(exc, LimiterUnavailable) else "the limiter"
                raise SpendNotWritten(f"reading it from {where} failed: {reason(exc)}") from exc
            try:
                await self._store.limits.record_spend(
                    {s.account: s.tally or SpendTally(s.spent_micros) for s in states}
                )
            except Exception as exc:
                self._touched |= touched
                raise SpendNotWritten(f"the store failed: {reason(exc)}") from exc
        # Accounts touched since (or never written: the write failed) are kept, and on
        # memory those of the current periods (MemoryLimiter.prune says why).
        current = self.current_accounts()
        self.limiter.prune(current | self._touched, self.current_periods())
        for gone in [account for account in self._alerted if account not in current]:
            del self._alerted[gone]

    async def accounts(self, names: Sequence[str]) -> list[AccountState]:
        """Spend and reservations of budget accounts now."""
        return await self.limiter.accounts(names)

    def start(self) -> None:
        """Begin flushing spend in the background and, on a backend whose holds expire
        (Redis), renewing those of the requests in flight."""
        self._task = asyncio.create_task(self._flush_loop(), name="tollway-spend")
        if self.immediate is None:
            self._renewer = asyncio.create_task(self._renew_loop(), name="tollway-holds")

    async def _renew_loop(self) -> None:
        """Every quarter of ``limits.hold``, renew the holds past half of it: a request
        in flight keeps its concurrency slots and reservations however long it runs (they
        expire only when this process is gone), so nothing is admitted past a cap or a
        budget meanwhile."""
        while True:
            await asyncio.sleep(self.config.hold / 4)
            try:
                await self.limiter.renew()
            except LimiterUnavailable as exc:  # tried again next round, well before expiry
                self._warn(f"holds of requests in flight not renewed now: {exc}")

    async def _flush_loop(self) -> None:
        failing = False  # one line a round while it fails, one when it works again
        while True:
            await asyncio.sleep(self.config.spend_flush_interval)
            try:
                await self.flush()
            except Exception as exc:  # the next round tries again; spend stays in the backend
                again = " again" if failing else ""
                log.warning("budget spend not written%s: %s", again, _failure(exc))
                log.debug("the failed write of budget spend", exc_info=True)
                failing = True
            else:
                if failing:
                    log.warning("writing budget spend works again")
                failing = False

    async def close(self) -> None:
        """Stop the loops, write spend one last time, release the backend."""
        for task in (self._task, self._renewer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await asyncio.gather(*self._notices, return_exceptions=True)  # before the backend
        try:
            await self.flush()
        except Exception as exc:  # as the loop's: one line, the traceback at debug
            log.warning("budget spend not written at shutdown: %s", _failure(exc))
            log.debug("the failed write of budget spend at shutdown", exc_info=True)
        await self.limiter.close()
