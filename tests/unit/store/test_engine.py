"""Store URLs and engines: async drivers filled in, unsupported URLs and schemas refused."""

from __future__ import annotations

import datetime as dt

import pytest

from tollway.store.columns import require_aware
from tollway.store.engine import make_engine, store_url
from tollway.store.errors import InvalidRecord, StoreError


def test_async_drivers_are_filled_in() -> None:
    assert store_url("sqlite:///./t.db").drivername == "sqlite+aiosqlite"
    assert store_url("postgresql://u:p@h/db").drivername == "postgresql+asyncpg"
    assert store_url("postgresql+asyncpg://h/db").drivername == "postgresql+asyncpg"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql+aiomysql://h/db", "unsupported store URL"),
        ("postgresql+psycopg2://u:hunter2@h/db", "needs the async driver 'asyncpg'"),
        ("not a url", "not a database URL"),
    ],
)
def test_unsupported_urls(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as raised:
        store_url(url)
    assert "hunter2" not in str(raised.value)


def test_schemas_are_postgresql_only_and_plain_identifiers() -> None:
    with pytest.raises(StoreError, match="PostgreSQL"):
        make_engine("sqlite+aiosqlite:///./t.db", schema="tollway")
    with pytest.raises(StoreError, match="identifier"):
        make_engine("postgresql+asyncpg://h/db", schema='x"; DROP TABLE teams; --')


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(InvalidRecord, match=r"expires_at .* no timezone"):
        require_aware(dt.datetime(2026, 1, 1), "expires_at")
    eastern = dt.datetime(2026, 1, 1, 7, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert require_aware(eastern, "at") == dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
