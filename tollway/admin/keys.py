"""Admin API of virtual keys: made, read, changed, rotated, revoked, blocked, unblocked.

Who may do what is in access.py; a key's secret is in the answer of its creation or
rotation only.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from tollway.admin import bodies
from tollway.admin.access import (
    key_authority,
    may_read_key,
    own_team,
    require_key_manager,
    require_may_unblock,
    require_models_within,
    require_outranked_owner,
    require_owner_within_reach,
    require_role,
    require_team,
)
from tollway.admin.call import AdminCall, Handler, Query, Route
from tollway.admin.render import record_json
from tollway.admin.users import owner_role
from tollway.core.errors import InvalidRequest, NotFound, PermissionDenied
from tollway.store import KeyRecord, KeyStatus, NewKey


async def create_key(call: AdminCall) -> dict[str, Any]:
    body = await call.body(bodies.KeyCreate)
    principal = call.principal
    user_id, team_id = body.user_id, body.team_id
    bound_teams: tuple[str, ...] | None = None
    if not principal.has_role("admin"):
        user_id = await _key_owner_for(call, team_id, user_id)
        if team_id is None:  # a key for oneself: in one's only team
            team_id = own_team(principal)
        _require_store_user(call, user_id)
        await _require_member(call, team_id, user_id)
        require_models_within(principal, body.allowed_models)
        bound_teams = await _teams_to_bind(call, user_id, team_id)
    expires_at = body.expires_at
    if body.expires_in is not None:
        expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=body.expires_in)

    def new(prefix: str, key_hash: str) -> NewKey:
        return NewKey(
            name=body.name,
            prefix=prefix,
            key_hash=key_hash,
            user_id=user_id,
            team_id=team_id,
            allowed_models=tuple(body.allowed_models),
            expires_at=expires_at,
            tags=body.tags,
            metadata=body.metadata,
            bound_teams=bound_teams,
        )

    # A key a non-admin makes must stay in a team of its owner's, also against a removal of
    # the owner from the team while it is made (judged again in the key's transaction).
    owner_in_team = not principal.has_role("admin") and _membership_applies(call, user_id)
    identity = call.gateway.identity
    record, secret = await identity.create_key(call.actor, new, owner_in_team=owner_in_team)
    return {**record_json(record), "key": secret}


async def _key_owner_for(call: AdminCall, team_id: str | None, user_id: str | None) -> str | None:
    """Whom a non-admin may create a key for: themselves, or (as the team's admin) one of the
    team's members or the team itself (a service key with no owner)."""
    principal = call.principal
    if team_id is not None:
        require_team(principal, team_id, "member")
    if user_id in (None, principal.user) and not (
        user_id is None and principal.role_in(team_id) == "team_admin"
    ):
        require_role(principal, "member")
        if principal.user is None:
            # A team's service key: a key "for itself" would belong to nobody, and it could
            # neither see nor revoke it afterwards.
            raise PermissionDenied(
                "A key without an owner cannot make keys.", code="insufficient_role"
            )
        return principal.user
    require_team(principal, team_id, "team_admin")
    if user_id is not None:
        require_outranked_owner(principal, await owner_role(call, user_id))
        await _require_owner_within_reach(call, user_id)
    return user_id


async def _teams_to_bind(
    call: AdminCall, user_id: str | None, team_id: str | None
) -> tuple[str, ...] | None:
    """The teams a key a non-admin makes (or rotates) for someone else acts in: those the
    caller administers among its owner's teams now (and the key's own). ``None`` (every team
    of the owner's, as today) for a key of one's own, or for a team's key (no owner)."""
    if user_id is None or user_id == call.principal.user:
        return None
    memberships = await call.gateway.store.teams.members(user_id=user_id)
    administered = [
        m.team_id for m in memberships if call.principal.role_in(m.team_id) == "team_admin"
    ]
    return tuple(dict.fromkeys([*([team_id] if team_id else []), *administered]))


def _require_store_user(call: AdminCall, user_id: str | None) -> None:
    """403 for an OIDC caller's own key when its issuer does not provision store users: the
    key's owner must be one (``auth.oidc[].provision``)."""
    principal = call.principal
    known = user_id is None or call.gateway.identity.has_user(user_id)
    if principal.kind == "oidc" and user_id == principal.user and not known:
        raise PermissionDenied(
            "A key needs an owner the gateway knows, and your sign-in has no user in its"
            " store (its issuer's 'provision' is off): ask an admin to make the key.",
            code="not_provisioned",
        )


async def _require_owner_within_reach(call: AdminCall, user_id: str | None) -> None:
    """403 when the caller would hold the secret of a key acting, as its owner ``user_id``,
    in a team the caller does not administer (access.py)."""
    if user_id is None or user_id == call.principal.user or call.principal.has_role("admin"):
        return
    memberships = await call.gateway.store.teams.members(user_id=user_id)
    require_owner_within_reach(call.principal, [m.team_id for m in memberships])


def _membership_applies(call: AdminCall, user_id: str | None) -> bool:
    """Whether a key for ``user_id`` that a non-admin makes needs its owner in its team by
    the store's memberships: not for a team's own key (no owner), nor for an OIDC caller's
    own, whose teams come from its token, which the identity provider vouches for."""
    return user_id is not None and not (
        call.principal.kind == "oidc" and user_id == call.principal.user
    )


async def _require_member(call: AdminCall, team_id: str, user_id: str | None) -> None:
    """403 unless the owner of a key a non-admin makes is a member of the key's team (the
    team's budgets must apply to it). A key's own team counts in its principal even for an
    owner who has left the team, so the store's membership decides."""
    if not _membership_applies(call, user_id):
        return
    members = await call.gateway.store.teams.members(team_id=team_id)
    if all(member.user_id != user_id for member in members):
        who = "you are" if user_id == call.principal.user else "its owner is"
        raise PermissionDenied(
            f"A key you make must belong to a team {who} a member of.", code="outside_team"
        )


async def list_keys(call: AdminCall) -> dict[str, Any]:
    require_role(call.principal, "viewer")
    query = call.request.query
    status = query.get("status")
    if status not in (None, "active", "blocked", "revoked"):
        raise InvalidRequest("'status' must be active, blocked or revoked", param="status")
    keys = await call.gateway.store.keys.find(
        team_id=query.get("team_id"),
        user_id=query.get("user_id"),
        status=status,  # type: ignore[arg-type]
    )
    return {"data": [record_json(k) for k in keys if may_read_key(call.principal, k)]}


async def _readable_key(call: AdminCall) -> Any:
    key = await call.gateway.store.keys.get(call.param("key_id"))
    if not may_read_key(call.principal, key):
        raise NotFound(f"no key with id {key.id!r}", code="not_found")
    return key


async def get_key(call: AdminCall) -> dict[str, Any]:
    return record_json(await _readable_key(call))


async def update_key(call: AdminCall) -> dict[str, Any]:
    key = await _readable_key(call)
    require_key_manager(call.principal, key, await owner_role(call, key.user_id))
    body = await call.body(bodies.KeyUpdate)
    if body.allowed_models is not None and not call.principal.has_role("admin"):
        require_models_within(call.principal, body.allowed_models)
    changes = {
        k: (tuple(v) if k == "allowed_models" else v)
        for k, v in body.model_dump(exclude_unset=True).items()
    }
    record = await call.gateway.identity.update_key(call.actor, key.id, changes)
    return record_json(record)


async def rotate_key(call: AdminCall) -> dict[str, Any]:
    key = await _readable_key(call)
    require_key_manager(call.principal, key, await owner_role(call, key.user_id))
    await _require_owner_within_reach(call, key.user_id)  # the caller gets the new secret
    body = await call.body(bodies.KeyRotate) if call.request.can_read_body else bodies.KeyRotate()
    grace = dt.timedelta(seconds=body.grace_period) if body.grace_period else None
    # Whoever rotates holds the new secret: below an admin, it acts in no team beyond theirs.
    bind_to = None
    if not call.principal.has_role("admin"):
        bind_to = await _teams_to_bind(call, key.user_id, key.team_id)
        if bind_to is not None and key.bound_teams is not None:
            bind_to = tuple(team for team in bind_to if team in key.bound_teams)
    record, secret = await call.gateway.identity.rotate_key(
        call.actor, key.id, grace, bound_teams=bind_to
    )
    # Key-scoped budgets and limits go by the rotation chain: every replica learns the new
    # key's chain, so an entry later set on its id joins the chain's account.
    await call.gateway.fleet.limits_changed(f"key:{record.id}")
    return {**record_json(record), "key": secret}


def _status_change(status: KeyStatus) -> Handler:
    async def change(call: AdminCall) -> dict[str, Any]:
        key = await _readable_key(call)
        require_key_manager(call.principal, key, await owner_role(call, key.user_id))
        authority = key_authority(call.principal, key)
        if status == "active":
            require_may_unblock(authority, key)
            if authority != "admin":
                await _require_owner_in_team(call, key)
        identity = call.gateway.identity
        return record_json(await identity.set_key_status(call.actor, key.id, status, authority))

    return change


async def _require_owner_in_team(call: AdminCall, key: KeyRecord) -> None:
    """403 unless the owner of ``key`` (if it has one, and a team) is a member of its team: a
    key blocked when its owner left the team comes back only through an admin."""
    if key.user_id is None or key.team_id is None:
        return
    if not await call.gateway.store.teams.members(team_id=key.team_id, user_id=key.user_id):
        raise PermissionDenied(
            "This key's owner is not a member of the key's team; only an admin may unblock it.",
            code="outside_team",
        )


KEY_ROUTES = [
    Route(
        "POST",
        "/admin/keys",
        create_key,
        "Create a virtual key (shown once)",
        bodies.KeyCreate,
        201,
    ),
    Route(
        "GET",
        "/admin/keys",
        list_keys,
        "List keys",
        query=(
            Query("team_id", "Keys of this team id"),
            Query("user_id", "Keys of this user id"),
            Query("status", "active, blocked or revoked"),
        ),
    ),
    Route("GET", "/admin/keys/{key_id}", get_key, "A key (never its secret)"),
    Route("PATCH", "/admin/keys/{key_id}", update_key, "Change a key", bodies.KeyUpdate),
    Route(
        "POST",
        "/admin/keys/{key_id}/rotate",
        rotate_key,
        "Rotate a key (new one shown once)",
        bodies.KeyRotate,
        201,
        body_required=False,  # no body: no grace period
    ),
    Route("POST", "/admin/keys/{key_id}/revoke", _status_change("revoked"), "Revoke a key"),
    Route("POST", "/admin/keys/{key_id}/block", _status_change("blocked"), "Block a key"),
    Route("POST", "/admin/keys/{key_id}/unblock", _status_change("active"), "Unblock a key"),
]
