"""The Redis limiter backend: buckets, caps and budgets shared by every gateway replica.

Behaviour is exactly that of ``memory.py`` (the same cases run against both in
``tests/integration/test_limiter_backends.py``); only the state lives in Redis.

Key layout. Every key carries the Redis Cluster hash tag ``{<prefix>}``, so all the keys
one script touches live on one slot (``scope`` is e.g. ``key:abc``, ``account`` e.g.
``team:t1:month:2026-11-01``)::

    {prefix}:rpm:<scope>       hash   level, stamp: the RPM bucket as of ``stamp``
    {prefix}:tpm:<scope>       hash   level, stamp: the TPM bucket as of ``stamp``
    {prefix}:conc:<scope>      zset   hold id -> expiry: the requests in flight
    {prefix}:spend:<account>   hash   spent, reserved (micro-dollars), and hold id -> micros
                                      reserved by each admitted request not settled yet;
                                      epoch, floor, base, earlier: see "Losing data"
                                      below; carry: spend settled while the account was
                                      not seeded
    {prefix}:holds:<account>   zset   hold id -> expiry of those reservations
    {prefix}:done:<hold id>    string a settlement of this hold has run (expires in a day)

The first segment after the tag names the kind of key, so no scope or account name
(which contain colons themselves) can make two kinds collide.

Why Lua. Admission must check every scope and budget and take from all of them only if
all pass; settlement must free, correct and account in one step. Each is one registered
script (``EVALSHA``, the scripts are in ``redis_scripts.py``): atomic in Redis, and exactly
one round trip per admission and per settlement (after Redis has the script; a restarted
Redis costs one ``SCRIPT LOAD``).
A missing bucket key is a full bucket, so a refusal writes nothing but expired holds
it purges. Bucket arithmetic is the same IEEE double arithmetic as ``bucket.py``, in the
same order, so both backends compute the same levels and retry times; floats travel as
``%.17g`` strings (a Lua number in a reply would be truncated to an integer, and Lua's
default formatting keeps only 14 digits). Money is integer micro-dollars throughout.

Time. "Now" is the client's ``clock`` (wall-clock seconds, replicas are NTP-synced),
passed to each script, never Redis' ``TIME``; tests pass a fake clock.

Holds and their expiry. An admitted request holds a concurrency slot per capped scope and
a reservation per budget under a *hold id*: its request id plus a per-process nonce and
counter, because clients may choose (and repeat) request ids and two admissions must never
share a slot. A hold expires at ``now + claim.hold_s``; every script first purges the
expired holds of the keys it touches, so a replica that died mid-request cannot hold a
slot or a reservation forever. A live replica renews the holds of its requests still in
flight (``renew``, every quarter of ``hold_s``, those past half of it; script ``RENEW``), so
a request that runs longer than ``hold_s`` (fallbacks, retries, a long ``total`` timeout)
keeps its slot and its reservation: had they expired, other requests would have been
admitted past the cap and the budget while it still ran up its cost. The reserved total
lives in the same hash as the reservations it sums, so the two cannot drift apart.

Losing data. Redis may lose an account mid-period (a restart without persistence,
``FLUSHALL``, failover to an empty replica); an account it does not hold must never start
again from zero. An account is *seeded* when its hash has ``spent``: admission finds every
budget account seeded, or asks nothing and answers which are not, and the client seeds them
(``SYNC``) and asks again; a settlement on one not seeded keeps its cost in ``carry``.

Seeding starts a new *epoch* (a random id). Every settlement lands in exactly one epoch's
hash (or in the carry, which seeding folds into the new epoch), so the account's spend is a
grow-only counter, ``SpendTally`` (store/records.py): a ``base`` (spend from before any
epoch) plus, per epoch, its own part (what was spent in its hash on top of its floor). The
hash of an epoch keeps the parts of the epochs before it (``base``, ``earlier``), their sum
as its ``floor``, and ``spent`` = floor + its own part. Two tallies merge by the larger of
each part, so what replicas know can be given late, twice, in any order, by any of them,
and is counted once. ("The most any replica saw" is no such merge: a replica that saw more
of epoch 1 than the one that seeded epoch 2, and never synced with epoch 2, gave its total
of epoch 1 to epoch 3, where the larger of the two lost epoch 1's spend beyond epoch 2's
floor.)

Each process keeps per account what it knows (``_Known``): the epoch it is synced with, the
most it saw of that epoch's own part (every reply that reports spend, ``ADMIT``, ``SETTLE``,
``ACCOUNTS``, ``SYNC``, gives the floor too: one more field), and the parts of the other
epochs. It learns those from Redis at every sync and read (``ACCOUNTS``), and from replies
of other epochs (a reply that crossed a loss); when a reply's floor is not the sum of the
parts it knows, Redis knows parts it does not (another replica raised one) or the other way
round, and it syncs at its next admission, settlement or read of the account (admission
goes on only after), and at every reconcile. So a replica that dies after raising a part
does not take that knowledge with it: every live replica learns it, and gives it again
after the next loss. A sync gives everything the process knows (and, to an account not
held, the store's persisted tally, read from the store only then, which flushes keep up to
date by the same merge); Redis raises each part it names, but the current epoch's own
part, which is Redis' to count, and moves floor and spent by the difference.

With it each replica gives back its open reservations (not settled, not expired; one settled
while the sync ran is released again after it), so requests in flight when Redis lost them
are counted against the budget again. What stays lost: concurrency slots and token buckets
(they refill); a settlement whose reply was lost just before the loss, when no reply of a
later request on the account reached a replica before the loss either (no one knows its
part of that epoch); and a carry lost in a further loss before the account was seeded.
Hashes and store rows from before tallies have only totals: a hash's floor is its base,
and a row's total is its base, which can count twice what an epoch held across the upgrade
added before it, if Redis loses the account again before the first flush after the
upgrade (a flush merges such a row as totals were merged before: the larger, once).

Expiry of keys. Buckets expire a few minutes after they would be full again (a missing
bucket is a full one). Concurrency sets expire a few minutes after their last hold would.
Spend (and the reservation zsets, which the purge needs) never expire: a period's account
is a new key, and accounting must not be lost.

Failures. A connection error or timeout raises ``LimiterUnavailable`` (the stage applies
``fail_open``), with the URL's password masked. Commands are not retried here, but for one
thing: a script sent on a connection the server had closed (a restarted Redis closes every
pooled connection) is sent once more on a fresh one. Retrying more (a timeout) could take
twice: an admission that ran but whose reply was lost holds until its holds expire after
``hold_s``. Settlements are retried by ``LimitService`` (limits/service.py) until Redis
takes them, so spend is not lost; each marks its hold id in ``{prefix}:done:<hold>`` (kept
a day) as it runs, so a retry whose first reply was lost is a no-op, not a double charge.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from tollway.limits.backend import (
    CARRIED,
    AccountState,
    Claim,
    LimiterUnavailable,
    Refusal,
    Settled,
    Ticket,
)
from tollway.limits.redis_scripts import ACCOUNTS, ADMIT, RELEASE, RENEW, SETTLE, SYNC
from tollway.store.records import SpendTally

PersistedSpend = Callable[[list[str]], Awaitable[Mapping[str, SpendTally]]]
"""The spend the store keeps of budget accounts (absent: none), to seed accounts from."""

MARGIN_MS = 300_000
"""How long after it would be full again (or its last hold would expire) a key lives."""

_UNAVAILABLE = (
    redis_errors.ConnectionError,  # includes authentication and "no connection available"
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,  # pointed at a replica (failover in progress)
    redis_errors.ClusterDownError,
    redis_errors.OutOfMemoryError,
    OSError,
)
_SYNC_TRIES = 3
_RENEWED_AT_ONCE = 256
"""Holds renewed by one script run (a short one: Redis runs nothing else meanwhile)."""
"""Admissions that find an account out of date and sync it before asking again."""


@dataclass(slots=True)
class _Known:
    """What this process knows of one budget account in Redis."""

    epoch: str
    """The epoch it is synced with."""
    spent: int
    """The most it saw spent in that epoch."""
    own: int
    """The most it saw of that epoch's own part (spent on top of its floor)."""
    floor: int
    """That epoch's floor as last reported."""
    earlier: SpendTally
    """All it knows of the other epochs (and the base): learned from Redis at syncs and
    reads, and from replies of other epochs (that crossed a loss). When its total is not the
    floor, Redis knows parts this process does not, or the other way round: it syncs."""

    def behind(self) -> bool:
        """Something to give Redis or to learn from it."""
        return self.floor != self.earlier.total

    def tally(self) -> SpendTally:
        """All this process knows of the account's spend."""
        return self.earlier.merge(SpendTally(0, {self.epoch: self.own}))


def _tally(base: str, earlier: str) -> SpendTally:
    """The parts ``SYNC`` and ``ACCOUNTS`` report (``earlier``: "id=micros ...")."""
    parts = (part.partition("=") for part in earlier.split())
    return SpendTally(int(base), {epoch: int(micros) for epoch, _, micros in parts})


@dataclass(slots=True, weakref_slot=True)
class _HeldTicket(Ticket):
    """A ticket that also names its holds in Redis (request id, nonce, counter)."""

    hold: str = ""
    expiry: float = 0.0
    """When its holds expire in Redis (``renew`` pushes it on while the request runs)."""


def _masked(url: str) -> str:
    """``url`` with any password replaced by ``***`` (in the netloc or the query)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _password(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.password:
        return parts.password
    for key, value in parse_qsl(parts.query):
        if key == "password" and value:
            return value
    return None


def _given(known: _Known | None) -> SpendTally:
    """What a process gives at a sync: all it knows of the account."""
    return SpendTally() if known is None else known.tally()


def _float(value: str | None) -> float | None:
    return None if value is None else float(value)


class RedisLimiter:
    """The ``Limiter`` over one Redis (or one Redis Cluster slot per ``prefix``)."""

    def __init__(
        self,
        url: str,
        prefix: str = "tollway",
        clock: Callable[[], float] = time.time,
        socket_timeout: float = 0.5,
        *,
        max_connections: int = 64,
        persisted: PersistedSpend | None = None,
    ) -> None:
        """Connect lazily to ``url``; waits for a pooled connection count as the timeout.

        ``persisted``: reads the store's spend of accounts, to seed those Redis does not
        hold (lost, or new); without it they start from what the replicas saw, else 0.
        """
        self._pool: BlockingConnectionPool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=socket_timeout,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self._redis = Redis(connection_pool=self._pool)
        self._admit = self._redis.register_script(ADMIT)
        self._settle = self._redis.register_script(SETTLE)
        self._accounts = self._redis.register_script(ACCOUNTS)
        self._sync_script = self._redis.register_script(SYNC)
        self._release = self._redis.register_script(RELEASE)
        self._renew = self._redis.register_script(RENEW)
        self._tag = "{" + prefix + "}:"
        self._clock = clock
        self._where = _masked(url)
        self._secret = _password(url)
        self._persisted = persisted
        self._known: dict[str, _Known] = {}
        self._open: dict[str, dict[str, tuple[int, float]]] = {}
        """Per account: this process's holds not settled yet: id -> (micros, expiry)."""
        self._syncing: dict[str, asyncio.Future[None]] = {}
        self._live: weakref.WeakValueDictionary[str, _HeldTicket] = weakref.WeakValueDictionary()
        """Admitted tickets holding a slot or a reservation, by hold id, to ``renew``; a ticket
        leaves when it is settled, or with its request (held weakly: a request that ended
        without settling must not keep its holds alive)."""
        self._nonce = secrets.token_hex(6)
        self._next = itertools.count(1).__next__

    def _unavailable(self, exc: BaseException) -> NoReturn:
        detail = f"{type(exc).__name__}: {exc}"
        if self._secret:
            detail = detail.replace(self._secret, "***")
        raise LimiterUnavailable(f"Redis limiter at {self._where} unavailable: {detail}") from exc

    async def _run(self, script: AsyncScript, keys: list[str], args: list[str | int]) -> Any:
        try:
            try:
                return await script(keys, args)
            except redis_errors.ConnectionError as exc:
                if isinstance(exc.__cause__, asyncio.TimeoutError):
                    raise  # no pooled connection came free in time: no better on a retry
                # A connection the server closed, as a restarted Redis closes every pooled
                # one: once more on a fresh connection, not a 503 per stale connection.
                return await script(keys, args)
        except _UNAVAILABLE as exc:
            self._unavailable(exc)

    def _budget_keys(self, account: str) -> tuple[str, str]:
        return self._tag + "spend:" + account, self._tag + "holds:" + account

    def _observe(self, account: str, spent: str | int, epoch: str, floor: str | int) -> bool:
        """Note a spend Redis reported; False when it is of an epoch other than the one this
        process is synced with (Redis lost the account since, or the reply was sent before
        it did): that epoch's part, kept with the others, is given to Redis by a sync."""
        known = self._known.get(account)
        value, under = int(spent), int(floor)
        if known is None:
            self._known[account] = _Known(epoch, value, value - under, under, SpendTally())
            return True
        if known.epoch == epoch:
            known.spent = max(known.spent, value)
            known.own = max(known.own, value - under)
            known.floor = max(known.floor, under)
            return True
        known.earlier = known.earlier.merge(SpendTally(0, {epoch: value - under}))
        return False

    async def admit(self, claim: Claim) -> Ticket | Refusal:
        """Take tokens and a request from every scope and reserve from every budget."""
        tag = self._tag
        hold = f"{claim.request_id}/{self._nonce}{self._next():x}"
        now = float(self._clock())
        keys: list[str] = []
        args: list[str | int] = [
            repr(now),
            hold,
            repr(float(claim.hold_s)),
            claim.tokens,
            claim.reserve_micros,
            len(claim.limits),
            len(claim.budgets),
            MARGIN_MS,
        ]
        for scope, spec in claim.limits:
            keys += (tag + "rpm:" + scope, tag + "tpm:" + scope, tag + "conc:" + scope)
            args += ("" if v is None else v for v in (spec.rpm, spec.tpm, spec.max_concurrent))
        if not keys and not claim.budgets:
            return _HeldTicket(claim, hold=hold)  # nothing to check or take
        budget_args = len(args)
        for budget in claim.budgets:
            keys += self._budget_keys(budget.account)
            args += (budget.limit_micros, "")
        known = self._known
        behind = [
            budget.account
            for budget in claim.budgets
            if budget.account in known and known[budget.account].behind()
        ]
        if behind:  # parts to give (a reply that crossed a loss) or to learn, before admitting
            await self._sync_once(behind)
        for _ in range(_SYNC_TRIES):
            for j, budget in enumerate(claim.budgets):
                seen = known.get(budget.account)
                args[budget_args + 2 * j + 1] = "" if seen is None else seen.epoch
            reply = await self._run(self._admit, keys, args)
            if reply[0] != 2:
                return self._admitted(claim, hold, now, reply)
            await self._sync_once([claim.budgets[j - 1].account for j in reply[1]])
        raise LimiterUnavailable("budget accounts in Redis changed while being brought up to date")

    def _admitted(self, claim: Claim, hold: str, now: float, reply: Any) -> Ticket | Refusal:
        nscopes = len(claim.limits)
        spents: list[str] = reply[-1]
        for j, budget in enumerate(claim.budgets[: len(spents) // 3]):
            self._observe(budget.account, spents[3 * j], spents[3 * j + 1], spents[3 * j + 2])
        if reply[0] == 0:
            index, retry_after, left = reply[1], reply[2], reply[3]
            if index <= nscopes:
                return Refusal(
                    "rate_limit_exceeded", claim.limits[index - 1][0], _float(retry_after)
                )
            account = claim.budgets[index - nscopes - 1].account
            return Refusal("budget_exceeded", account, None, int(left))
        remaining: list[str | None] = reply[1]
        least: str | None = reply[2]
        expiry = now + claim.hold_s
        ticket = _HeldTicket(
            claim,
            budget_remaining_micros=None if least is None else int(least),
            hold=hold,
            expiry=expiry,
        )
        capped = False
        for i, (scope, spec) in enumerate(claim.limits):
            ticket.remaining[scope] = (_float(remaining[2 * i]), _float(remaining[2 * i + 1]))
            capped = capped or spec.max_concurrent is not None
        if claim.reserve_micros:
            held = (claim.reserve_micros, expiry)
            for budget in claim.budgets:
                self._open.setdefault(budget.account, {})[hold] = held
        if capped or (claim.reserve_micros and claim.budgets):
            self._live[hold] = ticket
        return ticket

    async def settle(self, ticket: Ticket, actual_tokens: int, actual_micros: int) -> list[Settled]:
        """Free the slots, correct the TPM buckets and account the cost; idempotent."""
        if ticket.settled:
            return []
        ticket.settled = True
        claim = ticket.claim
        tag = self._tag
        hold = ticket.hold if isinstance(ticket, _HeldTicket) else claim.request_id
        self._live.pop(hold, None)
        keys: list[str] = []
        args: list[str | int] = [
            repr(float(self._clock())),
            hold,
            actual_tokens - claim.tokens,
            actual_micros,
            len(claim.limits),
            len(claim.budgets),
            MARGIN_MS,
        ]
        for scope, spec in claim.limits:
            keys += (tag + "tpm:" + scope, tag + "conc:" + scope)
            args.append("" if spec.tpm is None else spec.tpm)
        for budget in claim.budgets:
            keys += self._budget_keys(budget.account)
            self._close_hold(budget.account, hold)
        if not keys:
            return []
        keys.append(tag + "done:" + hold)
        reply: list[Any] = await self._run(self._settle, keys, args)
        if not int(reply[0]):
            return []  # settled before: a retry after a lost reply
        behind = [
            budget.account
            for j, budget in enumerate(claim.budgets)
            if reply[3 * j + 1] is None
            or not self._observe(budget.account, *reply[3 * j + 1 : 3 * j + 4])
            or self._known[budget.account].behind()
        ]
        synced = await self._sync_once(behind) if behind else {}
        settled: list[Settled] = []
        for j, budget in enumerate(claim.budgets):
            state = synced.get(budget.account)
            spent_after = int(reply[3 * j + 1]) if state is None else state.spent_micros
            settled.append(
                Settled(
                    budget.account, budget.limit_micros, spent_after - actual_micros, spent_after
                )
            )
        return settled

    def _close_hold(self, account: str, hold: str) -> None:
        held = self._open.get(account)
        if held is not None:
            held.pop(hold, None)
            if not held:
                del self._open[account]

    async def renew(self) -> None:
        """Push on the expiry of the holds of this process's requests in flight that are past
        half their ``hold_s``: a request's slot and reservation last as long as it does (the
        expiry is for a process that died), so none is admitted past a cap or a budget
        while it still runs. ``LimitService`` calls this every quarter of ``limits.hold``."""
        now = float(self._clock())
        due = [
            ticket
            for ticket in list(self._live.values())
            if not ticket.settled and ticket.expiry - now < ticket.claim.hold_s / 2
        ]
        for start in range(0, len(due), _RENEWED_AT_ONCE):
            batch = due[start : start + _RENEWED_AT_ONCE]
            keys: list[str] = []
            args: list[str | int] = []
            for ticket in batch:
                claim = ticket.claim
                caps = [
                    self._tag + "conc:" + scope
                    for scope, spec in claim.limits
                    if spec.max_concurrent is not None
                ]
                budgets = claim.budgets if claim.reserve_micros else ()
                keys += caps
                keys += (self._budget_keys(budget.account)[1] for budget in budgets)
                ttl = math.ceil(claim.hold_s * 1000) + MARGIN_MS
                args += (ticket.hold, repr(now + claim.hold_s), len(caps), len(budgets), ttl)
            await self._run(self._renew, keys, args)
            for ticket in batch:
                ticket.expiry = expiry = now + ticket.claim.hold_s
                for budget in ticket.claim.budgets:
                    held = self._open.get(budget.account, {})
                    if ticket.hold in held:  # what a sync gives back after a loss
                        held[ticket.hold] = (held[ticket.hold][0], expiry)

    async def accounts(self, accounts: Sequence[str]) -> list[AccountState]:
        """Spend and unexpired reservations of ``accounts`` now (missing ones as zero); one
        Redis lost is seeded first, as admission would."""
        if not accounts:
            return []
        states = await self._read(accounts, sync=True)
        return [states[name] for name in accounts]

    async def _read(self, names: Sequence[str], *, sync: bool) -> dict[str, AccountState]:
        """The states ``ACCOUNTS`` gives of those of ``names`` seeded and of an epoch this
        process is synced with, the rest synced (``sync``) or left out. An account with
        nothing to seed it from (no store, never seen here, no carry) is empty: zero."""
        keys = [key for name in names for key in self._budget_keys(name)]
        reply: list[list[str | None]] = await self._run(
            self._accounts, keys, [repr(float(self._clock()))]
        )
        states: dict[str, AccountState] = {}
        behind: list[str] = []
        for name, (spent, reserved, epoch, carry, *parts) in zip(names, reply, strict=True):
            if spent is not None and epoch is not None:
                floor, base, earlier = cast(list[str], parts)
                if self._observe(name, spent, epoch, floor):
                    known = self._learned(name, int(floor), _tally(base, earlier))
                    if not known.behind():
                        states[name] = AccountState(
                            name, int(spent), int(reserved or 0), known.tally()
                        )
                        continue
            elif self._persisted is None and name not in self._known and carry is None:
                states[name] = AccountState(name, 0, int(reserved or 0))
                continue
            behind.append(name)
        if behind and sync:
            states.update(await self._sync_once(behind))
        return states

    def unchecked(self, claim: Claim) -> Ticket:
        """A ticket under a hold id of its own that holds nothing: its settlement (retried
        until Redis takes it) frees no slot and no reservation, and charges the buckets and
        budgets what the request used."""
        unheld = Claim(claim.request_id, claim.limits, 0, claim.budgets, 0, claim.hold_s)
        return _HeldTicket(unheld, hold=f"{claim.request_id}/{self._nonce}{self._next():x}")

    def known_spent(self, account: str) -> int | None:
        """The account's spend as this instance last saw it (admit, settle, accounts, seed)."""
        known = self._known.get(account)
        return None if known is None else known.spent

    async def seed(self, spent: Mapping[str, SpendTally]) -> None:
        """Accounts Redis does not hold yet start at their persisted spend and what this
        process knows of them; those it lost since this process last saw them take what it
        knows and its open reservations back; the others learn what it knows."""
        if spent:
            await self._sync(list(spent), spent)

    async def carry(self, carried: Mapping[str, int]) -> None:
        """Raise accounts' ``CARRIED`` part: a sync that gives it with all this process
        knows (those Redis does not hold are first seeded, as admission would seed them).
        Redis raises the part to the larger of the two and moves the spend by the gain, so
        replicas that carry the same change, late or twice, count it once."""
        names = sorted(carried)
        if not names:
            return
        await self._sync_once([name for name in names if name not in self._known])
        for name in names:
            known = self._known[name]
            known.earlier = known.earlier.merge(SpendTally(0, {CARRIED: carried[name]}))
        await self._sync(names, {})

    async def _sync_once(self, names: Sequence[str]) -> dict[str, AccountState]:
        """``_sync`` of ``names`` with their persisted spend, one at a time per account: a
        caller that finds one being synced waits for that and reads it after (after a loss,
        every request in flight finds the same accounts out of date)."""
        states: dict[str, AccountState] = {}
        for _ in range(_SYNC_TRIES):
            waiting = {self._syncing[name] for name in names if name in self._syncing}
            mine = [name for name in names if name not in self._syncing and name not in states]
            if mine:
                done = asyncio.get_running_loop().create_future()
                for name in mine:
                    self._syncing[name] = done
                try:
                    states.update(await self._sync(mine, await self._read_persisted(mine)))
                finally:
                    for name in mine:
                        del self._syncing[name]
                    done.set_result(None)
            for other in waiting:
                await other
            rest = [name for name in names if name not in states]
            if not rest:
                return states
            states.update(await self._read(rest, sync=False))
            if len(states) == len(names):
                return states
        raise LimiterUnavailable("budget accounts in Redis changed while being brought up to date")

    async def _read_persisted(self, names: list[str]) -> Mapping[str, SpendTally]:
        if self._persisted is None:
            return {}
        try:
            return await self._persisted(names)
        except Exception as exc:  # any failure of the store: the account cannot be seeded
            raise LimiterUnavailable(
                f"budget spend cannot be read from the store to seed Redis: {type(exc).__name__}"
            ) from exc

    async def _sync(
        self, names: list[str], persisted: Mapping[str, SpendTally]
    ) -> dict[str, AccountState]:
        """Run ``SYNC`` (limits/redis_scripts.py) for ``names``: seed those not held, give
        them all this process knows of them (and those lost since this process saw them its
        open reservations), and learn what Redis knows."""
        now = float(self._clock())
        keys: list[str] = []
        done_keys: list[str] = []
        args: list[str | int] = [repr(now), f"{self._nonce}{self._next():x}", len(names)]
        given: list[tuple[str, list[str]]] = []
        for name in names:
            keys += self._budget_keys(name)
            known = self._known.get(name)
            held = [(h, m, e) for h, (m, e) in self._open.get(name, {}).items() if e > now]
            args.append("" if known is None else known.epoch)
            for tally in (persisted.get(name, SpendTally()), _given(known)):
                args += (tally.base, len(tally.epochs))
                for epoch, micros in tally.epochs.items():
                    args += (epoch, micros)
            args.append(len(held))
            for hold, micros, expiry in held:
                args += (hold, micros, repr(expiry))
                done_keys.append(self._tag + "done:" + hold)
            given.append((name, [hold for hold, _, _ in held]))
        reply: list[list[str]] = await self._run(self._sync_script, keys + done_keys, args)
        states = {}
        settled_since: list[tuple[str, str]] = []
        for (name, holds), (spent, reserved, epoch, floor, base, earlier) in zip(
            given, reply, strict=True
        ):
            known = self._synced(name, epoch, int(spent), int(floor), _tally(base, earlier))
            states[name] = AccountState(name, int(spent), int(reserved), known.tally())
            still = self._open.get(name, {})
            settled_since += [(name, hold) for hold in holds if hold not in still]
        if settled_since:
            # Settled while the sync ran: if its settlement ran first, the sync gave back a
            # reservation no one will settle again.
            keys = [key for name, _ in settled_since for key in self._budget_keys(name)]
            await self._run(self._release, keys, [hold for _, hold in settled_since])
        return states

    def _synced(self, name: str, epoch: str, spent: int, floor: int, learned: SpendTally) -> _Known:
        """Redis holds ``name`` at ``epoch`` with the parts ``learned`` of the others (all
        this process gave among them): synced with it now."""
        known = self._known.get(name)
        own = spent - floor
        if known is None:
            known = self._known[name] = _Known(epoch, spent, own, floor, learned)
            return known
        if known.epoch != epoch:  # what it saw of the epoch it was synced with is a part now
            known.earlier = known.earlier.merge(SpendTally(0, {known.epoch: known.own}))
            known.epoch, known.spent, known.own, known.floor = epoch, spent, own, floor
        else:
            known.spent = max(known.spent, spent)
            known.own = max(known.own, own)
        return self._learned(name, floor, learned)

    def _learned(self, name: str, floor: int, learned: SpendTally) -> _Known:
        """Merge the parts Redis reported of ``name``'s epochs before its current one."""
        known = self._known[name]
        earlier = known.earlier.merge(learned)
        # A reply of this epoch that came while this process was not synced with it was kept
        # as one of the others': it is the epoch's own part.
        mine = earlier.epochs.get(known.epoch)
        if mine is not None:
            known.own = max(known.own, mine)
            earlier = SpendTally(
                earlier.base, {e: m for e, m in earlier.epochs.items() if e != known.epoch}
            )
        known.earlier = earlier
        known.floor = max(known.floor, floor)
        return known

    def prune(self, keep: Collection[str], periods: Collection[str] = ()) -> None:
        """Forget what this process saw of accounts not in ``keep`` that it holds nothing of,
        and its holds that have expired (Redis keeps the accounts themselves, of every
        period: ``periods`` is not needed here)."""
        now = float(self._clock())
        for name, held in list(self._open.items()):
            for hold in [h for h, (_, expiry) in held.items() if expiry <= now]:
                del held[hold]
            if not held:
                del self._open[name]
        for name in [n for n in self._known if n not in keep and n not in self._open]:
            del self._known[name]

    async def first_notice(self, name: str, ttl_s: int) -> bool:
        """Claim ``name`` with ``SET NX``: only the first replica to ask gets True."""
        try:
            return bool(await self._redis.set(self._tag + "notice:" + name, "1", nx=True, ex=ttl_s))
        except _UNAVAILABLE as exc:
            self._unavailable(exc)

    async def close(self) -> None:
        """Close the client and every pooled connection."""
        await self._redis.aclose()
        await self._pool.aclose()
