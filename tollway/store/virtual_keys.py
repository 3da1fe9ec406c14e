"""Virtual keys: create, look up, change status, rotate, and load them for the key cache.

Keys are never deleted: a revoked key stays for the audit trail and the spend history.

Every change of a key is one ``UPDATE`` whose ``WHERE`` holds the rule it must keep (a revoked
key stays revoked; only an active key rotates; a block is lifted only by its blocker's
equal), so two replicas changing one key at once cannot undo each other: the database judges
the second against what the first wrote. The record returned is read after that write.

A key with an owner and a team shares its owner's membership while it is made (and, below an
admin, while it is unblocked), so a removal of the owner from the team is judged before or
after it, never beside it (the removal blocks the owner's keys there: key_cascades.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from tollway.store.columns import UTCDateTime, require_aware, utcnow
from tollway.store.errors import RecordConflict, RecordNotFound
from tollway.store.models import KeyRow, MembershipRow, TeamRow, UserRow
from tollway.store.records import (
    KEY_AUTHORITIES,
    KEY_STATUSES,
    UNSET,
    KeyAuthority,
    KeyRecord,
    KeyStatus,
    NewKey,
    Unset,
)
from tollway.store.transaction import Sessions, given, require_one_of, transaction


def key_record(row: KeyRow) -> KeyRecord:
    """The record for a ``virtual_keys`` row."""
    return KeyRecord(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        key_hash=row.key_hash,
        user_id=row.user_id,
        team_id=row.team_id,
        allowed_models=tuple(row.allowed_models),
        expires_at=row.expires_at,
        tags=dict(row.tags),
        metadata=dict(row.meta),
        limits=None if row.limits is None else dict(row.limits),
        status=row.status,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        rotated_from=row.rotated_from,
        grace_until=row.grace_until,
        last_used_at=row.last_used_at,
        blocked_by=row.blocked_by,
        blocked_reason=row.blocked_reason,
        lineage_id=row.lineage_id,
        bound_teams=None if row.bound_teams is None else tuple(row.bound_teams),
    )


class KeyRepository:
    """Stores virtual keys by their hash; the keys themselves are never seen here."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def create(self, new: NewKey, *, owner_in_team: bool = False) -> KeyRecord:
        """A new active key; raises ``RecordNotFound`` for an unknown user or team.

        ``owner_in_team``: the key's owner must be a member of its team (a key a non-admin
        makes), else ``RecordConflict``; judged in the key's transaction, so an owner being
        removed from the team meanwhile either waits for the key and blocks it, or is gone.
        """
        row = _new_row(new)
        async with transaction(self._sessions, "a key with this hash exists") as session:
            await _check_owners(session, new.user_id, new.team_id)
            if new.user_id is not None and new.team_id is not None:
                # Shared even when not required: a removal of the owner from the team meanwhile
                # waits for this key and blocks it, as it does the owner's other keys there.
                await _owner_in_team(session, new.team_id, new.user_id, required=owner_in_team)
            session.add(row)
            await session.flush()
            return key_record(row)

    async def get(self, key_id: str) -> KeyRecord:
        """The key with ``key_id``; raises ``RecordNotFound``."""
        async with self._sessions() as session:
            return key_record(await _key_row(session, key_id))

    async def get_by_hash(self, key_hash: str) -> KeyRecord:
        """The key whose SHA-256 is ``key_hash``; raises ``RecordNotFound``."""
        query = select(KeyRow).where(KeyRow.key_hash == key_hash.lower())
        async with self._sessions() as session:
            row = await session.scalar(query)
        if row is None:
            raise RecordNotFound("no key with this hash")
        return key_record(row)

    async def find(
        self,
        *,
        team_id: str | None = None,
        user_id: str | None = None,
        status: KeyStatus | None = None,
        prefix: str | None = None,
    ) -> list[KeyRecord]:
        """Every key matching the given filters, oldest first."""
        query = select(KeyRow).order_by(KeyRow.created_at, KeyRow.id)
        if team_id is not None:
            query = query.where(KeyRow.team_id == team_id)
        if user_id is not None:
            query = query.where(KeyRow.user_id == user_id)
        if status is not None:
            query = query.where(KeyRow.status == status)
        if prefix is not None:
            query = query.where(KeyRow.prefix == prefix)
        async with self._sessions() as session:
            return [key_record(row) for row in await session.scalars(query)]

    async def update(
        self,
        key_id: str,
        *,
        name: str | Unset = UNSET,
        allowed_models: Sequence[str] | Unset = UNSET,
        expires_at: dt.datetime | Unset | None = UNSET,
        tags: Mapping[str, str] | Unset = UNSET,
        metadata: Mapping[str, Any] | Unset = UNSET,
        limits: Mapping[str, Any] | Unset | None = UNSET,
    ) -> KeyRecord:
        """The key with the given fields changed; ``None`` clears expiry or limits."""
        changes = given(
            name=name,
            allowed_models=_json_copy(allowed_models),
            expires_at=expires_at,
            tags=_json_copy(tags),
            meta=_json_copy(metadata),
            limits=_json_copy(limits),
        )
        if isinstance(expires_at, dt.datetime):
            changes["expires_at"] = require_aware(expires_at, "expires_at")
        async with transaction(self._sessions, "the key changed concurrently") as session:
            # Only the fields given are written: a concurrent revoke's status stays.
            if changes:
                await _update_key(session, key_id, KeyRow.id == key_id, changes)
            return key_record(await _key_row(session, key_id))

    async def set_status(
        self,
        key_id: str,
        status: KeyStatus,
        *,
        authority: KeyAuthority = "admin",
        reason: str | None = None,
    ) -> KeyRecord:
        """Block, unblock or revoke a key as ``authority``.

        Revoking is final and ends any grace period. A block records ``authority`` (never
        lowering a block already made with more) and ``reason``; unblocking needs as much
        authority as the block had, and below an admin an owner who is a member of the key's
        team, else ``RecordConflict``. Blocking or revoking also ends the grace period of
        the keys this one was rotated from: their secrets are this key's, older.
        """
        require_one_of(status, KEY_STATUSES, "key status")
        require_one_of(authority, KEY_AUTHORITIES, "key authority")
        rule: ColumnElement[bool] = KeyRow.id == key_id
        values: dict[str, Any] = {"status": status}
        if status == "revoked":
            now = literal(utcnow(), UTCDateTime())
            values |= {"revoked_at": func.coalesce(KeyRow.revoked_at, now), "grace_until": None}
        else:
            # Never out of revoked; and a block is overwritten (or lifted) only by as much
            # authority as made it: a stronger block stays as it is.
            liftable = or_(KeyRow.status != "blocked", may_lift(authority))
            rule = and_(rule, KeyRow.status != "revoked", liftable)
            values["blocked_by"] = authority if status == "blocked" else None
            values["blocked_reason"] = reason if status == "blocked" else None
        async with transaction(self._sessions, "the key changed concurrently") as session:
            if status == "active" and authority != "admin":
                # A key whose owner left its team is not for the team's admin to bring back.
                key = await _key_row(session, key_id)
                if key.user_id is not None and key.team_id is not None:
                    await _owner_in_team(session, key.team_id, key.user_id, required=True)
            if not await _update_key(session, key_id, rule, values):
                row = await _key_row(session, key_id)
                if row.status == "revoked":
                    raise RecordConflict(f"key {key_id!r} is revoked; a revoked key stays revoked")
                if status == "active":
                    raise RecordConflict(
                        f"key {key_id!r} was blocked by {row.blocked_by or 'admin'}: "
                        "only as much authority lifts the block"
                    )
            row = await _key_row(session, key_id)
            if status != "active":
                await _end_grace_before(session, row)
            return key_record(row)

    async def rotate(
        self,
        key_id: str,
        *,
        prefix: str,
        key_hash: str,
        grace_until: dt.datetime | None = None,
        bound_teams: Sequence[str] | None = None,
    ) -> KeyRecord:
        """A new key with the settings of active key ``key_id``, which is revoked but stays
        valid until ``grace_until`` so its clients can switch over; ``bound_teams``, when
        given, are the teams the new key acts in (else the old key's)."""
        if grace_until is not None:
            grace_until = require_aware(grace_until, "grace_until")
        retired = {"status": "revoked", "revoked_at": utcnow(), "grace_until": grace_until}
        async with transaction(self._sessions, "a key with this hash exists") as session:
            active = and_(KeyRow.id == key_id, KeyRow.status == "active")
            if not await _update_key(session, key_id, active, retired):
                old = await _key_row(session, key_id)
                raise RecordConflict(f"key {key_id!r} is {old.status}; only active keys rotate")
            old = await _key_row(session, key_id)
            new = KeyRow(
                name=old.name,
                prefix=prefix,
                key_hash=key_hash.lower(),
                user_id=old.user_id,
                team_id=old.team_id,
                allowed_models=list(old.allowed_models),
                expires_at=old.expires_at,
                tags=dict(old.tags),
                meta=dict(old.meta),
                limits=None if old.limits is None else dict(old.limits),
                rotated_from=old.id,
                # Every key of a chain points at its first, so its budgets and limits follow.
                lineage_id=old.lineage_id or old.id,
                # The new secret is the same key: it acts in no more teams than the old one.
                bound_teams=list(bound_teams)
                if bound_teams is not None
                else None
                if old.bound_teams is None
                else list(old.bound_teams),
            )
            session.add(new)
            await session.flush()
            return key_record(new)

    async def all_active(self, now: dt.datetime | None = None) -> list[KeyRecord]:
        """Every key the gateway's key cache holds at ``now``: active and blocked keys, and
        rotated ones still in their grace period (see ``KeyRecord.accepts_requests``)."""
        # Blocked and expired keys are kept so the gateway can say why a key is refused
        # rather than calling it unknown.
        now = utcnow() if now is None else require_aware(now, "now")
        in_grace = and_(KeyRow.status == "revoked", KeyRow.grace_until > now)
        query = (
            select(KeyRow)
            .where(or_(KeyRow.status.in_(("active", "blocked")), in_grace))
            .order_by(KeyRow.created_at, KeyRow.id)
        )
        async with self._sessions() as session:
            return [key_record(row) for row in await session.scalars(query)]

    async def lineages(self) -> dict[str, str]:
        """Every rotated key's id -> the id of its rotation chain's first key."""
        query = select(KeyRow.id, KeyRow.lineage_id).where(KeyRow.lineage_id.is_not(None))
        async with self._sessions() as session:
            return {key_id: str(lineage) for key_id, lineage in await session.execute(query)}

    async def record_use(self, last_used: Mapping[str, dt.datetime]) -> None:
        """Write many keys' ``last_used_at`` at once (``auth/key_use.py`` batches these).

        A stamp never moves back: replicas write their batches at their own moments, and
        one that used a key earlier must not overwrite another's later use."""
        if not last_used:
            return
        table = cast(Table, KeyRow.__table__)
        used_at = bindparam("used_at", type_=UTCDateTime())
        statement = (
            update(table)
            .where(
                table.c.id == bindparam("key_id"),
                or_(table.c.last_used_at.is_(None), table.c.last_used_at < used_at),
            )
            .values(last_used_at=used_at)
        )
        rows = [
            {"key_id": key_id, "used_at": require_aware(at, "last_used_at")}
            for key_id, at in last_used.items()
        ]
        async with transaction(self._sessions, "the key changed concurrently") as session:
            await session.execute(statement, rows)


async def key_records(session: AsyncSession, key_ids: Sequence[str]) -> list[KeyRecord]:
    """The keys with ``key_ids`` as stored now (read again, not from the session's cache)."""
    if not key_ids:
        return []
    query = (
        select(KeyRow)
        .where(KeyRow.id.in_(key_ids))
        .order_by(KeyRow.created_at, KeyRow.id)
        .execution_options(populate_existing=True)
    )
    return [key_record(row) for row in await session.scalars(query)]


def _new_row(new: NewKey) -> KeyRow:
    expires_at = None if new.expires_at is None else require_aware(new.expires_at, "expires_at")
    return KeyRow(
        name=new.name,
        prefix=new.prefix,
        key_hash=new.key_hash.lower(),
        user_id=new.user_id,
        team_id=new.team_id,
        allowed_models=list(new.allowed_models),
        expires_at=expires_at,
        tags=dict(new.tags),
        meta=dict(new.metadata),
        limits=None if new.limits is None else dict(new.limits),
        status="active",
        bound_teams=None if new.bound_teams is None else list(new.bound_teams),
    )


def _json_copy(value: Any) -> Any:
    # Plain lists and dicts: the JSON column would not notice a caller's later mutation.
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    return value


async def _check_owners(session: AsyncSession, user_id: str | None, team_id: str | None) -> None:
    # Shared locks (PostgreSQL): a delete of the user or team waits for this key and revokes
    # it, or this waits for the delete and finds nothing; never a key left active, detached.
    share = {"key_share": True}
    if user_id is not None and await session.get(UserRow, user_id, with_for_update=share) is None:
        raise RecordNotFound(f"no user with id {user_id!r}")
    if team_id is not None and await session.get(TeamRow, team_id, with_for_update=share) is None:
        raise RecordNotFound(f"no team with id {team_id!r}")


async def _owner_in_team(
    session: AsyncSession, team_id: str, user_id: str, *, required: bool
) -> None:
    # FOR SHARE (PostgreSQL): the membership stays until this commits; a removal waits, then
    # finds (and blocks) what this wrote.
    membership = await session.get(
        MembershipRow, (team_id, user_id), with_for_update={"read": True}
    )
    if membership is None and required:
        raise RecordConflict(
            f"the key's owner {user_id!r} is not a member of team {team_id!r} (any more): "
            "only an admin makes or unblocks such a key"
        )


def may_lift(authority: KeyAuthority) -> ColumnElement[bool]:
    """Whether a key's block is one ``authority`` may lift (or replace with its own)."""
    weaker_or_equal = KEY_AUTHORITIES[: KEY_AUTHORITIES.index(authority) + 1]
    lifted = KeyRow.blocked_by.in_(weaker_or_equal)
    # A block from before blockers were recorded counts as an admin's.
    return or_(lifted, KeyRow.blocked_by.is_(None)) if authority == "admin" else lifted


async def _update_key(
    session: AsyncSession, key_id: str, where: ColumnElement[bool], values: Mapping[str, Any]
) -> bool:
    """One ``UPDATE`` of the key where ``where`` holds; whether it did (``RecordNotFound``
    when there is no such key). On PostgreSQL the row is then this transaction's until it
    commits, so what the caller reads next is what it wrote."""
    statement = (
        update(KeyRow).where(where).values(**values).execution_options(synchronize_session=False)
    )
    result = await session.execute(statement)
    if result.rowcount == 0:  # type: ignore[attr-defined]
        await _key_row(session, key_id)
        return False
    session.expire_all()  # a row loaded before is stale now
    return True


async def _end_grace_before(session: AsyncSession, row: KeyRow) -> None:
    """End the grace period of every key ``row`` was rotated from, directly or not."""
    seen = {row.id}
    previous = row.rotated_from
    while previous is not None and previous not in seen:
        seen.add(previous)
        earlier = await session.get(KeyRow, previous)
        if earlier is None:
            break
        earlier.grace_until = None
        previous = earlier.rotated_from
    await session.flush()


async def _key_row(session: AsyncSession, key_id: str) -> KeyRow:
    row = await session.get(KeyRow, key_id)
    if row is None:
        raise RecordNotFound(f"no key with id {key_id!r}")
    return row
