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
