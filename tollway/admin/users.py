"""Admin API of users (people and service accounts), and of the caller itself."""

from __future__ import annotations

from typing import Any

from tollway.admin import bodies
from tollway.admin.access import require_role, require_team
from tollway.admin.call import AdminCall, Query, Route
from tollway.admin.render import record_json
from tollway.auth.identity import audit_changes
from tollway.auth.principal import Role
from tollway.store import RecordNotFound


async def whoami(call: AdminCall) -> dict[str, Any]:
    p = call.principal
    return {
        "kind": p.kind,
        "id": p.id,
        "role": p.role,
        "user": p.user,
        "team": p.team,
        "teams": list(p.teams),
        "key_prefix": p.key_prefix,
    }


async def create_user(call: AdminCall) -> dict[str, Any]:
    require_role(call.principal, "admin")
    body = await call.body(bodies.UserCreate)
    user = await call.gateway.store.users.create(
        email=body.email, name=body.name, kind=body.kind, role=body.role, metadata=body.metadata
    )
    await call.gateway.identity.identities_changed(
        call.actor, "user.create", "user", user.id, {"role": user.role}
    )
    return record_json(user)


async def list_users(call: AdminCall) -> dict[str, Any]:
    require_role(call.principal, "team_admin")
    team_id = call.request.query.get("team_id")
    if not call.principal.has_role("admin"):
        require_team(call.principal, team_id, "team_admin")
    users = await call.gateway.store.users.find(team_id=team_id)
    return {"data": [record_json(user) for user in users]}


async def get_user(call: AdminCall) -> dict[str, Any]:
    user_id = call.param("user_id")
    if call.principal.user != user_id:
        require_role(call.principal, "admin")
    user = await call.gateway.store.users.get(user_id)
    memberships = await call.gateway.store.teams.members(user_id=user_id)
    return {**record_json(user), "teams": [record_json(m) for m in memberships]}


async def update_user(call: AdminCall) -> dict[str, Any]:
    require_role(call.principal, "admin")
    body = await call.body(bodies.UserUpdate)
    changes = body.model_dump(exclude_unset=True)
    before = await call.gateway.store.users.get(call.param("user_id"))
    user = await call.gateway.store.users.update(before.id, **changes)
    await call.gateway.identity.identities_changed(
        call.actor, "user.update", "user", user.id, audit_changes(before, user, changes)
    )
    return record_json(user)


async def owner_role(call: AdminCall, user_id: str | None) -> Role | None:
    """The role of a key's owner, from the store (a user made on another replica a moment
    ago counts too)."""
    if user_id is None:
        return None
    try:
        return (await call.gateway.store.users.get(user_id)).role
    except RecordNotFound:
        return None


CALLER_ROUTES = [
    Route("GET", "/admin/whoami", whoami, "The caller's identity and role"),
]

USER_ROUTES = [
    Route("POST", "/admin/users", create_user, "Create a user", bodies.UserCreate, 201),
    Route(
        "GET",
        "/admin/users",
        list_users,
        "List users",
        query=(Query("team_id", "Members of this team id (a team admin: required)"),),
    ),
    Route("GET", "/admin/users/{user_id}", get_user, "A user and their teams"),
    Route(
        "PATCH",
        "/admin/users/{user_id}",
        update_user,
        "Change (or block) a user",
        bodies.UserUpdate,
    ),
]
