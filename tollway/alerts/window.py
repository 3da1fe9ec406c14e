"""Sums per time bucket in a fixed ring: the window arithmetic both alert sources share.

Time is cut into buckets of ``width`` seconds, numbered ``int(now // width)``. A ring of
``size`` slots holds the newest ``size`` buckets, each slot remembering which bucket number
it holds, so adding is O(1) (a slot holding an older bucket is reset when reused) and a
sum over a range of bucket numbers skips slots that hold another bucket (nothing was
added in that bucket). Each slot has ``fields`` parallel sums (spend; attempts, errors,
fallbacks).

The clock is always passed in (``now``): callers use ``time.monotonic`` and tests give
plain numbers, so no test sleeps.
"""

from __future__ import annotations

from array import array

WINDOW_BUCKETS = 5
"""Buckets per alert window: a window's bucket is a fifth of it (5 min: 1-min buckets)."""


class Ring:
    """The newest ``size`` buckets of ``fields`` sums each."""

    __slots__ = ("first", "last", "numbers", "size", "sums")

    def __init__(self, size: int, fields: int, number: int) -> None:
        self.size = size
        self.numbers = array("q", [-1]) * size
        self.sums = [array("d", [0.0]) * size for _ in range(fields)]
        self.first = number
        """The first bucket anything was added to."""
        self.last = number
        """The newest bucket anything was added to."""

    def add(self, number: int, field: int, amount: float) -> None:
        """Add ``amount`` to ``field`` of bucket ``number`` (the current or a recent one)."""
        slot = number % self.size
        if self.numbers[slot] != number:
            if number < self.numbers[slot]:
                return  # older than anything the ring still holds
            self.numbers[slot] = number
            for sums in self.sums:
                sums[slot] = 0.0
        self.sums[field][slot] += amount
        if number > self.last:
            self.last = number

    def total(self, field: int, start: int, end: int) -> float:
        """The sum of ``field`` over buckets ``start`` .. ``end`` (both included)."""
        start = max(start, end - self.size + 1)
        numbers, sums, size = self.numbers, self.sums[field], self.size
        total = 0.0
        for number in range(start, end + 1):
            slot = number % size
            if numbers[slot] == number:
                total += sums[slot]
        return total


class Clock:
    """Bucket numbers and the seconds a window covers, for one bucket width."""

    __slots__ = ("width",)

    def __init__(self, window: float) -> None:
        self.width = window / WINDOW_BUCKETS

    def bucket(self, now: float) -> int:
        """The number of the bucket ``now`` falls in."""
        return int(now // self.width)

    def window_start(self, now: float) -> int:
        """The first bucket of the window ending at ``now`` (the current bucket included)."""
        return self.bucket(now) - WINDOW_BUCKETS + 1

    def covered(self, now: float) -> float:
        """Seconds the window's buckets cover up to ``now``: 4 whole buckets and the
        current one's elapsed part, so a rate over a partial bucket is not diluted."""
        return now - self.window_start(now) * self.width
