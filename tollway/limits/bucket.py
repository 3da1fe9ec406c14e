"""Token buckets with continuous refill, and a cap on concurrent requests.

A bucket holds up to ``capacity`` units and refills at ``capacity`` per ``period`` seconds
(TPM: tokens per 60 s; RPM: requests per 60 s). Time is passed in so tests and the Redis
backend share one notion of "now".
"""

from __future__ import annotations


class TokenBucket:
    """A continuously refilling bucket; ``level`` may go negative after settlement."""

    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, capacity: float, period_s: float, now: float) -> None:
        self.capacity = capacity
        self.rate = capacity / period_s
        self.level = capacity
        self.stamp = now

    def refill(self, now: float) -> float:
        """Bring the level up to ``now`` and return it."""
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now
        return self.level

    def resize(self, capacity: float) -> None:
        """Hold ``capacity`` a period, keeping the level (cut to the new capacity), as the
        Redis limiter does: the time since the last refill refills at the new rate."""
        self.rate = self.rate * capacity / self.capacity
        self.capacity = capacity
        self.level = min(self.level, capacity)

    def can_take(self, amount: float, now: float) -> bool:
        """Whether ``amount`` fits now (a request larger than capacity fits a full bucket)."""
        level = self.refill(now)
        return level >= min(amount, self.capacity)

    def take(self, amount: float) -> None:
        """Remove ``amount`` (call after ``can_take``)."""
        self.level -= amount

    def give_back(self, amount: float) -> None:
        """Return units (settlement found the estimate too high), never above capacity."""
        self.level = min(self.capacity, self.level + amount)

    def retry_after(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` would fit."""
        missing = min(amount, self.capacity) - self.refill(now)
        return 0.0 if missing <= 0 else missing / self.rate


class ConcurrencyCap:
    """At most ``limit`` requests in flight (``None``: no limit, still counted)."""

    __slots__ = ("in_flight", "limit")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.in_flight = 0

    def can_enter(self) -> bool:
        """Whether one more request may start."""
        return self.limit is None or self.in_flight < self.limit

    def enter(self) -> None:
        """Count one request in."""
        self.in_flight += 1

    def leave(self) -> None:
        """Count one request out."""
        if self.in_flight > 0:
            self.in_flight -= 1
