"""Users: people and service accounts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollway.store.columns import utcnow
from tollway.store.errors import InvalidRecord, RecordConflict, RecordNotFound
from tollway.store.key_cascades import revoke_keys
from tollway.store.models import KeyRow, MembershipRow, UserRow, new_id
from tollway.store.records import (
    UNSET,
    USER_KINDS,
    USER_ROLES,
    Unset,
    UserKind,
    UserRecord,
    UserRole,
)
from tollway.store.transaction import (
    Sessions,
    dialect_insert,
    given,
    require_one_of,
    transaction,
)

_PROVISION_TRIES = 3
"""Inserts a provisioning may lose to other replicas' (each loss finds their user next)."""


def user_record(row: UserRow) -> UserRecord:
    """The record for a ``users`` row."""
    return UserRecord(
        id=row.id,
        email=row.email,
        name=row.name,
        kind=row.kind,
        role=row.role,
        blocked=row.blocked,
        metadata=dict(row.meta),
        created_at=row.created_at,
        updated_at=row.updated_at,
        oidc_issuer=row.oidc_issuer,
        oidc_subject=row.oidc_subject,
    )


def normal_email(email: str | None) -> str | None:
    """``email`` as stored: trimmed and lower-cased, so lookups ignore case."""
    if email is None:
        return None
    email = email.strip().lower()
    if "@" not in email:
        raise InvalidRecord(f"{email!r} is not an email address", param="email")
    return email


class UserRepository:
    """Creates, reads, changes and deletes users."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def create(
        self,
        *,
        email: str | None = None,
        name: str | None = None,
        kind: UserKind = "human",
        role: UserRole = "member",
        metadata: Mapping[str, Any] | None = None,
    ) -> UserRecord:
        """A new user; humans need an email, which must be unused (``RecordConflict``)."""
        require_one_of(kind, USER_KINDS, "user kind")
        require_one_of(role, USER_ROLES, "user role")
        email = normal_email(email)
        if kind == "human" and email is None:
            raise InvalidRecord("a human user needs an email", param="email")
        row = UserRow(email=email, name=name, kind=kind, role=role, meta=dict(metadata or {}))
        async with transaction(self._sessions, f"a user with email {email!r} exists") as session:
            session.add(row)
            await session.flush()
            return user_record(row)

    async def provision(
        self,
        issuer: str,
        subject: str,
        *,
        email: str | None = None,
        link_by_email: bool = False,
        name: str | None = None,
    ) -> tuple[UserRecord, str | None]:
        """The user of OIDC identity (``issuer``, ``subject``), found or made; with how it
        came to be: ``"created"``, ``"linked"`` (an existing user with ``email``, no other
        identity's, took this one: only with ``link_by_email``) or ``None`` (found).

        Safe with replicas doing it at once: the unique (issuer, subject) index and an
        insert that ignores conflicts make one user, the others find it. ``email`` is kept
        when no other user has it, else left out (never an error).
        """
        try:
            email = normal_email(email)
        except InvalidRecord:
            email = None
        for _ in range(_PROVISION_TRIES):
            found = await self._by_identity(issuer, subject)
            if found is not None:
                return found, None
            if email is not None and link_by_email and await self._link(issuer, subject, email):
                linked = await self._by_identity(issuer, subject)
                if linked is not None:
                    return linked, "linked"
            user_id = new_id()
            for kept_email in dict.fromkeys((email, None)):
                await self._insert_ignoring_conflicts(user_id, issuer, subject, kept_email, name)
                made = await self._by_identity(issuer, subject)
                if made is not None:
                    return made, "created" if made.id == user_id else None
        raise RecordConflict(f"the user of {subject!r} at {issuer!r} changed concurrently")

    async def _by_identity(self, issuer: str, subject: str) -> UserRecord | None:
        query = select(UserRow).where(
            UserRow.oidc_issuer == issuer, UserRow.oidc_subject == subject
        )
        async with self._sessions() as session:
            row = await session.scalar(query)
        return None if row is None else user_record(row)

    async def _link(self, issuer: str, subject: str, email: str) -> bool:
        """Give the user with ``email`` that no identity has yet this one (one statement:
        of two replicas linking at once, one does)."""
        unlinked = and_(UserRow.email == email, UserRow.oidc_issuer.is_(None))
        async with transaction(self._sessions, "identity linked concurrently") as session:
            result = await session.execute(
                update(UserRow)
                .where(unlinked)
                .values(oidc_issuer=issuer, oidc_subject=subject, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
        return bool(getattr(result, "rowcount", 0))

    async def _insert_ignoring_conflicts(
        self, user_id: str, issuer: str, subject: str, email: str | None, name: str | None
    ) -> None:
        now = utcnow()
        async with transaction(self._sessions, "user provisioned concurrently") as session:
            insert = dialect_insert(session)(UserRow).values(
                id=user_id, email=email, name=name, kind="human", role="member", blocked=False,
                meta={}, created_at=now, updated_at=now, oidc_issuer=issuer,
                oidc_subject=subject,
            )  # fmt: skip
            # Any unique conflict: the identity (another replica made it) or the email
            # (another user holds it; tried again without).
            await session.execute(insert.on_conflict_do_nothing())

    async def get(self, user_id: str) -> UserRecord:
        """The user with ``user_id``; raises ``RecordNotFound``."""
        async with self._sessions() as session:
            return user_record(await _user_row(session, user_id))

    async def get_by_email(self, email: str) -> UserRecord:
        """The user with ``email`` (any case); raises ``RecordNotFound``."""
        query = select(UserRow).where(UserRow.email == normal_email(email))
        async with self._sessions() as session:
            row = await session.scalar(query)
        if row is None:
            raise RecordNotFound(f"no user with email {email!r}")
        return user_record(row)

    async def find(
        self,
        *,
        kind: UserKind | None = None,
        role: UserRole | None = None,
        team_id: str | None = None,
        blocked: bool | None = None,
    ) -> list[UserRecord]:
        """Every user matching the given filters, oldest first."""
        query = select(UserRow).order_by(UserRow.created_at, UserRow.id)
        if kind is not None:
            query = query.where(UserRow.kind == kind)
        if role is not None:
            query = query.where(UserRow.role == role)
        if blocked is not None:
            query = query.where(UserRow.blocked == blocked)
        if team_id is not None:
            query = query.join(MembershipRow, MembershipRow.user_id == UserRow.id).where(
                MembershipRow.team_id == team_id
            )
        async with self._sessions() as session:
            return [user_record(row) for row in await session.scalars(query)]

    async def update(
        self,
        user_id: str,
        *,
        email: str | Unset | None = UNSET,
        name: str | Unset | None = UNSET,
        role: UserRole | Unset = UNSET,
        blocked: bool | Unset = UNSET,
        metadata: Mapping[str, Any] | Unset = UNSET,
    ) -> UserRecord:
        """The user with the given fields changed; ``None`` clears email or name."""
        if not isinstance(role, Unset):
            require_one_of(role, USER_ROLES, "user role")
        changes = given(name=name, role=role, blocked=blocked, meta=metadata)
        if not isinstance(email, Unset):
            changes["email"] = normal_email(email)
        if "meta" in changes:
            changes["meta"] = dict(changes["meta"])
        async with transaction(self._sessions, f"a user with email {email!r} exists") as session:
            row = await _user_row(session, user_id, lock=True)
            for field, value in changes.items():
                setattr(row, field, value)
            if row.kind == "human" and row.email is None and row.oidc_issuer is None:
                raise InvalidRecord("a human user needs an email", param="email")
            row.updated_at = utcnow()
            await session.flush()
            return user_record(row)

    async def delete(self, user_id: str) -> None:
        """Delete a user and their memberships; their keys are revoked first, then detached."""
        now = utcnow()
        async with transaction(self._sessions, "the user is still referenced") as session:
            # Locked first, as a team is (teams.py): a key being made for the user is revoked too.
            await _user_row(session, user_id, lock=True)
            await revoke_keys(session, KeyRow.user_id == user_id, now)
            await session.execute(delete(UserRow).where(UserRow.id == user_id))


async def _user_row(session: AsyncSession, user_id: str, *, lock: bool = False) -> UserRow:
    row = await session.get(UserRow, user_id, with_for_update=lock or None)
    if row is None:
        raise RecordNotFound(f"no user with id {user_id!r}")
    return row
