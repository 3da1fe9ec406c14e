"""The audit trail on both backends: filters, time windows and cursor pagination."""

from __future__ import annotations

import datetime as dt

import pytest

from tollway.store import AuditEntry, InvalidRecord, Store

START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def entry(n: int, **fields: object) -> AuditEntry:
    """The n-th test event, a minute after the previous one."""
    values: dict[str, object] = {
        "actor": "tw-abcdefghi",
        "action": "key.create",
        "at": START + dt.timedelta(minutes=n),
    }
    values.update(fields)
    return AuditEntry(**values)  # type: ignore[arg-type]


async def test_append_round_trip(store: Store) -> None:
    written = await store.audit.append(
        AuditEntry(
            actor="admin@example.com",
            action="team.update",
            target_type="team",
            target_id="t-1",
            details={"changed": ["name"], "from": {"name": "a"}, "to": {"name": "b"}},
            source_ip="10.0.0.7",
            request_id="req-123",
        )
    )
    assert written.id > 0 and written.at.tzinfo == dt.UTC
    (stored,) = (await store.audit.page()).events
    assert stored == written
    assert stored.details == {"changed": ["name"], "from": {"name": "a"}, "to": {"name": "b"}}


async def test_filters(store: Store) -> None:
    await store.audit.append_many(
        [
            entry(0, actor="bootstrap", action="user.create", target_type="user", target_id="u1"),
            entry(1, action="key.create", target_type="key", target_id="k1"),
            entry(2, action="key.revoke", target_type="key", target_id="k1"),
            entry(3, action="key_rotate"),
            entry(4, actor="admin@example.com", action="team.delete", target_type="team"),
        ]
    )

    async def actions(**filters: object) -> list[str]:
        page = await store.audit.page(**filters)  # type: ignore[arg-type]
        return [event.action for event in page.events]

    assert await actions(actor="bootstrap") == ["user.create"]
    assert await actions(action="key.create") == ["key.create"]
    # A prefix matches literally: "_" is not a wildcard.
    assert await actions(action="key.*") == ["key.revoke", "key.create"]
    assert await actions(action="key_*") == ["key_rotate"]
    assert await actions(target_type="key", target_id="k1") == ["key.revoke", "key.create"]
    window = {"since": START + dt.timedelta(minutes=1), "until": START + dt.timedelta(minutes=3)}
    assert await actions(**window) == ["key.revoke", "key.create"]
    assert len(await actions()) == 5


async def test_pagination_walks_every_event_once_newest_first(store: Store) -> None:
    assert await store.audit.append_many([entry(n, target_id=str(n)) for n in range(25)]) == 25
    seen: list[str] = []
    pages = []
    cursor = None
    while True:
        page = await store.audit.page(limit=10, cursor=cursor)
        pages.append(len(page.events))
        seen.extend(event.target_id or "" for event in page.events)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == [10, 10, 5]
    assert seen == [str(n) for n in reversed(range(25))]

    exact = await store.audit.page(limit=25)
    assert len(exact.events) == 25 and exact.next_cursor is None
    filtered = await store.audit.page(target_id="7", limit=1)
    assert [e.target_id for e in filtered.events] == ["7"] and filtered.next_cursor is None


async def test_bad_paging_arguments(store: Store) -> None:
    with pytest.raises(InvalidRecord, match="cursor"):
        await store.audit.page(cursor="not-a-cursor")
    for limit in (0, 1001):
        with pytest.raises(InvalidRecord, match="limit"):
            await store.audit.page(limit=limit)
    assert await store.audit.append_many([]) == 0
