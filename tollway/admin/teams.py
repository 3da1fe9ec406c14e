"""Admin API of teams and their members."""

from __future__ import annotations

from typing import Any

from tollway.admin import bodies
from tollway.admin.access import require_role, require_team
from tollway.admin.call import AdminCall, Route
from tollway.admin.render import record_json
from tollway.admin.users import owner_role
from tollway.auth.identity import audit_changes
from tollway.core.errors import InvalidRequest, PermissionDenied
from tollway.store import OWNER_LEFT_TEAM, KeyAuthority


async def create_team(call: AdminCall) -> dict[str, Any]:
    require_role(call.principal, "admin")
    body = await call.body(bodies.TeamCreate)
    group = _oidc_group(call, body.model_dump(exclude_unset=True))
    team = await call.gateway.store.teams.create(
        body.name, organization=body.organization, metadata=body.metadata, **group
    )
    details = {"name": team.name, **group}
    if group:  # sign-ins map the group by it from now on, here and on every replica
        await call.gateway.identity.identities_changed(
            call.actor, "team.create", "team", team.id, details
        )
    else:
        await call.gateway.identity.audit(call.actor, "team.create", "team", team.id, details)
    return record_json(team)


async def list_teams(call: AdminCall) -> dict[str, Any]:
    require_role(call.principal, "viewer")
    teams = await call.gateway.store.teams.find()
    if not call.principal.has_role("admin"):
        teams = [t for t in teams if t.id in call.principal.teams]
    return {"data": [record_json(team) for team in teams]}


async def get_team(call: AdminCall) -> dict[str, Any]:
    team_id = call.param("team_id")
    require_team(call.principal, team_id, "viewer")
    team = await call.gateway.store.teams.get(team_id)
    members = await call.gateway.store.teams.members(team_id=team_id)
    return {**record_json(team), "members": [record_json(m) for m in members]}


async def update_team(call: AdminCall) -> dict[str, Any]:
    require_role(call.principal, "admin")
    body = await call.body(bodies.TeamUpdate)
    changes = body.model_dump(exclude_unset=True)
    group = _oidc_group(call, changes)
    before = await call.gateway.store.teams.get(call.param("team_id"))
    team = await call.gateway.store.teams.update(before.id, **changes)
    await call.gateway.identity.audit(
        call.actor,
        "team.update",
        "team",
        team.id,
        {**audit_changes(before, team, changes), **group},
    )
    if group:  # the next sign-in of the group (or the one it left) maps it by the change
        await call.gateway.identity.load()
    if "organization" in changes:  # org budgets go by the team's organisation
        await call.gateway.limits.load()
    await call.gateway.fleet.announce("team", team.id)
    return record_json(team)


def _oidc_group(call: AdminCall, fields: dict[str, Any]) -> dict[str, str | None]:
    """The ``oidc_issuer`` and ``oidc_group`` a body sets (both or neither; both null clears
    them), the issuer one of ``auth.oidc[]``; 400 naming the field otherwise."""
    if "oidc_issuer" not in fields and "oidc_group" not in fields:
        return {}
    issuer, group = fields.get("oidc_issuer"), fields.get("oidc_group")
    if (issuer is None) != (group is None):
        missing = "oidc_group" if group is None else "oidc_issuer"
        raise InvalidRequest(
            f"'{missing}': oidc_issuer and oidc_group are set together (both null: the team"
            " stands for no group)",
            param=missing,
        )
    issuers = [entry.issuer for entry in call.gateway.settings.auth.oidc]
    if issuer is not None and issuer not in issuers:
        known = ", ".join(repr(i) for i in issuers) if issuers else "none is configured"
        raise InvalidRequest(
            f"'oidc_issuer': {issuer!r} is not an issuer of auth.oidc[] ({known})",
            param="oidc_issuer",
        )
    return {"oidc_issuer": issuer, "oidc_group": group}


async def delete_team(call: AdminCall) -> None:
    require_role(call.principal, "admin")
    team_id = call.param("team_id")
    deletion = await call.gateway.store.teams.delete(team_id)
    # The keys it revoked are named, as a member's removal names the keys it blocks: an
    # auditor asking when a key stopped working finds the event that stopped it.
    details = {
        "removed": list(deletion.removed),
        "revoked_keys": list(deletion.revoked_keys),
        "ended_grace": list(deletion.ended_grace),
    }
    await call.gateway.identity.identities_changed(
        call.actor, "team.delete", "team", team_id, details
    )
    if deletion.removed:  # its budgets and limits go from every replica's book too
        await call.gateway.fleet.limits_changed(f"team:{team_id}")


async def add_member(call: AdminCall) -> dict[str, Any]:
    team_id = call.param("team_id")
    require_team(call.principal, team_id, "team_admin")
    body = await call.body(bodies.MemberAdd)
    store = call.gateway.store
    # An add of a member changes their role: the event says the role it replaced (None:
    # they joined), or a viewer made team admin reads like a team admin added.
    was = await store.teams.members(team_id=team_id, user_id=body.user_id)
    membership = await store.teams.add_member(team_id, body.user_id, body.role)
    details = {
        "user_id": body.user_id,
        "role": body.role,
        "previous_role": was[0].role if was else None,
    }
    await call.gateway.identity.identities_changed(
        call.actor, "team.member.add", "team", team_id, details
    )
    return record_json(membership)


async def remove_member(call: AdminCall) -> dict[str, Any]:
    """Take a user out of a team; the keys they own there are blocked (docs/identity.md)."""
    team_id, user_id = call.param("team_id"), call.param("user_id")
    principal = call.principal
    require_team(principal, team_id, "team_admin")
    if not principal.has_role("admin") and await owner_role(call, user_id) == "admin":
        raise PermissionDenied(
            "Only an admin may remove an admin from a team (their keys there are blocked).",
            code="insufficient_role",
        )
    authority: KeyAuthority = "admin" if principal.has_role("admin") else "team_admin"
    removal = await call.gateway.store.teams.remove_member(team_id, user_id, authority=authority)
    blocked = [key.id for key in removal.blocked_keys]
    ended = [key.id for key in removal.ended_grace]
    details = {"user_id": user_id, "blocked_keys": blocked, "ended_grace": ended}
    await call.gateway.identity.identities_changed(
        call.actor, "team.member.remove", "team", team_id, details
    )
    return {
        "team_id": team_id,
        "user_id": user_id,
        "blocked_keys": [record_json(key) for key in removal.blocked_keys],
        "ended_grace": [record_json(key) for key in removal.ended_grace],
        "reason": OWNER_LEFT_TEAM,
    }


TEAM_ROUTES = [
    Route("POST", "/admin/teams", create_team, "Create a team", bodies.TeamCreate, 201),
    Route("GET", "/admin/teams", list_teams, "List teams"),
    Route("GET", "/admin/teams/{team_id}", get_team, "A team and its members"),
    Route("PATCH", "/admin/teams/{team_id}", update_team, "Change a team", bodies.TeamUpdate),
    Route("DELETE", "/admin/teams/{team_id}", delete_team, "Delete a team", status=204),
    Route(
        "POST", "/admin/teams/{team_id}/members", add_member, "Add a member", bodies.MemberAdd, 201
    ),
    Route(
        "DELETE",
        "/admin/teams/{team_id}/members/{user_id}",
        remove_member,
        "Remove a member; the keys they own in the team are blocked (listed in the answer)",
    ),
]
