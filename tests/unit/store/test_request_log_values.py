"""Request log values as the SQLite driver takes them: the same text SQLAlchemy would store."""

from __future__ import annotations

import datetime as dt
import random

from tollway.store.request_log import _SqliteTime


def test_the_first_time_may_be_any_second() -> None:
    before_1970 = dt.datetime(1969, 12, 31, 23, 59, 59, 250_000, tzinfo=dt.UTC)
    assert _SqliteTime()(before_1970) == "1969-12-31 23:59:59.250000"


def test_times_are_sqlalchemys_sqlite_text_in_any_order() -> None:
    text = _SqliteTime()
    start = dt.datetime(2026, 12, 31, 23, 59, 58, 999_990, tzinfo=dt.UTC)
    rng = random.Random(7)
    times = [start + dt.timedelta(microseconds=rng.randrange(3_000_000)) for _ in range(500)]
    times += [start.replace(microsecond=0), start.replace(second=59, microsecond=999_999)]
    times += [*sorted(times), dt.datetime(1999, 1, 2, 3, 4, 5, tzinfo=dt.UTC)]
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # either side of a negative timestamp
    times += [epoch - dt.timedelta(microseconds=500_000), epoch + dt.timedelta(microseconds=3)]
    for at in times:
        assert text(at) == at.replace(tzinfo=None).isoformat(" ", "microseconds")
