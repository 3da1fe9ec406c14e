"""What a limiter backend does, whichever keeps the state (memory or Redis).

Admission is one atomic step over every bucket, concurrency cap and budget that applies to
a request: all are checked first and only then taken from, so a refusal holds nothing.
Settlement is the other atomic step: buckets corrected to the actual tokens, the
concurrency slot freed, each budget's reservation replaced by the actual cost. Both
backends behave the same; ``tests/unit/limits`` and ``tests/integration/test_budgets.py``
run the same cases against each (Redis for real).

Budgets are named by *account* keys: ``{scope}:{scope_id}:{period key}`` (e.g.
``team:t1:month:2026-11-01``), so a new period is simply a new, empty account.
``make_limiter`` builds the backend ``limits.backend`` names.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from tollway.store.records import SpendTally

if TYPE_CHECKING:
    from tollway.auth.vault import Vault
    from tollway.config.schema import LimitsConfig
    from tollway.store import Store

MICRO = 1_000_000
# ``Claim``, ``BudgetClaim`` and ``Settled`` are made for every request under a limit and are
# read-only by convention, not frozen: a frozen dataclass sets each field through
# ``object.__setattr__``, which made them about four times as dear to build.
RefusalCode = Literal["rate_limit_exceeded", "budget_exceeded"]
CARRIED = "carried"
"""The part of an account's ``SpendTally`` carried over from its scope's accounts of other
periods when its budget's period changed (``Limiter.carry``); no epoch id looks like it."""


def to_micros(usd: float) -> int:
    """Dollars to integer micro-dollars, rounded up (a reservation never falls short)."""
    return int(-(-usd * MICRO // 1))


def nearest_micros(usd: float) -> int:
    """Dollars to the nearest micro-dollar: what a request is charged (budgets and the
    request log alike, so spend reports and budgets agree) and a budget's limit.

    Rounding up, as reservations do, turned float noise (``4.03 * 1e6`` is
    ``4030000.0000000005``) into one micro-dollar more. A cost rounded to nearest never passes
    the reservation rounded up from a worst case at least as large.
    """
    return round(usd * MICRO)


@dataclass(frozen=True, slots=True)
class RateSpec:
    """Limits of one scope (e.g. ``key:abc``); ``None`` means unlimited."""

    tpm: int | None = None
    rpm: int | None = None
    max_concurrent: int | None = None


@dataclass(slots=True)
class BudgetClaim:
    """One budget account a request reserves from, with its limit (micro-dollars)."""

    account: str
    limit_micros: int


@dataclass(slots=True)
class Claim:
    """Everything one request asks of the limiter at admission."""

    request_id: str
    limits: Sequence[tuple[str, RateSpec]] = ()
    tokens: int = 0
    budgets: Sequence[BudgetClaim] = ()
    reserve_micros: int = 0
    hold_s: float = 900.0
    """How long a reservation or concurrency slot may be held before it is presumed lost
    (a process that died mid-request); the Redis backend releases it after that."""


@dataclass(slots=True)
class Ticket:
    """What one admitted request holds, so settlement gives back exactly that."""

    claim: Claim
    remaining: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    """Per rate-limited scope: (requests, tokens) left after admission."""
    budget_remaining_micros: int | None = None
    """The least any of the request's budgets can still reserve after this admission."""
    settled: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why admission said no."""

    code: RefusalCode
    scope: str
    retry_after_s: float | None = None
    remaining_micros: int | None = None
    """For a budget refusal: what that budget could still reserve (the shrink policy)."""


@dataclass(frozen=True, slots=True)
class AccountState:
    """One budget account as the backend holds it now (micro-dollars)."""

    account: str
    spent_micros: int
    reserved_micros: int
    tally: SpendTally | None = field(default=None, compare=False)
    """The spend per epoch, as far as this process knows it (Redis); ``None``: all of it is
    ``spent_micros`` (memory, or an account no one has spent from)."""


@dataclass(slots=True)
class Settled:
    """A budget account after a settlement: spend before and after (threshold crossings)."""

    account: str
    limit_micros: int
    spent_before: int
    spent_after: int


class LimiterUnavailable(Exception):
    """The backend cannot be reached (Redis down); the stage applies ``fail_open``."""


class ImmediateLimiter(Protocol):
    """A backend whose state is in this process (memory): admission and settlement never
    wait, so they are plain calls, not coroutines."""

    def admit_now(self, claim: Claim) -> Ticket | Refusal:
        """``Limiter.admit``, at once."""
        ...

    def settle_now(self, ticket: Ticket, actual_tokens: int, actual_micros: int) -> list[Settled]:
        """``Limiter.settle``, at once."""
        ...


class Limiter(Protocol):
    """A limiter backend."""

    async def admit(self, claim: Claim) -> Ticket | Refusal:
        """Check and take, atomically, everything ``claim`` names."""
        ...

    async def settle(self, ticket: Ticket, actual_tokens: int, actual_micros: int) -> list[Settled]:
        """Correct to the actual usage and cost; idempotent."""
        ...

    async def accounts(self, accounts: Sequence[str]) -> list[AccountState]:
        """The current spend and reservations of budget accounts (missing ones as zero)."""
        ...

    def unchecked(self, claim: Claim) -> Ticket:
        """A ticket for a request let through while the backend was unreachable (fail-open):
        it holds nothing, and settling it charges what the request used."""
        ...

    def known_spent(self, account: str) -> int | None:
        """The account's spend as last seen by this process, without a round trip."""
        ...

    async def seed(self, spent: Mapping[str, SpendTally]) -> None:
        """Start accounts this backend does not hold yet at the given (persisted) spend."""
        ...

    async def carry(self, carried: Mapping[str, int]) -> None:
        """Raise each account's ``CARRIED`` part to the given micro-dollars (never lower it):
        the spend its scope's accounts of other periods recorded in its period, when its
        budget's period changed. A part of its own, so carrying again counts it once."""
        ...

    def prune(self, keep: Collection[str], periods: Collection[str] = ()) -> None:
        """Forget what this process holds of accounts not in ``keep`` (past periods, removed
        budgets) that no admitted request still holds; their spend is in the store. A
        backend whose spend lives in this process (memory) keeps the accounts of
        ``periods`` (the current period keys, e.g. ``day:2026-12-05``) too."""
        ...

    async def renew(self) -> None:
        """Keep the holds of this process's requests in flight from expiring (Redis: a hold
        expires only for a process that died mid-request); nothing for a backend whose holds
        never expire."""
        ...

    async def first_notice(self, name: str, ttl_s: int) -> bool:
        """Whether this process is the first of those sharing the backend to claim notice
        ``name`` (kept ``ttl_s`` seconds): a change every replica applies is told once."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def make_limiter(config: LimitsConfig, vault: Vault, store: Store | None = None) -> Limiter:
    """The configured backend; on Redis, accounts it does not hold are seeded from
    ``store``'s persisted spend."""
    from tollway.limits.memory import MemoryLimiter  # the backends build on this module

    if config.backend == "redis":
        from tollway.limits.redis import RedisLimiter  # redis-py only when used

        assert config.redis_url is not None  # the schema requires it
        return RedisLimiter(
            vault.reveal(config.redis_url),
            prefix=config.redis_prefix,
            socket_timeout=config.redis_timeout,
            persisted=None if store is None else store.limits.tallies,
        )
    return MemoryLimiter()
