"""What a change of a team, a user or a membership does to their keys, in its transaction.

Deleting a team or a user revokes its keys (before the foreign keys detach them: no key
lives on without the limits it was made under); removing a member from a team blocks the
keys they own there (they were billed to a team the owner has left; docs/identity.md).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollway.store.models import KeyRow
from tollway.store.records import KEY_AUTHORITIES, KeyAuthority


async def revoke_keys(
    session: AsyncSession, condition: ColumnElement[bool], now: dt.datetime
) -> tuple[list[str], list[str]]:
    """Revoke every key matching ``condition`` at once, ending any grace period; returns the
    ids of the keys it revoked and of those rotated away whose grace it ended (for the audit
    trail: each stopped working here). The rows are locked first (PostgreSQL), as
    ``block_member_keys`` locks them."""
    revoked = list(
        await session.scalars(
            select(KeyRow.id).where(condition, KeyRow.status != "revoked").with_for_update()
        )
    )
    in_grace = and_(KeyRow.status == "revoked", KeyRow.grace_until.is_not(None))
    ended = list(
        await session.scalars(select(KeyRow.id).where(condition, in_grace).with_for_update())
    )
    await session.execute(
        update(KeyRow)
        .where(condition, KeyRow.status != "revoked")
        .values(status="revoked", revoked_at=now, grace_until=None)
    )
    await session.execute(
        update(KeyRow).where(condition, KeyRow.grace_until.is_not(None)).values(grace_until=None)
    )
    return revoked, ended


async def block_member_keys(
    session: AsyncSession, team_id: str, user_id: str, authority: KeyAuthority, reason: str
) -> tuple[list[str], list[str]]:
    """Block the keys ``user_id`` owns in ``team_id`` as ``authority`` for ``reason`` (active
    ones, and blocked ones whose block had less authority), and end the grace period of those
    rotated away; returns the ids of both. The rows are locked first (PostgreSQL), so a
    change of one of them meanwhile is waited for and judged after."""
    owned = and_(KeyRow.team_id == team_id, KeyRow.user_id == user_id)
    weaker = KeyRow.blocked_by.in_(KEY_AUTHORITIES[: KEY_AUTHORITIES.index(authority)])
    blockable = or_(KeyRow.status == "active", and_(KeyRow.status == "blocked", weaker))
    in_grace = and_(KeyRow.status == "revoked", KeyRow.grace_until.is_not(None))
    blocked = list(
        await session.scalars(select(KeyRow.id).where(owned, blockable).with_for_update())
    )
    ended = list(await session.scalars(select(KeyRow.id).where(owned, in_grace).with_for_update()))
    if blocked:
        values = {"status": "blocked", "blocked_by": authority, "blocked_reason": reason}
        await session.execute(
            update(KeyRow)
            .where(KeyRow.id.in_(blocked))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    if ended:
        await session.execute(
            update(KeyRow)
            .where(KeyRow.id.in_(ended))
            .values(grace_until=None)
            .execution_options(synchronize_session=False)
        )
    return blocked, ended
