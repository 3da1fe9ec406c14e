"""Short transactions for the repositories, with integrity errors turned into store errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tollway.store.errors import InvalidRecord, RecordConflict
from tollway.store.records import UNSET

Sessions = async_sessionmaker[AsyncSession]


@asynccontextmanager
async def transaction(sessions: Sessions, conflict: str) -> AsyncIterator[AsyncSession]:
    """A session committed on exit; a constraint violation raises ``RecordConflict(conflict)``."""
    try:
        async with sessions.begin() as session:
            yield session
    except IntegrityError as error:
        raise RecordConflict(conflict) from error


def given(**values: Any) -> dict[str, Any]:
    """The keyword arguments that were given (not ``UNSET``)."""
    return {name: value for name, value in values.items() if value is not UNSET}


def require_one_of(value: str, allowed: Iterable[str], field: str) -> None:
    """Raise ``InvalidRecord`` unless ``value`` is one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise InvalidRecord(f"{field} must be one of {', '.join(allowed)}; got {value!r}")
