"""Limiter arithmetic: token buckets, budget periods and the shrink policy.

The backends themselves (memory and Redis, one behaviour) are tested together in
tests/integration/test_limiter_backends.py."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from tollway.limits.bucket import TokenBucket
from tollway.limits.budget import affordable_output
from tollway.limits.periods import period_end, period_key, period_start


def test_bucket_refills_continuously_and_says_when() -> None:
    bucket = TokenBucket(600, 60.0, now=0.0)
    assert bucket.can_take(600, 0.0)
    bucket.take(600)
    assert not bucket.can_take(10, 0.0)
    assert abs(bucket.retry_after(10, 0.0) - 1.0) < 1e-9
    assert bucket.can_take(10, 1.0)


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


def test_period_ends_at_the_next_start_in_the_zone() -> None:
    tz = ZoneInfo("America/New_York")
    now = datetime(2026, 3, 7, 20, 0, tzinfo=tz)  # the night before DST starts
    day_end = period_end("day", now, tz)
    assert day_end == datetime(2026, 3, 8, 0, 0, tzinfo=tz)
    assert period_end("week", now, tz) == datetime(2026, 3, 9, 0, 0, tzinfo=tz)
    assert period_end("month", datetime(2026, 12, 31, 23, tzinfo=tz), tz) == datetime(
        2027, 1, 1, tzinfo=tz
    )
    assert period_end("total", now, tz) is None
    # The period key changes exactly at the end.
    assert day_end is not None
    assert period_key("day", day_end, tz) == "day:2026-03-08"
