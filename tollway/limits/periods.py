"""Budget periods (day, week, month, total) in a configured time zone."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Period = Literal["day", "week", "month", "total"]


def period_start(period: Period, now: datetime, tz: ZoneInfo) -> datetime:
    """The start of the period containing ``now`` (aware), in ``tz``."""
    local = now.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start = midnight
    elif period == "week":
        start = midnight - timedelta(days=local.weekday())
    elif period == "month":
        start = midnight.replace(day=1)
    else:
        return datetime(1970, 1, 1, tzinfo=tz)
    # Re-attach the zone so DST offsets are those of the start, not of ``now``.
    return start.replace(tzinfo=None).replace(tzinfo=tz)


def period_key(period: Period, now: datetime, tz: ZoneInfo) -> str:
    """A stable name of the current period, used in store rows and Redis keys."""
    if period == "total":
        return "total"
    return f"{period}:{period_start(period, now, tz).date().isoformat()}"


def period_end(period: Period, now: datetime, tz: ZoneInfo) -> datetime | None:
    """When the period containing ``now`` ends (the next one's start); ``None`` for total."""
    if period == "total":
        return None
    start = period_start(period, now, tz)
    if period == "day":
        guess = start + timedelta(days=1, hours=12)  # past any DST shift, within the next day
    elif period == "week":
        guess = start + timedelta(days=7, hours=12)
    else:
        guess = (start + timedelta(days=32)).replace(day=1, hour=12)
    return period_start(period, guess, tz)
