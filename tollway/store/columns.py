"""Column types shared by the models: UTC timestamps, JSON, autoincrementing big ids."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine, UserDefinedType

from tollway.store.errors import InvalidRecord

JSONColumn: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")
"""JSON everywhere, JSONB on PostgreSQL (indexable, compact, key order not kept)."""

NullableJSON: TypeEngine[Any] = JSON(none_as_null=True).with_variant(
    JSONB(none_as_null=True), "postgresql"
)
"""Like ``JSONColumn``, but Python ``None`` is SQL NULL rather than JSON ``null``."""

BigId: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")
"""A 64-bit id; SQLite only autoincrements a column declared exactly ``INTEGER``."""
BIG_ID_RANGE = range(-(2**63), 2**63)
"""What a 64-bit id column holds: a value outside it is refused by both drivers (an
``OverflowError`` on SQLite), so an id from a client (a page cursor) is checked first."""


def utcnow() -> dt.datetime:
    """The current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.UTC)


def require_aware(value: dt.datetime, field: str) -> dt.datetime:
    """``value`` in UTC; raises ``InvalidRecord`` (its ``param`` ``field``) when it has no
    timezone, or when in UTC it falls outside years 1 to 9999 (``9999-12-31T23:00-05:00``,
    ``0001-01-01T00:00+05:00``: a client's time, which ``astimezone`` raised on, a 500)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRecord(f"{field} {value.isoformat()} has no timezone", param=field)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise InvalidRecord(
            f"{field} {value.isoformat()} is outside years 1 to 9999 in UTC", param=field
        ) from None


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


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def epoch_micros(value: dt.datetime) -> int:
    """An aware time as whole microseconds since the epoch."""
    return (value - EPOCH) // _MICROSECOND


class _SqliteMicros(UserDefinedType[int]):
    """Integers in a column SQLite declares ``DATETIME`` (numeric affinity keeps them
    integers), passed through as they are."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "DATETIME"


class UTCMicros(TypeDecorator[dt.datetime]):
    """``UTCDateTime`` that SQLite keeps as whole microseconds since the epoch.

    For the request log's time, which a SQLite file writes once a request: an integer binds
    without being formatted as text, and the table's five indexes that end with it hold 8
    bytes a row where the text took 27. Aware datetimes go in and come out, as with
    ``UTCDateTime``; on PostgreSQL it is ``timestamptz``. Migration 0004 converts the text a
    SQLite file held before.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SqliteMicros())
        return dialect.type_descriptor(self.impl_instance)

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        """Aware datetimes only: in UTC, or as microseconds on SQLite."""
        if value is None:
            return None
        value = require_aware(value, "timestamp")
        return epoch_micros(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        """The stored value as an aware UTC datetime."""
        if value is None:
            return None
        if dialect.name == "sqlite":
            return EPOCH + dt.timedelta(microseconds=int(value))
        assert isinstance(value, dt.datetime)
        return value.astimezone(dt.UTC)
