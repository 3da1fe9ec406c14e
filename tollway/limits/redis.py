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
                                      reserved by each admitted request not settled yet
    {prefix}:holds:<account>   zset   hold id -> expiry of those reservations
    {prefix}:done:<hold id>    string a settlement of this hold has run (expires in a day)

The first segment after the tag names the kind of key, so no scope or account name
(which contain colons themselves) can make two kinds collide.

Why Lua. Admission must check every scope and budget and take from all of them only if
all pass; settlement must free, correct and account in one step. Each is one registered
script (``EVALSHA``): atomic in Redis, and exactly one round trip per admission and per
settlement (after Redis has the script; a restarted Redis costs one ``SCRIPT LOAD``).
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
slot or a reservation forever. The reserved total lives in the same hash as the
reservations it sums, so the two cannot drift apart.

Expiry of keys. Buckets expire a few minutes after they would be full again (a missing
bucket is a full one). Concurrency sets expire a few minutes after their last hold would.
Spend (and the reservation zsets, which the purge needs) never expire: a period's account
is a new key, and accounting must not be lost.

Failures. A connection error or timeout raises ``LimiterUnavailable`` (the stage applies
``fail_open``), with the URL's password masked. Commands are not retried here: an
admission that ran but whose reply was lost would take twice (its holds expire after
``hold_s``). Settlements are retried by ``LimitService`` (limits/service.py) until Redis
takes them, so spend is not lost; each marks its hold id in ``{prefix}:done:<hold>`` (kept
a day) as it runs, so a retry whose first reply was lost is a no-op, not a double charge.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from tollway.limits.backend import (
    AccountState,
    Claim,
    LimiterUnavailable,
    Refusal,
    Settled,
    Ticket,
)

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

# Helpers shared by the scripts. A bucket is {level, stamp}; a missing key is full at now.
_LUA_COMMON = """
local function num(x) return string.format('%.17g', x) end
local function int(x) return string.format('%d', x) end

local function load(key, capacity, now)
  local s = redis.call('HMGET', key, 'level', 'stamp')
  if not s[1] then return {level = capacity, stamp = now} end
  return {level = tonumber(s[1]), stamp = tonumber(s[2])}
end

local function refill(b, capacity, now)
  if now > b.stamp then
    b.level = math.min(capacity, b.level + (now - b.stamp) * (capacity / 60.0))
    b.stamp = now
  end
  return b.level
end

local function save(key, b, capacity, margin)
  redis.call('HSET', key, 'level', num(b.level), 'stamp', num(b.stamp))
  local ttl = margin
  if capacity > 0 and b.level < capacity then
    ttl = ttl + math.ceil((capacity - b.level) / (capacity / 60.0) * 1000)
  end
  redis.call('PEXPIRE', key, int(ttl))
end

-- Drop a budget's expired reservations and take them off its reserved total.
local function purge(spend, holds, now_s)
  local gone = redis.call('ZRANGEBYSCORE', holds, '-inf', now_s)
  if #gone == 0 then return end
  local total = 0
  for _, hold in ipairs(gone) do
    total = total + (tonumber(redis.call('HGET', spend, hold)) or 0)
    redis.call('HDEL', spend, hold)
  end
  redis.call('ZREMRANGEBYSCORE', holds, '-inf', now_s)
  if total ~= 0 then redis.call('HINCRBY', spend, 'reserved', int(-total)) end
end
"""

# KEYS: per scope i: rpm, tpm, conc (3i-2 .. 3i); then per budget j: spend, holds.
# ARGV: now, hold id, hold_s, tokens, reserve, nscopes, nbudgets, margin ms;
#   then per scope: rpm, tpm, max_concurrent ('' when unlimited); then per budget: limit.
# Returns {0, index, retry_after or false, remaining micros or false, spents}: refused by
#   scope (index <= nscopes) or budget (index - nscopes);
# or {1, {requests, tokens per scope ...}, least remaining micros or false, spents}.
_ADMIT = (
    _LUA_COMMON
    + """
local now_s = ARGV[1]
local now = tonumber(now_s)
local hold = ARGV[2]
local expiry = now + tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local reserve = tonumber(ARGV[5])
local nscopes = tonumber(ARGV[6])
local nbudgets = tonumber(ARGV[7])
local margin = tonumber(ARGV[8])

local buckets = {}
local function bucket(key, capacity)
  local b = buckets[key]
  if not b then
    b = load(key, capacity, now)
    buckets[key] = b
  end
  return b
end

for i = 1, nscopes do
  local rpm = tonumber(ARGV[6 + 3 * i])
  local tpm = tonumber(ARGV[7 + 3 * i])
  local cap = tonumber(ARGV[8 + 3 * i])
  if cap then
    redis.call('ZREMRANGEBYSCORE', KEYS[3 * i], '-inf', now_s)
    if redis.call('ZCARD', KEYS[3 * i]) >= cap then return {0, i, false, false, {}} end
  end
  if rpm then
    local amount = math.min(1, rpm)
    local missing = amount - refill(bucket(KEYS[3 * i - 2], rpm), rpm, now)
    if missing > 0 then return {0, i, num(missing / (rpm / 60.0)), false, {}} end
  end
  if tpm then
    local amount = math.min(tokens, tpm)
    local missing = amount - refill(bucket(KEYS[3 * i - 1], tpm), tpm, now)
    if missing > 0 then return {0, i, num(missing / (tpm / 60.0)), false, {}} end
  end
end

local base = 3 * nscopes
local argb = 8 + 3 * nscopes
local spents = {}
local least = false
for j = 1, nbudgets do
  local spend, holds = KEYS[base + 2 * j - 1], KEYS[base + 2 * j]
  purge(spend, holds, now_s)
  local state = redis.call('HMGET', spend, 'spent', 'reserved')
  local spent = state[1]
  if not spent then
    spent = '0'
    redis.call('HSET', spend, 'spent', 0)
  end
  spents[j] = spent
  local left = tonumber(ARGV[argb + j]) - tonumber(spent) - (tonumber(state[2]) or 0)
  if reserve > left then return {0, nscopes + j, false, int(math.max(0, left)), spents} end
  left = left - reserve
  if not least or left < least then least = left end
end

local remaining = {}
for i = 1, nscopes do
  local rpm = tonumber(ARGV[6 + 3 * i])
  local tpm = tonumber(ARGV[7 + 3 * i])
  local requests, left_tokens = false, false
  if tonumber(ARGV[8 + 3 * i]) then
    local conc = KEYS[3 * i]
    redis.call('ZADD', conc, num(expiry), hold)
    local ttl = math.ceil(tonumber(ARGV[3]) * 1000) + margin
    if redis.call('PTTL', conc) < ttl then redis.call('PEXPIRE', conc, int(ttl)) end
  end
  if rpm then
    local b = bucket(KEYS[3 * i - 2], rpm)
    b.level = b.level - 1
    save(KEYS[3 * i - 2], b, rpm, margin)
    requests = num(math.max(0, b.level))
  end
  if tpm then
    local b = bucket(KEYS[3 * i - 1], tpm)
    b.level = b.level - tokens
    save(KEYS[3 * i - 1], b, tpm, margin)
    left_tokens = num(math.max(0, b.level))
  end
  remaining[2 * i - 1] = requests
  remaining[2 * i] = left_tokens
end
if reserve > 0 then
  for j = 1, nbudgets do
    local spend, holds = KEYS[base + 2 * j - 1], KEYS[base + 2 * j]
    redis.call('HINCRBY', spend, hold, ARGV[5])
    redis.call('HINCRBY', spend, 'reserved', ARGV[5])
    redis.call('ZADD', holds, num(expiry), hold)
  end
end
if least then least = int(least) end
return {1, remaining, least, spents}
"""
)

# KEYS: per scope i: tpm, conc (2i-1, 2i); then per budget j: spend, holds; last: done.
# ARGV: now, hold id, extra tokens (actual - claimed), actual micros, nscopes, nbudgets,
#   margin ms; then per scope: tpm ('' when unlimited).
# Returns {1, spend after per budget...}, or {0} when this hold was settled already (a
# retried settlement whose first reply was lost must not count twice).
_SETTLE = (
    _LUA_COMMON
    + """
if not redis.call('SET', KEYS[#KEYS], '1', 'NX', 'EX', 86400) then
  return {0}
end
local now_s = ARGV[1]
local now = tonumber(now_s)
local hold = ARGV[2]
local extra = tonumber(ARGV[3])
local nscopes = tonumber(ARGV[5])
local nbudgets = tonumber(ARGV[6])
local margin = tonumber(ARGV[7])

for i = 1, nscopes do
  redis.call('ZREM', KEYS[2 * i], hold)
  local tpm = tonumber(ARGV[7 + i])
  if tpm and extra ~= 0 then
    local b = load(KEYS[2 * i - 1], tpm, now)
    if extra > 0 then
      b.level = b.level - extra
    else
      b.level = math.min(tpm, b.level - extra)
    end
    save(KEYS[2 * i - 1], b, tpm, margin)
  end
end

local after = {}
for j = 1, nbudgets do
  local spend, holds = KEYS[2 * nscopes + 2 * j - 1], KEYS[2 * nscopes + 2 * j]
  purge(spend, holds, now_s)
  local reserved = redis.call('HGET', spend, hold)
  if reserved then
    redis.call('HDEL', spend, hold)
    redis.call('HINCRBY', spend, 'reserved', int(-tonumber(reserved)))
    redis.call('ZREM', holds, hold)
  end
  after[j + 1] = redis.call('HINCRBY', spend, 'spent', ARGV[4])
end
after[1] = 1
return after
"""
)

# KEYS: per account: spend, holds. ARGV: now.
# Returns {spent or false (not held), reserved} per account.
_ACCOUNTS = (
    _LUA_COMMON
    + """
local out = {}
for j = 1, #KEYS / 2 do
  purge(KEYS[2 * j - 1], KEYS[2 * j], ARGV[1])
  local state = redis.call('HMGET', KEYS[2 * j - 1], 'spent', 'reserved')
  out[j] = {state[1], state[2] or '0'}
end
return out
"""
)

# KEYS: spend per account; ARGV: its persisted spend. Returns the spend Redis now holds.
_SEED = """
local out = {}
for j = 1, #KEYS do
  redis.call('HSETNX', KEYS[j], 'spent', ARGV[j])
  out[j] = redis.call('HGET', KEYS[j], 'spent')
end
return out
"""


@dataclass(slots=True)
class _HeldTicket(Ticket):
    """A ticket that also names its holds in Redis (request id, nonce, counter)."""

    hold: str = ""


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
    ) -> None:
        """Connect lazily to ``url``; waits for a pooled connection count as the timeout."""
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
        self._admit = self._redis.register_script(_ADMIT)
        self._settle = self._redis.register_script(_SETTLE)
        self._accounts = self._redis.register_script(_ACCOUNTS)
        self._seed = self._redis.register_script(_SEED)
        self._tag = "{" + prefix + "}:"
        self._clock = clock
        self._where = _masked(url)
        self._secret = _password(url)
        self._spent: dict[str, int] = {}
        self._nonce = secrets.token_hex(6)
        self._next = itertools.count(1).__next__

    def _unavailable(self, exc: BaseException) -> NoReturn:
        detail = f"{type(exc).__name__}: {exc}"
        if self._secret:
            detail = detail.replace(self._secret, "***")
        raise LimiterUnavailable(f"Redis limiter at {self._where} unavailable: {detail}") from exc

    async def _run(self, script: AsyncScript, keys: list[str], args: list[str | int]) -> Any:
        try:
            return await script(keys, args)
        except _UNAVAILABLE as exc:
            self._unavailable(exc)

    def _budget_keys(self, account: str) -> tuple[str, str]:
        return self._tag + "spend:" + account, self._tag + "holds:" + account

    async def admit(self, claim: Claim) -> Ticket | Refusal:
        """Take tokens and a request from every scope and reserve from every budget."""
        tag = self._tag
        hold = f"{claim.request_id}/{self._nonce}{self._next():x}"
        keys: list[str] = []
        args: list[str | int] = [
            repr(float(self._clock())),
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
        for budget in claim.budgets:
            keys += self._budget_keys(budget.account)
            args.append(budget.limit_micros)
        if not keys:
            return _HeldTicket(claim, hold=hold)  # nothing to check or take
        reply = await self._run(self._admit, keys, args)
        nscopes = len(claim.limits)
        spents: list[str] = reply[-1]
        for budget, spent in zip(claim.budgets, spents, strict=False):
            self._spent[budget.account] = int(spent)
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
        ticket = _HeldTicket(
            claim, budget_remaining_micros=None if least is None else int(least), hold=hold
        )
        for i, (scope, _) in enumerate(claim.limits):
            ticket.remaining[scope] = (_float(remaining[2 * i]), _float(remaining[2 * i + 1]))
        return ticket

    async def settle(self, ticket: Ticket, actual_tokens: int, actual_micros: int) -> list[Settled]:
        """Free the slots, correct the TPM buckets and account the cost; idempotent."""
        if ticket.settled:
            return []
        ticket.settled = True
        claim = ticket.claim
        tag = self._tag
        hold = ticket.hold if isinstance(ticket, _HeldTicket) else claim.request_id
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
        if not keys:
            return []
        keys.append(tag + "done:" + hold)
        reply: list[int] = await self._run(self._settle, keys, args)
        if not int(reply[0]):
            return []  # settled before: a retry after a lost reply
        settled: list[Settled] = []
        for budget, spent in zip(claim.budgets, reply[1:], strict=True):
            spent_after = int(spent)
            self._spent[budget.account] = spent_after
            settled.append(
                Settled(
                    budget.account, budget.limit_micros, spent_after - actual_micros, spent_after
                )
            )
        return settled

    async def accounts(self, accounts: Sequence[str]) -> list[AccountState]:
        """Spend and unexpired reservations of ``accounts`` now (missing ones as zero)."""
        if not accounts:
            return []
        keys = [key for name in accounts for key in self._budget_keys(name)]
        reply: list[list[str | None]] = await self._run(
            self._accounts, keys, [repr(float(self._clock()))]
        )
        states = []
        for name, (spent, reserved) in zip(accounts, reply, strict=True):
            if spent is not None:
                self._spent[name] = int(spent)
            states.append(AccountState(name, int(spent or 0), int(reserved or 0)))
        return states

    def unchecked(self, claim: Claim) -> Ticket:
        """A ticket under a hold id of its own that holds nothing: its settlement (retried
        until Redis takes it) frees no slot and no reservation, and charges the buckets and
        budgets what the request used."""
        unheld = Claim(claim.request_id, claim.limits, 0, claim.budgets, 0, claim.hold_s)
        return _HeldTicket(unheld, hold=f"{claim.request_id}/{self._nonce}{self._next():x}")

    def known_spent(self, account: str) -> int | None:
        """The account's spend as this instance last saw it (admit, settle, accounts, seed)."""
        return self._spent.get(account)

    async def seed(self, spent: dict[str, int]) -> None:
        """Accounts Redis does not hold yet start at their persisted spend."""
        if not spent:
            return
        names = list(spent)
        keys = [self._budget_keys(name)[0] for name in names]
        held: list[str] = await self._run(self._seed, keys, [spent[name] for name in names])
        for name, value in zip(names, held, strict=True):
            self._spent[name] = int(value)

    async def close(self) -> None:
        """Close the client and every pooled connection."""
        await self._redis.aclose()
        await self._pool.aclose()
