"""The audit trail: append events, page through them newest first."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select

from tollway.store.columns import BIG_ID_RANGE, require_aware, utcnow
from tollway.store.errors import InvalidRecord
from tollway.store.models import AuditRow
from tollway.store.records import AuditEntry, AuditPage, AuditRecord
from tollway.store.transaction import Sessions, transaction

MAX_PAGE = 1000


def audit_record(row: AuditRow) -> AuditRecord:
    """The record for an ``audit_events`` row."""
    return AuditRecord(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        target_type=row.target_type,
        target_id=row.target_id,
        details=dict(row.details),
        source_ip=row.source_ip,
        request_id=row.request_id,
    )


def _values(entry: AuditEntry) -> dict[str, Any]:
    return {
        "at": utcnow() if entry.at is None else require_aware(entry.at, "at"),
        "actor": entry.actor,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "details": dict(entry.details),
        "source_ip": entry.source_ip,
        "request_id": entry.request_id,
    }


class AuditRepository:
    """Appends audit events and lists them with filters and a cursor."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def append(self, entry: AuditEntry) -> AuditRecord:
        """Write one event and return it with its id."""
        row = AuditRow(**_values(entry))
        async with transaction(self._sessions, "audit event rejected") as session:
            session.add(row)
            await session.flush()
            return audit_record(row)

    async def append_many(self, entries: Sequence[AuditEntry]) -> int:
        """Write a batch of events in one transaction; returns how many."""
        if not entries:
            return 0
        async with transaction(self._sessions, "audit event rejected") as session:
            await session.execute(insert(AuditRow), [_values(entry) for entry in entries])
        return len(entries)

    async def page(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
        source_ips: tuple[str, ...] | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> AuditPage:
        """Events matching the filters, newest first, ``limit`` at a time after ``cursor``
        (a previous page's ``next_cursor``); ``action="key.*"`` matches a prefix,
        ``source_ips`` the spellings of one address (admin/logs.py ``source_ips``), ``since``
        is inclusive and ``until`` exclusive."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRecord(f"limit must be between 1 and {MAX_PAGE}")
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit + 1)
        if actor is not None:
            query = query.where(AuditRow.actor == actor)
        if action is not None and action.endswith("*"):
            query = query.where(AuditRow.action.startswith(action[:-1], autoescape=True))
        elif action is not None:
            query = query.where(AuditRow.action == action)
        if target_type is not None:
            query = query.where(AuditRow.target_type == target_type)
        if target_id is not None:
            query = query.where(AuditRow.target_id == target_id)
        if source_ips is not None:
            query = query.where(AuditRow.source_ip.in_(source_ips))
        if since is not None:
            query = query.where(AuditRow.at >= require_aware(since, "since"))
        if until is not None:
            query = query.where(AuditRow.at < require_aware(until, "until"))
        if cursor is not None:
            query = query.where(AuditRow.id < _cursor_id(cursor))
        async with self._sessions() as session:
            rows = list(await session.scalars(query))
        events = tuple(audit_record(row) for row in rows[:limit])
        next_cursor = str(events[-1].id) if len(rows) > limit else None
        return AuditPage(events=events, next_cursor=next_cursor)


def _cursor_id(cursor: str) -> int:
    # The cursor is the last id seen: ids only grow, so "older than" is "smaller than".
    try:
        last_id = int(cursor)
    except ValueError:
        last_id = None
    if last_id is None or last_id not in BIG_ID_RANGE:  # past 64 bits: an OverflowError, a 500
        raise InvalidRecord(f"{cursor!r} is not an audit cursor", param="cursor")
    return last_id
