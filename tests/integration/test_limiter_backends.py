"""The limiter backends, one behaviour: every shared case runs against memory and Redis.

Both backends read a fake clock, so tests advance time instead of sleeping. Each Redis
test uses its own key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis.asyncio import Redis

from tests.support import free_port, redis_url, unique_prefix
from tollway.config.schema import LimitsConfig
from tollway.limits.backend import (
    AccountState,
    BudgetClaim,
    Claim,
    Limiter,
    LimiterUnavailable,
    RateSpec,
    Refusal,
    Settled,
    Ticket,
)
from tollway.limits.memory import MemoryLimiter
from tollway.limits.redis import RedisLimiter
from tollway.limits.service import LimitService
from tollway.store import SpendTally, Store

START = 1_800_000_000.25
"""A wall-clock-like start, so float precision is exercised as in production."""

SOCKET_TIMEOUT = 5.0
"""Generous: the test machine is shared and slow; the closed-port case uses the default."""


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


_ids = iter(range(1, 10**9))


def claim(
    *limits: tuple[str, RateSpec],
    tokens: int = 0,
    budgets: tuple[BudgetClaim, ...] = (),
    reserve: int = 0,
    hold_s: float = 900.0,
) -> Claim:
    """A claim with a fresh request id."""
    return Claim(f"req-{next(_ids)}", limits, tokens, budgets, reserve, hold_s)


def admitted(outcome: Ticket | Refusal) -> Ticket:
    assert isinstance(outcome, Ticket), outcome
    return outcome


def refused(outcome: Ticket | Refusal) -> Refusal:
    assert isinstance(outcome, Refusal), outcome
    return outcome


async def delete_keys(url: str, prefix: str) -> int:
    """Delete every key of ``prefix``; how many there were."""
    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match="{" + prefix + "}*", count=1000)]
        if keys:
            await client.delete(*keys)
        return len(keys)
    finally:
        await client.aclose()


@dataclass
class RedisPlace:
    """Where a Redis test keeps its keys, and a way to open limiters on them."""

    url: str
    prefix: str
    opened: list[RedisLimiter]

    def open(self, clock: Callable[[], float]) -> RedisLimiter:
        limiter = RedisLimiter(self.url, self.prefix, clock=clock, socket_timeout=SOCKET_TIMEOUT)
        self.opened.append(limiter)
        return limiter

    async def close(self) -> None:
        """Close the limiters and delete the keys."""
        for limiter in self.opened:
            await limiter.close()
        await delete_keys(self.url, self.prefix)


@pytest.fixture
async def redis_place() -> AsyncIterator[RedisPlace]:
    """A unique prefix on the test Redis; its keys are deleted and limiters closed after."""
    place = RedisPlace(redis_url(), unique_prefix("limiter"), [])
    try:
        yield place
    finally:
        await place.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Limiter]:
    """Each backend in turn, on the test's fake clock."""
    if request.param == "memory":
        yield MemoryLimiter(clock=clock)
        return
    place = RedisPlace(redis_url(), unique_prefix("limiter"), [])
    try:
        yield place.open(clock)
    finally:
        await place.close()


# --- Shared cases: the same assertions against both backends ---------------------------


async def test_tpm_stops_a_looping_client(limiter: Limiter, clock: FakeClock) -> None:
    scope = ("key:loop", RateSpec(tpm=1000))
    admissions = 0
    while True:
        outcome = await limiter.admit(claim(scope, tokens=300))
        if isinstance(outcome, Refusal):
            break
        admissions += 1
        assert await limiter.settle(outcome, 300, 0) == []
        assert admissions < 10, "the bucket never ran dry"
    assert admissions == 3
    assert outcome.code == "rate_limit_exceeded"
    assert outcome.scope == "key:loop"
    assert outcome.remaining_micros is None
    # 100 tokens left, 300 wanted, refill 1000/60 per second: 12 s.
    retry_after = outcome.retry_after_s
    assert retry_after is not None and retry_after == pytest.approx(12.0)
    clock.advance(retry_after * 0.9)
    refused(await limiter.admit(claim(scope, tokens=300)))
    clock.advance(retry_after * 0.1)
    ticket = admitted(await limiter.admit(claim(scope, tokens=300)))
    requests, tokens = ticket.remaining["key:loop"]
    assert requests is None and tokens == pytest.approx(0.0, abs=1e-6)


async def test_settlement_gives_back_unused_tokens(limiter: Limiter) -> None:
    scope = ("key:give", RateSpec(tpm=1000))
    big = admitted(await limiter.admit(claim(scope, tokens=900)))
    assert big.remaining["key:give"] == (None, 100.0)
    refusal = refused(await limiter.admit(claim(scope, tokens=200)))
    assert refusal.retry_after_s == pytest.approx(6.0)
    await limiter.settle(big, 100, 0)
    again = admitted(await limiter.admit(claim(scope, tokens=800)))
    assert again.remaining["key:give"] == (None, 100.0)
    refused(await limiter.admit(claim(scope, tokens=200)))
    # Using more than claimed takes the difference (the level may go below zero).
    await limiter.settle(again, 1000, 0)
    refusal = refused(await limiter.admit(claim(scope, tokens=1)))
    assert refusal.retry_after_s == pytest.approx((1 + 100) / (1000 / 60))


async def test_settlement_never_fills_above_capacity(limiter: Limiter, clock: FakeClock) -> None:
    scope = ("key:cap", RateSpec(tpm=1000))
    first = admitted(await limiter.admit(claim(scope, tokens=500)))
    second = admitted(await limiter.admit(claim(scope, tokens=400)))
    clock.advance(30)
    assert admitted(await limiter.admit(claim(scope))).remaining["key:cap"] == (None, 600.0)
    await limiter.settle(first, 0, 0)  # 500 back: 1100, held at 1000
    await limiter.settle(second, 0, 0)  # 400 more back: still 1000
    full = admitted(await limiter.admit(claim(scope, tokens=1000)))
    assert full.remaining["key:cap"] == (None, 0.0)
    refused(await limiter.admit(claim(scope, tokens=1)))


async def test_rpm_cap(limiter: Limiter, clock: FakeClock) -> None:
    scope = ("user:u", RateSpec(rpm=3))
    lefts = []
    for _ in range(3):
        ticket = admitted(await limiter.admit(claim(scope)))
        lefts.append(ticket.remaining["user:u"])
        await limiter.settle(ticket, 0, 0)
    assert lefts == [(2.0, None), (1.0, None), (0.0, None)]
    refusal = refused(await limiter.admit(claim(scope)))
    assert (refusal.code, refusal.scope) == ("rate_limit_exceeded", "user:u")
    assert refusal.retry_after_s == pytest.approx(20.0)
    clock.advance(20.0)
    admitted(await limiter.admit(claim(scope)))


async def test_concurrency_cap_and_idempotent_settle(limiter: Limiter) -> None:
    scope = ("key:conc", RateSpec(max_concurrent=2))
    first = admitted(await limiter.admit(claim(scope)))
    second = admitted(await limiter.admit(claim(scope)))
    assert first.remaining["key:conc"] == (None, None)
    refusal = refused(await limiter.admit(claim(scope)))
    assert refusal == Refusal("rate_limit_exceeded", "key:conc", None)
    await limiter.settle(first, 0, 0)
    assert first.settled
    third = admitted(await limiter.admit(claim(scope)))
    # Settling the same ticket again frees nothing: the cap is still full.
    assert await limiter.settle(first, 0, 0) == []
    refused(await limiter.admit(claim(scope)))
    await limiter.settle(second, 0, 0)
    await limiter.settle(third, 0, 0)
    admitted(await limiter.admit(claim(scope)))
    admitted(await limiter.admit(claim(scope)))


async def test_a_changed_limit_applies_from_the_next_request(
    limiter: Limiter, clock: FakeClock
) -> None:
    # A reload or ``PUT /admin/limits`` gives a scope a new spec. Memory kept the buckets and
    # cap it made at the scope's first request, so a lowered limit never applied there.
    for _ in range(3):
        await limiter.settle(
            admitted(await limiter.admit(claim(("key:c", RateSpec(rpm=100))))), 0, 0
        )
    lowered = ("key:c", RateSpec(rpm=5, max_concurrent=1))
    held = admitted(await limiter.admit(claim(lowered)))
    assert held.remaining["key:c"] == (4.0, None)  # the level cut to 5, never refilled
    refused(await limiter.admit(claim(lowered)))  # one in flight is the new cap
    await limiter.settle(held, 0, 0)
    for _ in range(4):
        await limiter.settle(admitted(await limiter.admit(claim(lowered))), 0, 0)
    refusal = refused(await limiter.admit(claim(lowered)))
    assert refusal.retry_after_s == pytest.approx(12.0)  # refilling at the new rate
    # Raised: room comes back at the new rate; taken away: no longer refused.
    clock.advance(1.0)
    admitted(await limiter.admit(claim(("key:c", RateSpec(rpm=60)))))
    for _ in range(3):
        admitted(await limiter.admit(claim(("key:c", RateSpec(tpm=1000)))))


async def test_a_refusal_takes_nothing_from_the_others(limiter: Limiter) -> None:
    key = ("key:k", RateSpec(tpm=1000, rpm=10, max_concurrent=1))
    team = ("team:t", RateSpec(tpm=500))
    budget = BudgetClaim("team:t:month:2026-11-01", 1000)
    admitted(await limiter.admit(claim(team, tokens=400)))  # team has 100 left
    # Refused by the team (the second scope): the key's bucket, slot and the budget keep all.
    refusal = refused(
        await limiter.admit(claim(key, team, tokens=300, budgets=(budget,), reserve=500))
    )
    assert (refusal.code, refusal.scope) == ("rate_limit_exceeded", "team:t")
    assert refusal.retry_after_s == pytest.approx(200 / (500 / 60))
    # Refused by the budget (after every scope passed): no scope gives anything either.
    refusal = refused(await limiter.admit(claim(key, tokens=300, budgets=(budget,), reserve=1001)))
    assert refusal == Refusal("budget_exceeded", budget.account, None, 1000)
    [state] = await limiter.accounts([budget.account])
    assert state == AccountState(budget.account, 0, 0)
    # A full bucket, a free slot, 10 requests and the whole budget are still there.
    ticket = admitted(await limiter.admit(claim(key, tokens=1000, budgets=(budget,), reserve=1000)))
    assert ticket.remaining == {"key:k": (9.0, 0.0)}
    assert ticket.budget_remaining_micros == 0
    # Refused by the concurrency cap of the first scope: the team's 100 tokens stay.
    refusal = refused(await limiter.admit(claim(key, team, tokens=100)))
    assert (refusal.scope, refusal.retry_after_s) == ("key:k", None)
    assert admitted(await limiter.admit(claim(team, tokens=100))).remaining == {
        "team:t": (None, 0.0)
    }


async def test_budgets_under_hundreds_of_concurrent_requests(limiter: Limiter) -> None:
    rng = random.Random(7)
    account = "team:busy:day:2026-11-02"
    wide = BudgetClaim("key:busy:total", 10**9)
    limit, reserve = 20_000, 200
    spent_by_admitted: list[int] = []
    refusals: list[Refusal] = []

    async def one() -> None:
        delay, fails, cost = rng.random() * 0.01, rng.random() < 0.2, rng.randint(0, reserve)
        await asyncio.sleep(rng.random() * 0.005)
        outcome = await limiter.admit(
            claim(
                ("key:busy", RateSpec(max_concurrent=400)),
                budgets=(wide, BudgetClaim(account, limit)),
                reserve=reserve,
            )
        )
        if isinstance(outcome, Refusal):
            refusals.append(outcome)
            return
        assert outcome.budget_remaining_micros is not None
        assert 0 <= outcome.budget_remaining_micros <= limit - reserve
        await asyncio.sleep(delay)
        actual = 0 if fails else cost
        settled = await limiter.settle(outcome, 0, actual)
        assert [s.spent_after - s.spent_before for s in settled] == [actual, actual]
        spent_by_admitted.append(actual)

    await asyncio.gather(*(one() for _ in range(500)))

    [wide_state, state] = await limiter.accounts([wide.account, account])
    assert state.reserved_micros == 0 and wide_state.reserved_micros == 0
    assert state.spent_micros == sum(spent_by_admitted) == wide_state.spent_micros
    assert state.spent_micros <= limit
    assert len(spent_by_admitted) + len(refusals) == 500
    assert len(spent_by_admitted) >= 100 and len(refusals) >= 50
    for refusal in refusals:
        assert (refusal.code, refusal.scope) == ("budget_exceeded", account)
        assert refusal.remaining_micros is not None and 0 <= refusal.remaining_micros < reserve
    assert limiter.known_spent(account) is not None


async def test_settled_values_known_spent_and_seed(limiter: Limiter) -> None:
    a = BudgetClaim("team:a:month:2026-11-01", 1000)
    b = BudgetClaim("user:b:month:2026-11-01", 5000)
    assert limiter.known_spent(a.account) is None
    nothing = admitted(await limiter.admit(claim(tokens=10, reserve=10)))
    assert (nothing.remaining, nothing.budget_remaining_micros) == ({}, None)
    assert await limiter.settle(nothing, 10, 10) == []
    first = admitted(await limiter.admit(claim(budgets=(a, b), reserve=100)))
    assert first.budget_remaining_micros == 900
    # The store has nothing of them (the limit service seeds every budget's account).
    await limiter.seed({a.account: SpendTally(), b.account: SpendTally()})
    assert limiter.known_spent(a.account) == 0
    second = admitted(await limiter.admit(claim(budgets=(a, b), reserve=100)))
    assert second.budget_remaining_micros == 800
    assert await limiter.accounts([a.account]) == [AccountState(a.account, 0, 200)]
    assert await limiter.settle(first, 0, 70) == [
        Settled(a.account, 1000, 0, 70),
        Settled(b.account, 5000, 0, 70),
    ]
    assert limiter.known_spent(a.account) == 70
    assert await limiter.settle(second, 0, 130) == [
        Settled(a.account, 1000, 70, 200),
        Settled(b.account, 5000, 70, 200),
    ]
    assert await limiter.settle(second, 0, 130) == []
    assert limiter.known_spent(b.account) == 200
    assert await limiter.accounts([a.account, b.account, "nobody"]) == [
        AccountState(a.account, 200, 0),
        AccountState(b.account, 200, 0),
        AccountState("nobody", 0, 0),
    ]
    assert limiter.known_spent("nobody") is None
    # Seed fills only what the backend does not hold yet.
    await limiter.seed(
        {a.account: SpendTally(999_999), "team:c:total": SpendTally(4_000_000_000_000_123)}
    )
    assert limiter.known_spent(a.account) == 200
    assert limiter.known_spent("team:c:total") == 4_000_000_000_000_123
    await limiter.seed({"team:c:total": SpendTally(1)})
    assert await limiter.accounts([a.account, "team:c:total"]) == [
        AccountState(a.account, 200, 0),
        AccountState("team:c:total", 4_000_000_000_000_123, 0),
    ]
    # Large spends stay exact integers through admission and settlement.
    c = BudgetClaim("team:c:total", 5_000_000_000_000_000)
    big = admitted(await limiter.admit(claim(budgets=(c,), reserve=7)))
    assert big.budget_remaining_micros == 5_000_000_000_000_000 - 4_000_000_000_000_123 - 7
    assert await limiter.settle(big, 0, 3) == [
        Settled(c.account, c.limit_micros, 4_000_000_000_000_123, 4_000_000_000_000_126)
    ]


async def test_backends_agree_on_a_random_workload() -> None:
    """Memory and Redis, fed the same random claims, give the same answers."""
    place = RedisPlace(redis_url(), unique_prefix("agree"), [])
    clock = FakeClock()
    memory, shared = MemoryLimiter(clock=clock), place.open(clock)
    rng = random.Random(11)
    specs = {
        "key:a": RateSpec(tpm=5000, rpm=30, max_concurrent=4),
        "team:t": RateSpec(tpm=12000),
        "model:m": RateSpec(rpm=50, max_concurrent=6),
    }
    budgets = [BudgetClaim("team:t:day:x", 30_000), BudgetClaim("key:a:total", 80_000)]
    held: list[tuple[Ticket, Ticket]] = []
    outcomes = 0
    try:
        for _ in range(400):
            if held and rng.random() < 0.45:
                m_ticket, r_ticket = held.pop(rng.randrange(len(held)))
                tokens, micros = rng.randint(0, 3000), rng.randint(0, 1500)
                assert await memory.settle(m_ticket, tokens, micros) == await shared.settle(
                    r_ticket, tokens, micros
                )
                continue
            clock.advance(rng.random() * 3)
            scopes = [s for s in specs.items() if rng.random() < 0.7]
            some = tuple(b for b in budgets if rng.random() < 0.6)
            request = claim(*scopes, tokens=rng.randint(0, 3000), budgets=some, reserve=1000)
            m_outcome, r_outcome = await memory.admit(request), await shared.admit(request)
            outcomes += 1
            if isinstance(m_outcome, Refusal):
                assert isinstance(r_outcome, Refusal)
                assert (r_outcome.code, r_outcome.scope) == (m_outcome.code, m_outcome.scope)
                assert r_outcome.remaining_micros == m_outcome.remaining_micros
                assert r_outcome.retry_after_s == pytest.approx(m_outcome.retry_after_s)
                continue
            assert isinstance(r_outcome, Ticket)
            assert r_outcome.budget_remaining_micros == m_outcome.budget_remaining_micros
            assert r_outcome.remaining.keys() == m_outcome.remaining.keys()
            for scope, expected in m_outcome.remaining.items():
                for got, want in zip(r_outcome.remaining[scope], expected, strict=True):
                    assert got == (None if want is None else pytest.approx(want))
            held.append((m_outcome, r_outcome))
        names = [b.account for b in budgets]
        assert await memory.accounts(names) == await shared.accounts(names)
        for name in names:
            assert memory.known_spent(name) == shared.known_spent(name)
        assert outcomes > 200
    finally:
        await place.close()


# --- Redis only ----------------------------------------------------------------------


async def test_expired_holds_no_longer_block(redis_place: RedisPlace) -> None:
    clock = FakeClock()
    limiter = redis_place.open(clock)
    scope = ("key:crashed", RateSpec(max_concurrent=1))
    budget = BudgetClaim("team:crashed:total", 1000)
    # A replica admits and dies: it never settles.
    lost_slot = admitted(await limiter.admit(claim(scope, hold_s=30)))
    lost_money = admitted(await limiter.admit(claim(budgets=(budget,), reserve=800, hold_s=30)))
    refused(await limiter.admit(claim(scope)))
    assert (
        refused(await limiter.admit(claim(budgets=(budget,), reserve=800))).remaining_micros == 200
    )
    assert await limiter.accounts([budget.account]) == [AccountState(budget.account, 0, 800)]
    clock.advance(29)
    refused(await limiter.admit(claim(scope)))
    clock.advance(1.5)
    # Admission itself purges the expired holds (no other call in between).
    slot = admitted(await limiter.admit(claim(scope)))
    money = admitted(await limiter.admit(claim(budgets=(budget,), reserve=800)))
    assert money.budget_remaining_micros == 200
    assert await limiter.accounts([budget.account]) == [AccountState(budget.account, 0, 800)]
    # The lost request settles late after all: its spend still counts, and freeing its
    # (expired) slot and reservation takes nothing from the live ones.
    assert await limiter.settle(lost_money, 0, 150) == [Settled(budget.account, 1000, 0, 150)]
    await limiter.settle(lost_slot, 0, 0)
    assert await limiter.accounts([budget.account]) == [AccountState(budget.account, 150, 800)]
    refused(await limiter.admit(claim(scope)))
    await limiter.settle(slot, 0, 0)
    await limiter.settle(money, 0, 800)
    admitted(await limiter.admit(claim(scope)))
    assert await limiter.accounts([budget.account]) == [AccountState(budget.account, 950, 0)]


async def test_a_live_replica_renews_the_holds_of_its_requests_in_flight(
    redis_place: RedisPlace,
) -> None:
    clock = FakeClock()
    live, other = redis_place.open(clock), redis_place.open(clock)
    scope = ("key:long", RateSpec(max_concurrent=1))
    budget = BudgetClaim("team:long:total", 1000)
    running = admitted(await live.admit(claim(scope, budgets=(budget,), reserve=800, hold_s=30)))
    done = admitted(await live.admit(claim(budgets=(budget,), reserve=100, hold_s=30)))
    await live.settle(done, 0, 50)
    for _ in range(4):  # two minutes: four times the hold, renewed past half of it each time
        clock.advance(10)
        await live.renew()  # nothing is due before half the hold
        clock.advance(10)
        await live.renew()
        # Still held: no other replica gets the slot or what the request reserved.
        refused(await other.admit(claim(scope)))
        assert refused(await other.admit(claim(budgets=(budget,), reserve=200))).remaining_micros
        assert await other.accounts([budget.account]) == [AccountState(budget.account, 50, 800)]
    # A settled hold is not brought back, and the request's own settlement frees the rest.
    await live.settle(running, 0, 700)
    await live.renew()
    assert await other.accounts([budget.account]) == [AccountState(budget.account, 750, 0)]
    admitted(await other.admit(claim(scope)))
    # A request whose replica stops renewing (it died) still expires.
    lost = admitted(await other.admit(claim(budgets=(budget,), reserve=200, hold_s=30)))
    assert lost.budget_remaining_micros == 50
    clock.advance(31)
    assert await other.accounts([budget.account]) == [AccountState(budget.account, 750, 0)]


async def test_replicas_share_budget_and_bucket(redis_place: RedisPlace) -> None:
    clock = FakeClock()
    one, two = redis_place.open(clock), redis_place.open(clock)
    scope = ("key:shared", RateSpec(tpm=1000))
    budget = BudgetClaim("team:shared:total", 1000)
    first = admitted(await one.admit(claim(scope, tokens=700, budgets=(budget,), reserve=600)))
    refusal = refused(await two.admit(claim(scope, tokens=700)))
    assert refusal.retry_after_s == pytest.approx(400 / (1000 / 60))
    assert refused(await two.admit(claim(budgets=(budget,), reserve=600))) == Refusal(
        "budget_exceeded", budget.account, None, 400
    )
    assert two.known_spent(budget.account) == 0
    await one.settle(first, 100, 250)  # 600 tokens and 350 micros come back
    assert two.known_spent(budget.account) == 0  # no round trip: still the last it saw
    second = admitted(await two.admit(claim(scope, tokens=700, budgets=(budget,), reserve=600)))
    assert second.remaining == {"key:shared": (None, 200.0)}
    assert second.budget_remaining_micros == 150
    assert two.known_spent(budget.account) == 250


async def test_a_retried_settlement_is_not_counted_twice(redis_place: RedisPlace) -> None:
    # LimitService retries a settlement Redis did not answer; if the first one did run
    # (only its reply was lost), the retry must change nothing.
    limiter = redis_place.open(FakeClock())
    budget = BudgetClaim("key:retry:total", 10_000)
    scope = ("key:retry", RateSpec(tpm=1000, max_concurrent=1))
    ticket = admitted(await limiter.admit(claim(scope, tokens=500, budgets=(budget,), reserve=900)))
    first = await limiter.settle(ticket, 100, 300)
    assert [(s.spent_before, s.spent_after) for s in first] == [(0, 300)]
    ticket.settled = False  # as if the reply had been lost
    assert await limiter.settle(ticket, 100, 300) == []
    (state,) = await limiter.accounts([budget.account])
    assert (state.spent_micros, state.reserved_micros) == (300, 0)
    again = admitted(await limiter.admit(claim(scope, tokens=100)))
    assert again.remaining["key:retry"] == (None, 800.0)  # 100 used, not 200


async def test_a_settlement_redis_cannot_take_is_retried_by_the_service(
    redis_place: RedisPlace,
) -> None:
    # LimitService keeps a settlement that failed for want of Redis and settles it at its
    # next flush; the spend and the reservation end where one settlement puts them.
    live = redis_place.open(time.time)
    budget = BudgetClaim("key:later:total", 10_000)
    ticket = admitted(await live.admit(claim(budgets=(budget,), reserve=900)))
    dead = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0", redis_place.prefix)
    service = LimitService(LimitsConfig(), dead, None)
    try:
        await service.settle(ticket, 0, 300)  # Redis unreachable: queued, not lost
        (state,) = await live.accounts([budget.account])
        assert (state.spent_micros, state.reserved_micros) == (0, 900)
        service.limiter = live  # Redis answers again
        await service.flush()
        await service.flush()  # nothing left to settle a second time
    finally:
        await dead.close()
    (state,) = await live.accounts([budget.account])
    assert (state.spent_micros, state.reserved_micros) == (300, 0)


async def test_unreachable_redis_is_unavailable_promptly() -> None:
    password = "s3cret-pass"
    url = f"redis://user:{password}@127.0.0.1:{free_port()}/0"
    limiter = RedisLimiter(url, unique_prefix("down"))
    budget = BudgetClaim("team:down:total", 1000)
    ticket = Ticket(Claim("req-down", (("key:down", RateSpec(tpm=10)),), 5, (budget,), 10))
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: limiter.admit(claim(("key:down", RateSpec(tpm=10)), tokens=5)),
        lambda: limiter.settle(ticket, 5, 10),
        lambda: limiter.accounts([budget.account]),
        lambda: limiter.seed({budget.account: SpendTally(1)}),
    ]
    try:
        for call in calls:
            started = time.monotonic()
            with pytest.raises(LimiterUnavailable) as raised:
                await call()
            assert time.monotonic() - started < 2.0
            message = str(raised.value)
            assert password not in message
            assert "127.0.0.1" in message and "***" in message
    finally:
        await limiter.close()


async def test_key_layout_and_expiry(redis_place: RedisPlace) -> None:
    clock = FakeClock()
    limiter = redis_place.open(clock)
    budget = BudgetClaim("team:keys:month:2026-11-01", 10_000)
    spec = RateSpec(tpm=600, rpm=60, max_concurrent=5)
    ticket = admitted(
        await limiter.admit(claim(("key:lay", spec), tokens=300, budgets=(budget,), reserve=40))
    )
    tag = "{" + redis_place.prefix + "}:"
    client = Redis.from_url(redis_place.url, decode_responses=True)
    try:
        keys = sorted([key async for key in client.scan_iter(match=tag + "*")])
        assert keys == sorted(
            tag + kind
            for kind in (
                "conc:key:lay",
                "holds:" + budget.account,
                "rpm:key:lay",
                "spend:" + budget.account,
                "tpm:key:lay",
            )
        )
        # The TPM bucket is full again in 30 s and lives a few minutes beyond that.
        assert 300_000 < await client.pttl(tag + "tpm:key:lay") <= 330_000
        assert 300_000 < await client.pttl(tag + "rpm:key:lay") <= 301_000
        # The slot lives until its hold (900 s) could have expired, plus the margin.
        assert 1_100_000 < await client.pttl(tag + "conc:key:lay") <= 1_200_000
        assert await client.pttl(tag + "spend:" + budget.account) == -1
        assert await client.pttl(tag + "holds:" + budget.account) == -1
        spend = await client.hgetall(tag + "spend:" + budget.account)
        assert spend.pop("spent") == "0" and spend.pop("reserved") == "40"
        # Seeded at admission (nothing persisted, nothing seen): a new epoch at a floor of 0.
        # No spend before it: a base of 0 and no earlier epochs.
        epoch = spend.pop("epoch")
        assert spend.pop("floor") == "0" and spend.pop("base") == "0"
        assert spend.pop("earlier") == ""
        [(hold, micros)] = spend.items()
        assert str(hold).startswith(ticket.claim.request_id + "/") and micros == "40"
        await limiter.settle(ticket, 300, 40)
        assert await client.zcard(tag + "conc:key:lay") == 0
        assert await client.hgetall(tag + "spend:" + budget.account) == {
            "spent": "40",
            "reserved": "0",
            "epoch": epoch,
            "floor": "0",
            "base": "0",
            "earlier": "",
        }
    finally:
        await client.aclose()
    # What stays: the two buckets, the spend and the settlement's done-marker (no holds
    # left, so no conc or holds key).
    assert await delete_keys(redis_place.url, redis_place.prefix) == 4


# --- Redis losing its data mid-period --------------------------------------------------
#
# ``delete_keys`` of the test's prefix is what a restart without persistence, FLUSHALL or a
# failover to an empty replica does to this gateway's keys (without wiping the other tests'
# keys on the shared Redis; tests/integration/test_budgets_redis_loss.py does FLUSHALL and a
# restart for real, on a Redis of its own).


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A real store (SQLite) whose persisted spend seeds the accounts Redis lost."""
    opened = Store(f"sqlite+aiosqlite:///{tmp_path}/spend.db")
    await opened.open(migrate=True)
    try:
        yield opened
    finally:
        await opened.close()


def replica(place: RedisPlace, clock: Callable[[], float], store: Store) -> RedisLimiter:
    """A gateway replica's limiter: Redis shared, spend persisted in ``store``."""
    limiter = RedisLimiter(
        place.url, place.prefix, clock=clock, socket_timeout=SOCKET_TIMEOUT,
        persisted=store.limits.tallies,
    )  # fmt: skip
    place.opened.append(limiter)
    return limiter


async def spend_now(limiter: RedisLimiter, account: str) -> tuple[int, int]:
    (state,) = await limiter.accounts([account])
    return state.spent_micros, state.reserved_micros


async def flush(limiter: RedisLimiter, store: Store, account: str) -> None:
    """Write the account's spend to the store as ``LimitService.flush`` does."""
    (state,) = await limiter.accounts([account])
    assert state.tally is not None
    await store.limits.record_spend({account: state.tally})


async def test_an_account_redis_lost_starts_again_from_its_spend_not_from_zero(
    redis_place: RedisPlace, store: Store
) -> None:
    # The first admission after the loss wrote spent=0 for the account, and the store's
    # persisted spend could never be seeded over it: the period's spend so far was forgotten.
    clock = FakeClock()
    one = replica(redis_place, clock, store)
    budget = BudgetClaim("key:lost:day:2026-11-02", 1000)
    for settled in range(3):
        if settled == 2:
            await flush(one, store, budget.account)  # 300 written two requests ago
        ticket = admitted(await one.admit(claim(budgets=(budget,), reserve=200)))
        await one.settle(ticket, 0, 150)
    await delete_keys(redis_place.url, redis_place.prefix)
    # A replica that never saw the account: the store's 300 at least, never 0.
    fresh = replica(redis_place, clock, store)
    ticket = admitted(await fresh.admit(claim(budgets=(budget,), reserve=200)))
    assert ticket.budget_remaining_micros == 1000 - 300 - 200
    # The replica that settled last saw 450: the 150 the store had not been told of come back.
    refusal = refused(await one.admit(claim(budgets=(budget,), reserve=400)))
    assert refusal.remaining_micros == 1000 - 450 - 200
    await fresh.settle(ticket, 0, 100)
    assert await spend_now(one, budget.account) == (550, 0)
    assert await spend_now(fresh, budget.account) == (550, 0)


async def test_replicas_racing_to_seed_a_lost_account_count_its_spend_once(
    redis_place: RedisPlace, store: Store
) -> None:
    clock = FakeClock()
    one, two = replica(redis_place, clock, store), replica(redis_place, clock, store)
    budget = BudgetClaim("team:race:total", 10_000)
    for limiter, cost in ((one, 300), (two, 200), (one, 100)):  # one last saw 600, two 500
        ticket = admitted(await limiter.admit(claim(budgets=(budget,), reserve=100)))
        await limiter.settle(ticket, 0, cost)
        if cost == 300:
            await flush(one, store, budget.account)
    await delete_keys(redis_place.url, redis_place.prefix)
    # Both find the account gone at once, and each charges a little after seeding it.
    tickets = await asyncio.gather(
        *(r.admit(claim(budgets=(budget,), reserve=100)) for r in (one, two, two, one))
    )
    for limiter, ticket in zip((one, two, two, one), tickets, strict=True):
        await limiter.settle(admitted(ticket), 0, 10)
    assert await spend_now(one, budget.account) == (640, 0)
    # The replica that saw less comes back first after a second loss: it seeds from what it
    # saw (640 now, after its own settlements), the other adds only what it saw beyond that.
    ticket = admitted(await two.admit(claim(budgets=(budget,), reserve=100)))
    await two.settle(ticket, 0, 5)  # two saw 645
    ticket = admitted(await one.admit(claim(budgets=(budget,), reserve=100)))
    await one.settle(ticket, 0, 5)  # one saw 650
    await delete_keys(redis_place.url, redis_place.prefix)
    ticket = admitted(await two.admit(claim(budgets=(budget,), reserve=100)))
    await two.settle(ticket, 0, 7)
    assert await spend_now(two, budget.account) == (652, 0)  # 645 + 7: all it knows
    assert await spend_now(one, budget.account) == (657, 0)  # one's 650, then two's 7
    assert await spend_now(two, budget.account) == (657, 0)


async def test_a_settlement_on_a_lost_account_is_kept_until_it_is_seeded(
    redis_place: RedisPlace, store: Store
) -> None:
    clock = FakeClock()
    one = replica(redis_place, clock, store)
    budget = BudgetClaim("user:carry:month:2026-11-01", 1000)
    first = admitted(await one.admit(claim(budgets=(budget,), reserve=300)))
    await one.settle(first, 0, 250)
    in_flight = admitted(await one.admit(claim(budgets=(budget,), reserve=300)))
    await flush(one, store, budget.account)
    await delete_keys(redis_place.url, redis_place.prefix)
    # Settled on the lost account: its cost waits in the carry, and seeding adds it.
    assert await one.settle(in_flight, 0, 120) == [Settled(budget.account, 1000, 250, 370)]
    other = replica(redis_place, clock, store)
    assert await spend_now(other, budget.account) == (370, 0)


async def test_requests_in_flight_when_redis_lost_their_reservations_hold_them_again(
    redis_place: RedisPlace, store: Store
) -> None:
    # Requests admitted before the loss are still running: their reservations must count
    # again, or the budget admits more than it can pay for.
    clock = FakeClock()
    one, two = replica(redis_place, clock, store), replica(redis_place, clock, store)
    budget = BudgetClaim("org:*:day:2026-11-02", 1000)
    in_flight = admitted(await one.admit(claim(budgets=(budget,), reserve=700)))
    await delete_keys(redis_place.url, redis_place.prefix)
    # The replica holding it gives it back with its next admission, before that is checked.
    assert refused(await one.admit(claim(budgets=(budget,), reserve=400))).remaining_micros == 300
    assert await spend_now(two, budget.account) == (0, 700)
    refused(await two.admit(claim(budgets=(budget,), reserve=400)))
    await one.settle(in_flight, 0, 650)
    assert await spend_now(two, budget.account) == (650, 0)
    admitted(await two.admit(claim(budgets=(budget,), reserve=350)))
    # Given back once however often it is synced (every reconcile seeds).
    await one.seed({budget.account: SpendTally(0)})
    await one.seed({budget.account: SpendTally(0)})
    assert await spend_now(two, budget.account) == (650, 350)


async def test_an_unreadable_store_makes_a_lost_account_unavailable_not_zero(
    redis_place: RedisPlace, tmp_path: Path
) -> None:
    broken = Store(f"sqlite+aiosqlite:///{tmp_path}/never-migrated.db")  # no tables
    limiter = replica(redis_place, FakeClock(), broken)
    budget = BudgetClaim("key:nostore:total", 1000)
    try:
        with pytest.raises(LimiterUnavailable) as raised:
            await limiter.admit(claim(budgets=(budget,), reserve=10))
        assert "store" in str(raised.value)
    finally:
        await broken.close()
    assert await delete_keys(redis_place.url, redis_place.prefix) == 0  # nothing taken


async def test_memory_forgets_accounts_no_budget_charges_once_no_request_holds_them() -> None:
    memory = MemoryLimiter(clock=FakeClock())
    past, current = (
        BudgetClaim("key:k:day:2026-11-01", 1000),
        BudgetClaim("key:k:day:2026-11-02", 1000),
    )
    late = admitted(await memory.admit(claim(budgets=(past,), reserve=100)))
    settled = admitted(await memory.admit(claim(budgets=(past, current), reserve=100)))
    await memory.settle(settled, 0, 40)
    memory.prune({current.account})
    # Still held by a request admitted before midnight: kept, so its settlement finds it.
    assert memory.known_spent(past.account) == 40
    await memory.settle(late, 0, 60)
    assert memory.known_spent(past.account) == 100
    memory.prune({current.account})
    assert memory.known_spent(past.account) is None
    assert memory.known_spent(current.account) == 40


async def test_memory_adds_the_stores_spend_to_an_account_admission_made_before_seeding() -> None:
    # A budget a reload adds (removed before a restart, say) is in force at once, while its
    # spend is still being read from the store: what admission charges meanwhile and the
    # store's spend both count, once.
    memory = MemoryLimiter(clock=FakeClock())
    account = BudgetClaim("team:t:day:2026-11-02", 1000)
    early = admitted(await memory.admit(claim(budgets=(account,), reserve=100)))
    await memory.settle(early, 0, 30)
    assert memory.unseeded() == [account.account]
    await memory.seed({account.account: SpendTally(500)})
    assert memory.known_spent(account.account) == 530
    assert memory.unseeded() == []
    await memory.seed({account.account: SpendTally(500)})  # a second read adds nothing
    assert memory.known_spent(account.account) == 530


async def test_flush_writes_a_past_periods_spend_to_the_store_then_forgets_it(
    store: Store,
) -> None:
    # A day budget's account of every past day stayed in memory for the life of the process.
    config = LimitsConfig.model_validate(
        {"budgets": [{"scope": "key", "id": "k", "period": "day", "limit_usd": 1}]}
    )
    service = LimitService(config, MemoryLimiter(), store)
    [budget] = service.book.every_budget()
    current, past = service.account(budget), "key:k:day:2000-01-01"
    assert service.immediate is not None
    for account in (past, current):
        ticket = admitted(
            service.immediate.admit_now(
                claim(budgets=(BudgetClaim(account, budget.limit_micros),), reserve=50)
            )
        )
        service.settle_now(ticket, 0, 40, [budget])
    await service.flush()
    assert await store.limits.spend([past, current]) == {past: 40, current: 40}
    assert service.limiter.known_spent(past) is None
    assert service.limiter.known_spent(current) == 40


# --- Successive losses: the spend of every epoch counted once ---------------------------


async def spend(limiter: RedisLimiter, account: str, micros: int) -> None:
    """Admit and settle one request costing ``micros`` on ``account``."""
    budget = BudgetClaim(account, 10**12)
    ticket = admitted(await limiter.admit(claim(budgets=(budget,), reserve=micros)))
    await limiter.settle(ticket, 0, micros)


async def test_a_replica_giving_an_older_epoch_after_a_newer_one_loses_no_spend(
    redis_place: RedisPlace,
) -> None:
    # One replica saw more of epoch E0 than the one that seeded E1 from its own view, and
    # never synced with E1 before Redis lost it again: "the most any replica saw" took the
    # larger of 300 (E0) and 1100 (E1), losing what E0 had beyond E1's floor.
    clock = FakeClock()
    one, two = redis_place.open(clock), redis_place.open(clock)
    account = "key:k:month:2026-12-01"
    await spend(one, account, 100)
    await spend(two, account, 200)  # E0: one saw 100, two saw 300
    await delete_keys(redis_place.url, redis_place.prefix)
    await spend(one, account, 1000)  # E1 seeded at one's 100, 1100 after
    await delete_keys(redis_place.url, redis_place.prefix)
    assert await spend_now(two, account) == (300, 0)  # all it knows: it seeds E2 at that
    assert await spend_now(one, account) == (1300, 0)  # E0's 300 and E1's 1000
    assert await spend_now(two, account) == (1300, 0)


class HeldReplies:
    """A TCP proxy to the test Redis that can hold back the next reply it carries, on
    whichever connection: Redis has run the command, its caller does not know yet."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._parts = parts
        self._server: asyncio.Server | None = None
        self._hold_next = False
        self.reached = asyncio.Event()
        self.released = asyncio.Event()

    async def start(self) -> str:
        """Listen; the URL to give the limiter whose replies may be held."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return urlunsplit(self._parts._replace(netloc=f"127.0.0.1:{port}"))

    def hold_next(self) -> None:
        self._hold_next = True
        self.reached.clear()
        self.released.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)

        async def pump(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, down: bool
        ) -> None:
            try:
                while data := await source.read(65536):
                    if down and self._hold_next:
                        self._hold_next = False
                        self.reached.set()
                        await self.released.wait()
                    sink.write(data)
                    await sink.drain()
            except ConnectionError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()


async def test_three_losses_late_replies_and_a_replica_that_died_count_every_epoch_once(
    redis_place: RedisPlace,
) -> None:
    clock = FakeClock()
    proxy = HeldReplies(redis_place.url)
    try:
        a, b = redis_place.open(clock), redis_place.open(clock)
        c = RedisLimiter(
            await proxy.start(), redis_place.prefix, clock=clock, socket_timeout=SOCKET_TIMEOUT
        )
        account = "team:t:month:2026-12-01"
        budget = BudgetClaim(account, 10**12)
        await spend(a, account, 100)
        await spend(b, account, 200)
        await spend(c, account, 50)  # E0: a saw 100, b 300, c 350
        in_flight = admitted(await b.admit(claim(budgets=(budget,), reserve=30)))
        late = admitted(await c.admit(claim(budgets=(budget,), reserve=50)))
        # c's settlement runs (E0 is 390), but its reply comes only after the loss.
        proxy.hold_next()
        settling = asyncio.create_task(c.settle(late, 0, 40))
        await proxy.reached.wait()
        await delete_keys(redis_place.url, redis_place.prefix)  # loss 1
        await spend(a, account, 1000)  # a seeds E1 at 100: 1100
        await spend(c, account, 5)  # c gives 350 of E0: 1355
        proxy.released.set()
        await settling  # the late reply tells c of 390 in E0: it gives that too
        assert await spend_now(b, account) == (1395, 30)
        await c.close()  # c dies: only what others learned of its raise is left
        await spend(a, account, 5)  # a sees E1's floor moved, and learns why: 1400
        await delete_keys(redis_place.url, redis_place.prefix)  # loss 2
        await b.settle(in_flight, 0, 20)  # kept in the carry: nothing holds the account
        await spend(b, account, 500)  # b seeds E2 at its 300 of E0 (320), 820 after
        await delete_keys(redis_place.url, redis_place.prefix)  # loss 3, a never saw E2
        await spend(b, account, 7)  # E3 seeded at b's 300 of E0 and 520 of E2: 827
        # a gives E0 as c left it (390) and its 1010 of E1.
        assert await spend_now(a, account) == (390 + 1010 + 520 + 7, 0)
        assert await spend_now(b, account) == (1927, 0)
        # Given again (every reconcile seeds), nothing is counted twice.
        await a.seed({account: SpendTally(0)})
        await b.seed({account: SpendTally(0)})
        assert await spend_now(redis_place.open(clock), account) == (1927, 0)
    finally:
        await proxy.close()


async def test_an_epoch_from_before_tallies_counts_its_floor_as_spend_before_it(
    redis_place: RedisPlace,
) -> None:
    # A hash written before tallies: no base, no earlier parts; its floor was the most a
    # replica knew of the spend before its epoch.
    account = "key:upgraded:total"
    client = Redis.from_url(redis_place.url, decode_responses=True)
    try:
        spend_key = "{" + redis_place.prefix + "}:spend:" + account
        await client.hset(spend_key, mapping={"spent": 500, "floor": 300, "epoch": "old"})
    finally:
        await client.aclose()
    clock = FakeClock()
    one = redis_place.open(clock)
    await spend(one, account, 10)
    assert await spend_now(one, account) == (510, 0)
    await delete_keys(redis_place.url, redis_place.prefix)
    # Seeded from what one learned: base 300 and the old epoch's 210.
    assert await spend_now(one, account) == (510, 0)
    assert await spend_now(redis_place.open(clock), account) == (510, 0)


async def test_a_notice_is_first_once_across_replicas_sharing_redis(
    redis_place: RedisPlace, clock: FakeClock
) -> None:
    # A budget limit changed by a reload or the admin API is applied by every replica; the
    # thresholds it passed are told by the one that claims the notice first.
    one, other = redis_place.open(clock), redis_place.open(clock)
    assert await one.first_notice("key:k:day:2026-12-05:0.8:500000", 60) is True
    assert await other.first_notice("key:k:day:2026-12-05:0.8:500000", 60) is False
    assert await other.first_notice("key:k:day:2026-12-05:0.5:500000", 60) is True
    assert await MemoryLimiter(clock=clock).first_notice("anything", 60) is True


async def test_requests_holding_a_removed_limit_settle_and_a_limit_put_back_counts_them(
    limiter: Limiter, clock: FakeClock
) -> None:
    # A reload takes a TPM limit and a concurrency cap away while requests hold tokens and
    # slots, then puts them back: the settlements must not fail nor free what was not held.
    limited = ("key:gone", RateSpec(tpm=1000, max_concurrent=2))
    first = admitted(await limiter.admit(claim(limited, tokens=600)))
    second = admitted(await limiter.admit(claim(limited, tokens=300)))
    removed = ("key:gone", RateSpec())
    for _ in range(3):  # nothing limits the scope now
        await limiter.settle(admitted(await limiter.admit(claim(removed, tokens=900))), 900, 0)
    await limiter.settle(first, 100, 0)  # gives tokens back to a limit taken away
    back = ("key:gone", RateSpec(tpm=1000, max_concurrent=2))
    third = admitted(await limiter.admit(claim(back, tokens=100)))
    # ``second`` still holds a slot: the cap put back counts it.
    refused(await limiter.admit(claim(back, tokens=1)))
    await limiter.settle(second, 300, 0)
    await limiter.settle(third, 100, 0)
    left = admitted(await limiter.admit(claim(back, tokens=1)))
    tokens = left.remaining["key:gone"][1]
    assert tokens is not None and 0 <= tokens <= 1000
    await limiter.settle(left, 1, 0)
    clock.advance(60.0)
    full = admitted(await limiter.admit(claim(back, tokens=1000)))
    assert full.remaining["key:gone"][1] == pytest.approx(0.0)


async def test_a_request_admitted_before_a_cap_was_set_does_not_free_anothers_slot(
    limiter: Limiter,
) -> None:
    # A reload sets ``max_concurrent`` on a scope while a request admitted without it runs:
    # its settlement freed the slot of a request admitted under the cap.
    before = admitted(await limiter.admit(claim(("key:capped", RateSpec(rpm=100)))))
    capped = ("key:capped", RateSpec(rpm=100, max_concurrent=1))
    under = admitted(await limiter.admit(claim(capped)))
    await limiter.settle(before, 0, 0)
    refused(await limiter.admit(claim(capped)))  # ``under`` still runs
    await limiter.settle(under, 0, 0)
    admitted(await limiter.admit(claim(capped)))
