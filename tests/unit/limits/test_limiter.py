"""The in-memory limiter: buckets, concurrency, budgets, reservations and events."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from tollway.limits.bucket import TokenBucket
from tollway.limits.budget import MICRO, BudgetAccount, affordable_output, to_micros
from tollway.limits.events import BudgetEvent
from tollway.limits.memory import MemoryLimiter, RateSpec, Refusal, Ticket
from tollway.limits.periods import period_key, period_start


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_refills_continuously_and_says_when() -> None:
    bucket = TokenBucket(600, 60.0, now=0.0)
    assert bucket.can_take(600, 0.0)
    bucket.take(600)
    assert not bucket.can_take(10, 0.0)
    assert abs(bucket.retry_after(10, 0.0) - 1.0) < 1e-9
    assert bucket.can_take(10, 1.0)


def test_tpm_stops_a_looping_client_and_refill_lets_it_back() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock=clock)
    limits = [("key:k1", RateSpec(tpm=1000))]
    admitted = 0
    while isinstance(ticket := limiter.admit(limits, 300), Ticket):
        limiter.settle(ticket, 300, 0)
        admitted += 1
    assert admitted == 3
    assert isinstance(ticket, Refusal) and ticket.code == "rate_limit_exceeded"
    assert ticket.retry_after_s is not None and ticket.retry_after_s > 0
    clock.now += ticket.retry_after_s
    assert isinstance(limiter.admit(limits, 300), Ticket)


def test_settlement_gives_back_unused_tokens() -> None:
    limiter = MemoryLimiter(clock=Clock())
    limits = [("user:u", RateSpec(tpm=1000))]
    ticket = limiter.admit(limits, 900)
    assert isinstance(ticket, Ticket)
    assert isinstance(limiter.admit(limits, 200), Refusal)
    limiter.settle(ticket, 100, 0)
    assert isinstance(limiter.admit(limits, 800), Ticket)


def test_rpm_and_concurrency_caps() -> None:
    limiter = MemoryLimiter(clock=Clock())
    cap = [("team:t", RateSpec(max_concurrent=2))]
    first, second = limiter.admit(cap, 1), limiter.admit(cap, 1)
    assert isinstance(first, Ticket) and isinstance(second, Ticket)
    assert isinstance(limiter.admit(cap, 1), Refusal)
    limiter.settle(first, 1, 0)
    limiter.settle(first, 1, 0)  # idempotent: does not free a second slot
    assert isinstance(limiter.admit(cap, 1), Ticket)
    assert isinstance(limiter.admit(cap, 1), Refusal)
    rpm = [("model:m", RateSpec(rpm=2))]
    assert isinstance(limiter.admit(rpm, 0), Ticket)
    assert isinstance(limiter.admit(rpm, 0), Ticket)
    assert isinstance(limiter.admit(rpm, 0), Refusal)


def test_refusal_by_one_scope_holds_nothing_in_the_others() -> None:
    limiter = MemoryLimiter(clock=Clock())
    loose, tight = ("key:a", RateSpec(tpm=1000)), ("team:b", RateSpec(tpm=1000))
    assert isinstance(limiter.admit([tight], 600), Ticket)
    assert isinstance(limiter.admit([loose, tight], 500), Refusal)
    assert limiter.remaining("key:a") == (None, 1000.0)


def test_hundreds_of_concurrent_requests_never_exceed_the_budget() -> None:
    limiter = MemoryLimiter(clock=Clock())
    account = BudgetAccount("key", "k", "day", limit_micros=to_micros(0.05))
    worst = to_micros(0.001)
    rng = random.Random(7)

    async def one() -> bool:
        ticket = limiter.admit([], 10, [account], worst)
        if isinstance(ticket, Refusal):
            return False
        await asyncio.sleep(rng.random() / 100)
        # Some fail (nothing spent), the rest cost up to the worst case.
        actual = 0 if rng.random() < 0.2 else rng.randint(1, worst)
        limiter.settle(ticket, 10, actual)
        return True

    async def run() -> list[bool]:
        return await asyncio.gather(*(one() for _ in range(500)))

    results = asyncio.run(run())
    assert any(results) and not all(results)
    assert account.spent_micros <= account.limit_micros
    assert account.reserved_micros == 0


def test_threshold_events_fire_once_per_crossing() -> None:
    seen: list[BudgetEvent] = []
    limiter = MemoryLimiter(listeners=[seen.append], clock=Clock())
    account = BudgetAccount("team", "t", "month", limit_micros=MICRO)
    for _ in range(10):
        ticket = limiter.admit([], 0, [account], 100_000)
        assert isinstance(ticket, Ticket)
        limiter.settle(ticket, 0, 100_000)
    assert [e.threshold for e in seen] == [0.5, 0.8, 1.0]
    assert seen[-1].spent_usd == 1.0 and seen[-1].limit_usd == 1.0
    assert isinstance(limiter.admit([], 0, [account], 1), Refusal)


def test_shrink_computes_affordable_output() -> None:
    assert affordable_output(1000, 200, 2.0) == 400
    assert affordable_output(100, 200, 2.0) == 0


def test_periods_reset_at_the_configured_zone() -> None:
    tz = ZoneInfo("America/New_York")
    now = datetime(2026, 3, 8, 3, 30, tzinfo=UTC)  # still Mar 7 in New York
    assert period_key("day", now, tz) == "day:2026-03-07"
    assert period_key("week", now, tz) == "week:2026-03-02"
    assert period_key("month", now, tz) == "month:2026-03-01"
    assert period_key("total", now, tz) == "total"
    start = period_start("day", datetime(2026, 3, 9, 12, tzinfo=UTC), tz)
    assert start.utcoffset() is not None and start.utcoffset().total_seconds() == -4 * 3600
