"""Teams and their members.

A change reads what it decides on under a lock (``_team_row(lock=...)``; on SQLite the whole
write transaction holds the file's lock, store/transaction.py), so a team deleted meanwhile
is a ``RecordNotFound``, never an update of nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollway.store.columns import utcnow
from tollway.store.errors import InvalidRecord, RecordConflict, RecordNotFound
from tollway.store.key_cascades import block_member_keys, revoke_keys
from tollway.store.limits import remove_scope
from tollway.store.models import KeyRow, MembershipRow, TeamRow, UserRow, new_id
from tollway.store.records import (
    KEY_AUTHORITIES,
    OWNER_LEFT_TEAM,
    TEAM_ROLES,
    UNSET,
    KeyAuthority,
    MemberRemoval,
    MembershipRecord,
    ProvisionedTeam,
    TeamDeletion,
    TeamRecord,
    TeamRole,
    Unset,
)
from tollway.store.transaction import (
    Sessions,
    dialect_insert,
    given,
    require_one_of,
    transaction,
)
from tollway.store.virtual_keys import key_records


def team_record(row: TeamRow) -> TeamRecord:
    """The record for a ``teams`` row."""
    return TeamRecord(
        id=row.id,
        name=row.name,
        organization=row.organization,
        metadata=dict(row.meta),
        created_at=row.created_at,
        updated_at=row.updated_at,
        oidc_issuer=row.oidc_issuer,
        oidc_group=row.oidc_group,
    )


def _team_name(group: str, team_id: str | None) -> str:
    """The name of a team made for ``group``: the group's, or with the team's id after it
    when another team has that name (the longest group value fits: 200 characters)."""
    if team_id is None:
        return group
    suffix = f" ({team_id[:8]})"
    return group[: _NAME_LIMIT - len(suffix)] + suffix


def membership_record(row: MembershipRow) -> MembershipRecord:
    """The record for a ``team_members`` row."""
    return MembershipRecord(
        team_id=row.team_id,
        user_id=row.user_id,
        role=row.role,
        created_at=row.created_at,
        source=row.source,
    )


class TeamRepository:
    """Creates, reads, changes and deletes teams and their membership."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def create(
        self,
        name: str,
        *,
        organization: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        oidc_issuer: str | None = None,
        oidc_group: str | None = None,
    ) -> TeamRecord:
        """A new team, standing for ``oidc_issuer``'s group ``oidc_group`` when given (both
        or neither); raises ``RecordConflict`` when the name or the group is taken."""
        _require_pair(oidc_issuer, oidc_group)
        row = TeamRow(
            name=name,
            organization=organization,
            meta=dict(metadata or {}),
            oidc_issuer=oidc_issuer,
            oidc_group=oidc_group,
        )
        async with transaction(self._sessions, _conflict(name, oidc_group)) as session:
            if oidc_issuer is not None and oidc_group is not None:
                await _refuse_group_taken(session, oidc_issuer, oidc_group, None)
            session.add(row)
            await session.flush()
            return team_record(row)

    async def provision(
        self, issuer: str, groups: Sequence[str]
    ) -> tuple[dict[str, str], list[ProvisionedTeam]]:
        """The teams standing for ``issuer``'s ``groups`` (team claim values), found or made:
        their ids by group, and those this call linked or made.

        A group is matched by the team's ``oidc_issuer`` and ``oidc_group``, never its name,
        so a rename keeps it. A group no team stands for yet takes the team called after it
        when that team stands for no group (an admin made it before anyone signed in), else
        gets a new team called after it (or, when a team of another group holds that name,
        after it and the new team's id). Each step is one statement that a concurrent one
        cannot undo (a conditional update, inserts ignoring conflicts), then a read:
        replicas doing it at once make or link each team once.
        """
        wanted = list(dict.fromkeys(groups))
        if not wanted:
            return {}, []
        found = await self._by_group(issuer, wanted)
        changed: list[ProvisionedTeam] = []
        missing = [group for group in wanted if group not in found]
        if missing:
            changed += await self._link_by_name(issuer, missing)
            found = await self._by_group(issuer, wanted)
        for attempt in ("name", "name and id"):
            missing = [group for group in wanted if group not in found]
            if not missing:
                break
            ours = {group: new_id() for group in missing}
            await self._insert_ignoring_conflicts(issuer, ours, with_id=attempt != "name")
            found = await self._by_group(issuer, wanted)
            changed += [
                ProvisionedTeam(found[group], "created")
                for group in missing
                if group in found and found[group].id == ours[group]
            ]
        if len(found) < len(wanted):
            raise RecordConflict(f"the teams of {issuer!r}'s groups changed concurrently")
        return {group: team.id for group, team in found.items()}, changed

    async def _by_group(self, issuer: str, groups: Sequence[str]) -> dict[str, TeamRecord]:
        query = select(TeamRow).where(TeamRow.oidc_issuer == issuer, TeamRow.oidc_group.in_(groups))
        async with self._sessions() as session:
            rows = await session.scalars(query)
            return {row.oidc_group: team_record(row) for row in rows if row.oidc_group}

    async def _link_by_name(self, issuer: str, groups: Sequence[str]) -> list[ProvisionedTeam]:
        """Give the teams called after ``groups`` that stand for no group yet their group."""
        async with transaction(self._sessions, "team linked concurrently") as session:
            linked = await session.scalars(
                update(TeamRow)
                .where(TeamRow.name.in_(groups), TeamRow.oidc_issuer.is_(None))
                .values(oidc_issuer=issuer, oidc_group=TeamRow.name, updated_at=utcnow())
                .returning(TeamRow)
                .execution_options(synchronize_session=False)
            )
            return [ProvisionedTeam(team_record(row), "linked") for row in linked]

    async def _insert_ignoring_conflicts(
        self, issuer: str, ids: Mapping[str, str], *, with_id: bool
    ) -> None:
        now = utcnow()
        rows: list[dict[str, object]] = [
            {"id": team_id, "name": _team_name(group, team_id if with_id else None),
             "organization": None, "meta": {}, "created_at": now, "updated_at": now,
             "oidc_issuer": issuer, "oidc_group": group}
            for group, team_id in ids.items()
        ]  # fmt: skip
        async with transaction(self._sessions, "team provisioned concurrently") as session:
            # Any unique conflict: the group (another replica made its team) or the name
            # (another team holds it; tried again with the id in it).
            await session.execute(
                dialect_insert(session)(TeamRow).values(rows).on_conflict_do_nothing()
            )

    async def sync_claimed(
        self, user_id: str, team_ids: Sequence[str], *, reason: str
    ) -> tuple[list[str], list[MemberRemoval]]:
        """Make ``user_id``'s memberships from a token's team claim (``source: oidc``) the
        teams ``team_ids``: the missing ones added as ``member`` (a membership an admin made
        stays as it is), the claimed ones no longer named removed, their keys blocked as an
        admin would (``reason``). Returns the teams added and the removals."""
        async with transaction(self._sessions, "membership changed concurrently") as session:
            if await session.get(UserRow, user_id, with_for_update=_KEY_SHARE) is None:
                raise RecordNotFound(f"no user with id {user_id!r}")
            held = set(
                await session.scalars(
                    select(MembershipRow.team_id).where(MembershipRow.user_id == user_id)
                )
            )
            missing = [team for team in dict.fromkeys(team_ids) if team not in held]
            if missing:
                insert = dialect_insert(session)(MembershipRow).values(
                    [{"team_id": team, "user_id": user_id, "role": "member",
                      "created_at": utcnow(), "source": "oidc"} for team in missing]
                )  # fmt: skip
                await session.execute(
                    insert.on_conflict_do_nothing(
                        index_elements=[MembershipRow.team_id, MembershipRow.user_id]
                    )
                )
        gone = await self.members(user_id=user_id)
        removals = []
        for membership in gone:
            if membership.source == "oidc" and membership.team_id not in team_ids:
                try:
                    removals.append(
                        await self.remove_member(
                            membership.team_id, user_id, authority="admin", reason=reason
                        )
                    )
                except RecordNotFound:
                    continue  # removed meanwhile (another replica's sign-in, an admin)
        return missing, removals

    async def get(self, team_id: str) -> TeamRecord:
        """The team with ``team_id``; raises ``RecordNotFound``."""
        async with self._sessions() as session:
            return team_record(await _team_row(session, team_id))

    async def get_by_name(self, name: str) -> TeamRecord:
        """The team called ``name``; raises ``RecordNotFound``."""
        async with self._sessions() as session:
            row = await session.scalar(select(TeamRow).where(TeamRow.name == name))
        if row is None:
            raise RecordNotFound(f"no team named {name!r}")
        return team_record(row)

    async def find(self, *, organization: str | None = None) -> list[TeamRecord]:
        """Every team (of ``organization`` when given), by name."""
        query = select(TeamRow).order_by(TeamRow.name)
        if organization is not None:
            query = query.where(TeamRow.organization == organization)
        async with self._sessions() as session:
            return [team_record(row) for row in await session.scalars(query)]

    async def update(
        self,
        team_id: str,
        *,
        name: str | Unset = UNSET,
        organization: str | Unset | None = UNSET,
        metadata: Mapping[str, Any] | Unset = UNSET,
        oidc_issuer: str | Unset | None = UNSET,
        oidc_group: str | Unset | None = UNSET,
    ) -> TeamRecord:
        """The team with the given fields changed; ``None`` clears the organization, and
        ``oidc_issuer`` and ``oidc_group`` (changed together) the group the team stands for.
        Raises ``RecordConflict`` when the name or the group is another team's."""
        changes = given(
            name=name,
            organization=organization,
            meta=metadata,
            oidc_issuer=oidc_issuer,
            oidc_group=oidc_group,
        )
        if "meta" in changes:
            changes["meta"] = dict(changes["meta"])
        if ("oidc_issuer" in changes) != ("oidc_group" in changes):
            raise InvalidRecord(
                "oidc_issuer and oidc_group are changed together", param="oidc_group"
            )
        issuer, group = changes.get("oidc_issuer"), changes.get("oidc_group")
        _require_pair(issuer, group)
        conflict = _conflict(name if isinstance(name, str) else None, group)
        async with transaction(self._sessions, conflict) as session:
            row = await _team_row(session, team_id, lock=True)
            if issuer is not None and group is not None:
                await _refuse_group_taken(session, issuer, group, team_id)
            for field, value in changes.items():
                setattr(row, field, value)
            row.updated_at = utcnow()
            await session.flush()
            return team_record(row)

    async def delete(self, team_id: str) -> TeamDeletion:
        """Delete a team, its memberships, budgets and rate limits (its spend history stays);
        its keys are revoked first, then detached. Returns the budgets and limits removed, as
        ``budget:team:<id>:<period>`` and ``limit:team:<id>``, and the keys revoked."""
        now = utcnow()
        async with transaction(self._sessions, "the team is still referenced") as session:
            # Locked first: a key being made in the team (its foreign key shares the row) is
            # waited for and revoked too, or waits and finds the team gone.
            await _team_row(session, team_id, lock=True)
            # Revoke before the foreign key detaches them: a key must not live on without
            # the team whose limits it was under.
            revoked, ended = await revoke_keys(session, KeyRow.team_id == team_id, now)
            removed = await remove_scope(session, "team", team_id)
            await session.execute(delete(TeamRow).where(TeamRow.id == team_id))
        return TeamDeletion(tuple(removed), tuple(revoked), tuple(ended))

    async def add_member(
        self, team_id: str, user_id: str, role: TeamRole = "member"
    ) -> MembershipRecord:
        """Add a user to a team, or change their role there."""
        require_one_of(role, TEAM_ROLES, "team role")
        async with transaction(self._sessions, "membership changed concurrently") as session:
            # Shared locks: the team and the user stay until this commits (or were deleted).
            await _team_row(session, team_id, lock=_KEY_SHARE)
            if await session.get(UserRow, user_id, with_for_update=_KEY_SHARE) is None:
                raise RecordNotFound(f"no user with id {user_id!r}")
            insert = dialect_insert(session)(MembershipRow).values(
                team_id=team_id, user_id=user_id, role=role, created_at=utcnow()
            )
            await session.execute(
                insert.on_conflict_do_update(
                    index_elements=[MembershipRow.team_id, MembershipRow.user_id],
                    # An admin's add makes a claimed membership the admin's: sign-ins leave it.
                    set_={"role": insert.excluded.role, "source": insert.excluded.source},
                )
            )
            row = await session.get(MembershipRow, (team_id, user_id), populate_existing=True)
            assert row is not None  # written just above, in this transaction
            return membership_record(row)

    async def remove_member(
        self,
        team_id: str,
        user_id: str,
        *,
        authority: KeyAuthority = "admin",
        reason: str = OWNER_LEFT_TEAM,
    ) -> MemberRemoval:
        """Take a user out of a team, and stop the keys they own there: blocked as
        ``authority`` (``OWNER_LEFT_TEAM``), rotated ones' grace ended. The team's keys
        without an owner stay. Raises ``RecordNotFound`` when the user was not in the team."""
        require_one_of(authority, KEY_AUTHORITIES, "key authority")
        async with transaction(self._sessions, "membership changed concurrently") as session:
            # Locked (PostgreSQL): a key being made for the member in this team, which shares
            # the membership, is waited for and blocked too, or waits and is refused.
            row = await session.get(MembershipRow, (team_id, user_id), with_for_update=True)
            if row is None:
                raise RecordNotFound(f"user {user_id!r} is not a member of team {team_id!r}")
            await session.delete(row)
            await session.flush()
            blocked, ended = await block_member_keys(session, team_id, user_id, authority, reason)
            return MemberRemoval(
                team_id=team_id,
                user_id=user_id,
                blocked_keys=tuple(await key_records(session, blocked)),
                ended_grace=tuple(await key_records(session, ended)),
            )

    async def members(
        self, *, team_id: str | None = None, user_id: str | None = None
    ) -> list[MembershipRecord]:
        """Memberships of a team, of a user, or all of them."""
        query = select(MembershipRow).order_by(MembershipRow.team_id, MembershipRow.created_at)
        if team_id is not None:
            query = query.where(MembershipRow.team_id == team_id)
        if user_id is not None:
            query = query.where(MembershipRow.user_id == user_id)
        async with self._sessions() as session:
            return [membership_record(row) for row in await session.scalars(query)]


_NAME_LIMIT = 200
"""The longest team name (``teams.name``)."""

_KEY_SHARE = {"key_share": True}
"""``FOR KEY SHARE`` on PostgreSQL: the row may change but not go away (or change its key)."""


def _require_pair(issuer: str | None, group: str | None) -> None:
    if (issuer is None) != (group is None):
        raise InvalidRecord(
            "oidc_issuer and oidc_group are set together (or both null)", param="oidc_group"
        )


def _conflict(name: str | None, group: str | None) -> str:
    """What a unique violation means (a concurrent change overtook the checks)."""
    if group is None:
        return f"a team named {name!r} exists" if name else "the team changed concurrently"
    named = f"named {name!r} or " if name else ""
    return f"a team {named}standing for the group {group!r} exists"


async def _refuse_group_taken(
    session: AsyncSession, issuer: str, group: str, team_id: str | None
) -> None:
    """``RecordConflict`` naming the team (other than ``team_id``) standing for the group."""
    query = select(TeamRow).where(TeamRow.oidc_issuer == issuer, TeamRow.oidc_group == group)
    holder = await session.scalar(query)
    if holder is not None and holder.id != team_id:
        raise RecordConflict(
            f"the team {holder.name!r} (id {holder.id}) stands for {issuer!r}'s group"
            f" {group!r}; clear it there first (PATCH /admin/teams/{holder.id} with"
            ' "oidc_issuer": null, "oidc_group": null)'
        )


async def _team_row(
    session: AsyncSession, team_id: str, *, lock: bool | dict[str, bool] = False
) -> TeamRow:
    row = await session.get(TeamRow, team_id, with_for_update=lock or None)
    if row is None:
        raise RecordNotFound(f"no team with id {team_id!r}")
    return row
