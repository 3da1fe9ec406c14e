"""Column types shared by the models: UTC timestamps, JSON, autoincrementing big ids."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

from tollway.store.errors import InvalidRecord

JSONColumn: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")
"""JSON everywhere, JSONB on PostgreSQL (indexable, compact, key order not kept)."""

NullableJSON: TypeEngine[Any] = JSON(none_as_null=True).with_variant(
    JSONB(none_as_null=True), "postgresql"
)
"""Like ``JSONColumn``, but Python ``None`` is SQL NULL rather than JSON ``null``."""

BigId: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")
"""A 64-bit id; SQLite only autoincrements a column declared exactly ``INTEGER``."""


def utcnow() -> dt.datetime:
    """The current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.UTC)


def require_aware(value: dt.datetime, field: str) -> dt.datetime:
    """``value`` in UTC; raises ``InvalidRecord`` when it has no timezone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRecord(f"{field} {value.isoformat()} has no timezone")
    return value.astimezone(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite keeps no zone, so naive values are refused on the way in (they would be
    ambiguous) and the zone is put back on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        """Aware datetimes only, converted to UTC."""
        if value is None:
            return None
        return require_aware(value, "timestamp")

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        """The stored value as an aware UTC datetime."""
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)
