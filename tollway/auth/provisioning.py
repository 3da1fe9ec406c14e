"""Just-in-time provisioning: an OIDC sign-in's user and teams as the store's own.

A verified token names a user (``user_claim``) and teams (``team_claim`` values) that the
store may not know. With ``provision`` on (the default) the first request of an identity
finds or makes its store user (matched by issuer and user claim value) and the teams its
token names (matched by the issuer and group a team stands for, ``teams.oidc_group``, which a
rename keeps; a team an admin made under the group's name is taken on first sight), and
makes the user a member of those teams; the principal then carries the store's ids, so the
self-service key route, budgets and rate limits on the user or the team, the request log and
reports treat an OIDC caller like a key's owner.

The team set is always the token's: a later sign-in whose token no longer names a team
removes the membership a sign-in had made there (and blocks the keys the user owns in it, as
removing a member does); memberships an admin made stay. Every creation, link, addition and
removal is in the audit trail, its actor the identity.

Cheap on the hot path: the mapping is read from ``Identity``'s memory (rebuilt by every
reload); the store is asked only for an identity, team or membership change this node has
not seen, never for a plain repeat request. Safe with replicas: each creation is an insert
that ignores conflicts on a unique index (users: issuer and subject; teams: issuer and group),
or a conditional update, then a read, so two replicas provisioning one identity at once make
one user.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from tollway.auth.identity import Actor, Identity
from tollway.auth.principal import Principal
from tollway.config.schema import OIDCIssuerConfig
from tollway.core.errors import AuthenticationFailed, StoreUnavailable
from tollway.store import OWNER_LEFT_CLAIMED_TEAM, MemberRemoval, StoreError

_SUBJECT_LIMIT = 320
"""The longest user claim value the store keeps (``users.oidc_subject``)."""

_TEAM_NAME_LIMIT = 200
"""The longest team name the store keeps (``teams.name``)."""


def team_names(teams: Sequence[str]) -> tuple[str, ...]:
    """The claim values that can name a store team (a longer or NUL-holding one cannot)."""
    return tuple(t for t in teams if len(t) <= _TEAM_NAME_LIMIT and "\x00" not in t)


class Provisioner:
    """Maps OIDC principals to store users and teams, making them on first sight."""

    def __init__(self, identity: Identity) -> None:
        self._identity = identity
        # One sign-in at a time takes the slow path here; the others then find its work.
        self._slow = asyncio.Lock()

    async def principal(
        self, config: OIDCIssuerConfig, claims: Mapping[str, Any], principal: Principal
    ) -> Principal:
        """``principal`` (a verified token's, with claim values as its user and teams) with
        the store's user and team ids instead, provisioned when this node has not seen them."""
        subject = _subject(config, principal)
        names = team_names(principal.teams)
        mapped = self._mapped(config.issuer, subject, names)
        if mapped is None:
            async with self._slow:
                mapped = self._mapped(config.issuer, subject, names)
                if mapped is None:
                    mapped = await self._provision_or_503(config, claims, principal, subject)
        user_id, team_ids = mapped
        return dataclasses.replace(
            principal,
            user=user_id,
            team=team_ids[0] if team_ids else None,
            teams=team_ids,
            team_roles=dict.fromkeys(team_ids, principal.role),
        )

    def _mapped(
        self, issuer: str, subject: str, groups: tuple[str, ...]
    ) -> tuple[str, tuple[str, ...]] | None:
        """The user and team ids from memory, when nothing needs the store."""
        identity = self._identity
        user_id = identity.oidc_user(issuer, subject)
        if user_id is None:
            return None
        team_ids = []
        for group in groups:
            team_id = identity.oidc_team(issuer, group)
            if team_id is None:
                return None
            team_ids.append(team_id)
        ids = tuple(dict.fromkeys(team_ids))
        return (user_id, ids) if identity.memberships_match(user_id, frozenset(ids)) else None

    async def _provision_or_503(
        self,
        config: OIDCIssuerConfig,
        claims: Mapping[str, Any],
        principal: Principal,
        subject: str,
    ) -> tuple[str, tuple[str, ...]]:
        try:
            return await self._provision(config, claims, principal, subject)
        except (SQLAlchemyError, StoreError, OSError, TimeoutError):
            # The identity provider vouched for the caller; the store that would hold the
            # user cannot be asked (or kept the write waiting): a retry may succeed.
            raise StoreUnavailable(
                "Your sign-in cannot be set up now: the gateway's store is unavailable."
                " Retry shortly."
            ) from None

    async def _provision(
        self,
        config: OIDCIssuerConfig,
        claims: Mapping[str, Any],
        principal: Principal,
        subject: str,
    ) -> tuple[str, tuple[str, ...]]:
        names = team_names(principal.teams)
        identity, store = self._identity, self._identity.store
        actor = Actor(principal)
        email = claims.get("email")
        name = claims.get("name")
        user, how = await store.users.provision(
            config.issuer,
            subject,
            email=email if isinstance(email, str) else None,
            link_by_email=config.user_claim == "email",
            name=name[:200] if isinstance(name, str) else None,
        )
        by_group, made = await store.teams.provision(config.issuer, names)
        identity.note_provisioned(user, config.issuer, by_group)
        if how is not None:
            user_details = {"issuer": config.issuer, "subject": subject, "how": how}
            await identity.audit(actor, "user.provision", "user", user.id, user_details)
        for provisioned in made:
            team = provisioned.team
            details: dict[str, object] = {
                "name": team.name,
                "issuer": config.issuer,
                "group": team.oidc_group,
                "how": provisioned.how,
            }
            await identity.audit(actor, "team.provision", "team", team.id, details)
        team_ids = tuple(dict.fromkeys(by_group[n] for n in names if n in by_group))
        added, removals = await store.teams.sync_claimed(
            user.id, team_ids, reason=OWNER_LEFT_CLAIMED_TEAM
        )
        await self._audit_memberships(actor, user.id, added, removals)
        if (
            how is not None
            or made
            or added
            or removals
            or not identity.memberships_match(user.id, frozenset(team_ids))
        ):
            # Keys' principals follow memberships; other replicas learn it from the feed.
            await identity.load()
            await identity.announce("user", user.id)
        return user.id, team_ids

    async def _audit_memberships(
        self, actor: Actor, user_id: str, added: list[str], removals: list[MemberRemoval]
    ) -> None:
        details: dict[str, object]
        for team_id in added:
            details = {"user_id": user_id, "role": "member", "source": "oidc"}
            await self._identity.audit(actor, "team.member.add", "team", team_id, details)
        for removal in removals:
            details = {
                "user_id": user_id,
                "source": "oidc",
                "blocked_keys": [key.id for key in removal.blocked_keys],
                "ended_grace": [key.id for key in removal.ended_grace],
            }
            await self._identity.audit(
                actor, "team.member.remove", "team", removal.team_id, details
            )


def _subject(config: OIDCIssuerConfig, principal: Principal) -> str:
    """The stable id of the identity at its issuer: the user claim's value (``sub`` when it
    is absent); an email in lower case, as the store keeps emails."""
    value = principal.user or principal.id
    if len(value) > _SUBJECT_LIMIT or "\x00" in value:
        raise AuthenticationFailed(
            f"The token's {config.user_claim!r} claim cannot name a user (over"
            f" {_SUBJECT_LIMIT} characters, or a NUL).",
            code="invalid_token",
        )
    return value.lower() if config.user_claim == "email" and "@" in value else value
