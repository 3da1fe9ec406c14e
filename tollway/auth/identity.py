"""The identity service: keys, users and teams in memory, kept in step with the store.

Every change goes to the store first, then to the in-memory index (so it takes effect on this
node at once), then to the change feed (so other replicas reload what changed). A periodic
reconcile reloads everything, bounding how long a missed event can matter.

A change reaches the index as a fresh read of the key after the write (``reload_key``), never
as the write's own answer: two changes of one key can finish in either order, a read that
starts after both sees both. Reads that raced a change are not applied over it (see
``KeyIndex``), and a full reload applies users, memberships and keys together, only if no
reload that began after it has been applied already.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from tollway.auth.keys import KeyEntry, KeyIndex
from tollway.auth.miss_limit import UnknownKeyLimit
from tollway.auth.principal import ROLE_RANK, Principal, Role
from tollway.core.errors import StoreUnavailable
from tollway.store import (
    AuditEntry,
    KeyAuthority,
    KeyRecord,
    KeyStatus,
    MembershipRecord,
    NewKey,
    RecordNotFound,
    Store,
    UserRecord,
    generate_key,
)


def audit_changes(before: object, after: object, fields: Iterable[str]) -> dict[str, object]:
    """Audit details of an update: the fields it set, each as it was and as it became.

    Names alone could not tell a user made admin from one made viewer, nor say what models
    a key lost. ``before`` and ``after`` are the record read before the write and the one it
    returned; no record an update takes holds a secret (a key's hash is not among them).
    """
    names = sorted(fields)
    return {
        "fields": names,
        "before": audit_fields(before, names),
        "after": audit_fields(after, names),
    }


def audit_fields(record: object, names: Iterable[str]) -> dict[str, object]:
    """``names`` of ``record`` as the audit trail's JSON stores them."""
    return {name: _audit_value(getattr(record, name, None)) for name in names}


def _audit_value(value: object) -> object:
    """``value`` as the audit trail's JSON stores it."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_audit_value(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _audit_value(item) for key, item in value.items()}
    return value


_KEY_MADE = ("name", "user_id", "team_id", "allowed_models", "expires_at", "tags", "bound_teams")
"""The settings of a key its ``key.create`` event holds."""

_RELOAD_TRIES = 3
"""Reads of a key that other changes kept overtaking before it is left to the store."""

ChangeListener = Callable[[str, str], Awaitable[None]]
"""Called with (kind, id) after a change another replica must learn: ``("key", id)``..."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did an admin action, from where; written to the audit trail."""

    principal: Principal
    source_ip: str | None = None
    request_id: str | None = None

    @property
    def name(self) -> str:
        """How the audit trail names the actor: a key prefix, a user, or the principal id."""
        return self.principal.key_prefix or self.principal.user or self.principal.id


class Identity:
    """Loads identities from the store and applies changes to the store and memory together."""

    def __init__(
        self,
        store: Store,
        keys: KeyIndex | None = None,
        miss_limit: UnknownKeyLimit | None = None,
    ) -> None:
        """``miss_limit``: how often each client address may have the store asked about a
        key not in memory (for the index made here when ``keys`` is not given)."""
        self.store = store
        self.keys = keys if keys is not None else KeyIndex(self._lookup_by_hash, miss_limit)
        self._users: dict[str, UserRecord] = {}
        self._blocked_emails: frozenset[str] = frozenset()
        self._memberships: dict[tuple[str, str], MembershipRecord] = {}
        self._listeners: list[ChangeListener] = []
        # What OIDC sign-ins are mapped by (auth/provisioning.py), rebuilt by every load.
        self._oidc_users: dict[tuple[str, str], str] = {}
        self._oidc_teams: dict[tuple[str, str], str] = {}
        self._user_teams: dict[str, frozenset[str]] = {}
        self._claimed_teams: dict[str, frozenset[str]] = {}

    def on_change(self, listener: ChangeListener) -> None:
        """Register a listener (the fleet's change feed publishes through one)."""
        self._listeners.append(listener)

    async def load(self) -> None:
        """Reload users, memberships and every usable key from the store."""
        snapshot = self.keys.begin_snapshot()
        users = await self.store.users.find()
        teams = await self.store.teams.find()
        memberships = await self.store.teams.members()
        records = await self.store.keys.all_active()
        # From here on nothing awaits: what was read is applied whole, or not at all when a
        # reload that began later (and so read later) has been applied already.
        if self.keys.is_outdated(snapshot):
            return
        self._users = {user.id: user for user in users}
        self._blocked_emails = frozenset(
            user.email.lower() for user in users if user.blocked and user.email
        )
        self._memberships = {(m.team_id, m.user_id): m for m in memberships}
        self._oidc_users = {
            (user.oidc_issuer, user.oidc_subject): user.id
            for user in users
            if user.oidc_issuer is not None and user.oidc_subject is not None
        }
        self._oidc_teams = {
            (team.oidc_issuer, team.oidc_group): team.id
            for team in teams
            if team.oidc_issuer is not None and team.oidc_group is not None
        }
        user_teams: dict[str, set[str]] = {}
        claimed: dict[str, set[str]] = {}
        for m in memberships:
            user_teams.setdefault(m.user_id, set()).add(m.team_id)
            if m.source == "oidc":
                claimed.setdefault(m.user_id, set()).add(m.team_id)
        self._user_teams = {user: frozenset(teams) for user, teams in user_teams.items()}
        self._claimed_teams = {user: frozenset(teams) for user, teams in claimed.items()}
        self.keys.replace_all([self.entry(record) for record in records], snapshot)

    def oidc_user(self, issuer: str, subject: str) -> str | None:
        """The id of the user provisioned for an OIDC identity, if this node knows it."""
        return self._oidc_users.get((issuer, subject))

    def oidc_team(self, issuer: str, group: str) -> str | None:
        """The id of the team standing for an OIDC group, if this node knows it."""
        return self._oidc_teams.get((issuer, group))

    def memberships_match(self, user_id: str, team_ids: frozenset[str]) -> bool:
        """Whether ``user_id`` is a member of every team in ``team_ids`` and holds no
        membership a sign-in made (``source: oidc``) outside them: nothing to sync."""
        return (
            team_ids <= self._user_teams.get(user_id, frozenset())
            and self._claimed_teams.get(user_id, frozenset()) <= team_ids
        )

    def note_provisioned(self, user: UserRecord, issuer: str, teams: Mapping[str, str]) -> None:
        """Remember a user and the teams of ``issuer``'s groups (ids by group) a sign-in
        found or made (before the next load has them)."""
        if user.oidc_issuer is not None and user.oidc_subject is not None:
            self._oidc_users[(user.oidc_issuer, user.oidc_subject)] = user.id
        self._users.setdefault(user.id, user)
        self._oidc_teams.update(((issuer, group), team) for group, team in teams.items())

    def has_user(self, user_id: str) -> bool:
        """Whether ``user_id`` is a user of the store, as this node last read it."""
        return user_id in self._users

    def is_blocked(self, user: str) -> bool:
        """Whether the user (an email, as OIDC names users, or a user id) is blocked here."""
        record = self._users.get(user)
        return (record is not None and record.blocked) or user.lower() in self._blocked_emails

    async def reload_key(self, key_id: str) -> KeyRecord | None:
        """Refresh one key from the store (after a change here, or another replica's event);
        returns what was read (``None``: no such key)."""
        record: KeyRecord | None = None
        for _ in range(_RELOAD_TRIES):
            mark = self.keys.mark()
            try:
                record = await self.store.keys.get(key_id)
            except RecordNotFound:
                record = None
                if self.keys.remove(key_id, since=mark):
                    return None
                continue
            # Not applied when the key changed while it was read: that read may be older.
            if self.keys.put(self.entry(record), since=mark):
                return record
        # Overtaken every time: without it here, its next request reads the store itself.
        self.keys.remove(key_id)
        return record

    def entry(self, record: KeyRecord) -> KeyEntry:
        """The index entry, with the principal, for a stored key."""
        return KeyEntry(
            key_id=record.id,
            key_hash=record.key_hash,
            status=self._effective_status(record),
            expires_at=record.expires_at,
            grace_until=record.grace_until,
            principal=self.principal_for(record),
            blocked_reason=record.blocked_reason if record.status == "blocked" else None,
        )

    def _effective_status(self, record: KeyRecord) -> str:
        owner = self._users.get(record.user_id) if record.user_id else None
        return "blocked" if owner is not None and owner.blocked else record.status

    def principal_for(self, record: KeyRecord) -> Principal:
        """The principal a key acts as: its owner's role, raised by a team-admin membership.

        A key a team admin made for a member (``bound_teams``) acts only in the teams bound,
        and never as an admin: it has no more authority than its maker had.
        """
        role: Role = "member"
        owner = self._users.get(record.user_id) if record.user_id else None
        bound = record.bound_teams
        if owner is not None:
            role = owner.role if bound is None or owner.role != "admin" else "member"
        if record.team_id and record.user_id:
            membership = self._memberships.get((record.team_id, record.user_id))
            if membership is not None and ROLE_RANK[membership.role] > ROLE_RANK[role]:
                role = membership.role
        team_roles: dict[str, Role] = {
            team: membership.role
            for (team, user), membership in self._memberships.items()
            if user == record.user_id and (bound is None or team in bound)
        }
        if record.team_id is not None and record.team_id not in team_roles:
            # A team's service key (no owner, or an owner outside the team) is a plain member.
            team_roles[record.team_id] = "member"
        teams = tuple(team for team in team_roles if team != record.team_id)
        return Principal(
            kind="key",
            id=record.id,
            role=role,
            user=record.user_id,
            team=record.team_id,
            teams=teams if record.team_id is None else (record.team_id, *teams),
            allowed_models=record.allowed_models or None,
            tags=dict(record.tags),
            key_prefix=record.prefix,
            team_roles=team_roles,
            lineage=record.lineage,
        )

    async def _lookup_by_hash(self, key_hash: str) -> KeyEntry | None:
        try:
            record = await self.store.keys.get_by_hash(key_hash)
        except RecordNotFound:
            return None
        except (SQLAlchemyError, OSError, TimeoutError):
            # Not known here, and the store that would know cannot be asked: not a 401 (the
            # key may be good) nor a 500, but a 503 the client may retry.
            raise StoreUnavailable(
                "The key cannot be checked now: the gateway's store is unreachable. Retry shortly."
            ) from None
        return self.entry(record)

    async def create_key(
        self, actor: Actor, new: Callable[[str, str], NewKey], *, owner_in_team: bool = False
    ) -> tuple[KeyRecord, str]:
        """Make a key from ``new(prefix, hash)``; returns the record and the secret, once.
        ``owner_in_team``: its owner must be a member of its team (``KeyRepository.create``)."""
        generated = generate_key()
        made = new(generated.prefix, generated.key_hash)
        record = await self.store.keys.create(made, owner_in_team=owner_in_team)
        self.keys.put(self.entry(record))
        # What the key may do and whose it is, as made (never its secret or its hash).
        details = {
            "prefix": record.prefix,
            **audit_fields(record, _KEY_MADE),
        }
        await self.audit(actor, "key.create", "key", record.id, details)
        await self._changed("key", record.id)
        return record, generated.key

    async def rotate_key(
        self,
        actor: Actor,
        key_id: str,
        grace: dt.timedelta | None,
        *,
        bound_teams: tuple[str, ...] | None = None,
    ) -> tuple[KeyRecord, str]:
        """Replace a key by a new one; the old one works until the grace period ends.
        ``bound_teams``: the teams the new key acts in (``None``: the old key's)."""
        generated = generate_key()
        grace_until = dt.datetime.now(dt.UTC) + grace if grace else None
        record = await self.store.keys.rotate(
            key_id,
            prefix=generated.prefix,
            key_hash=generated.key_hash,
            grace_until=grace_until,
            bound_teams=bound_teams,
        )
        await self.reload_key(key_id)
        await self.reload_key(record.id)
        details = {
            "new_key": record.id,
            "grace_until": grace_until.isoformat() if grace_until else None,
        }
        await self.audit(actor, "key.rotate", "key", key_id, details)
        await self._changed("key", key_id)
        await self._changed("key", record.id)
        return record, generated.key

    async def set_key_status(
        self, actor: Actor, key_id: str, status: KeyStatus, authority: KeyAuthority = "admin"
    ) -> KeyRecord:
        """Revoke, block or unblock a key as ``authority`` (see ``KeyRepository.set_status``);
        effective on this node before this returns."""
        record = await self.store.keys.set_status(key_id, status, authority=authority)
        await self.reload_key(key_id)
        # Blocking or revoking ended the grace period of the keys this one replaced.
        ended = await self._reload_predecessors(record) if status != "active" else []
        action = {"revoked": "key.revoke", "blocked": "key.block", "active": "key.unblock"}
        details = {"authority": authority} if status == "blocked" else {}
        await self.audit(actor, action[status], "key", key_id, details)
        for changed in (key_id, *ended):
            await self._changed("key", changed)
        return record

    async def _reload_predecessors(self, record: KeyRecord) -> list[str]:
        """Reload the keys ``record`` was rotated from; their ids."""
        ids: list[str] = []
        previous = record.rotated_from
        while previous is not None and previous not in ids and previous != record.id:
            ids.append(previous)
            earlier = await self.reload_key(previous)
            previous = earlier.rotated_from if earlier is not None else None
        return ids

    async def update_key(
        self, actor: Actor, key_id: str, changes: Mapping[str, object]
    ) -> KeyRecord:
        """Change a key's name, models, expiry, tags or metadata (audited as they were and
        as they became)."""
        before = await self.store.keys.get(key_id)
        record = await self.store.keys.update(key_id, **changes)  # type: ignore[arg-type]
        await self.reload_key(key_id)
        await self.audit(actor, "key.update", "key", key_id, audit_changes(before, record, changes))
        await self._changed("key", key_id)
        return record

    async def identities_changed(
        self,
        actor: Actor,
        action: str,
        target_type: str,
        target_id: str,
        details: Mapping[str, object],
    ) -> None:
        """After a user, team or membership change: audit it and re-derive every key."""
        await self.audit(actor, action, target_type, target_id, details)
        await self.load()
        await self._changed(target_type, target_id)

    async def audit(
        self,
        actor: Actor,
        action: str,
        target_type: str | None,
        target_id: str | None,
        details: Mapping[str, object],
    ) -> None:
        """Append one event to the audit trail."""
        await self.store.audit.append(
            AuditEntry(
                actor=actor.name,
                action=action,
                target_type=target_type,
                target_id=target_id,
                details=dict(details),
                source_ip=actor.source_ip,
                request_id=actor.request_id,
            )
        )

    async def announce(self, kind: str, target_id: str) -> None:
        """Tell the change listeners (other replicas) that ``kind`` ``target_id`` changed."""
        await self._changed(kind, target_id)

    async def _changed(self, kind: str, target_id: str) -> None:
        for listener in self._listeners:
            await listener(kind, target_id)
