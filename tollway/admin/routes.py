"""The admin API's handlers and its route table (which also drives the OpenAPI document)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from tollway.admin import bodies
from tollway.admin.access import (
    key_authority,
    may_read_key,
    own_team,
    require_key_manager,
    require_may_unblock,
    require_models_within,
    require_outranked_owner,
    require_role,
    require_team,
)
from tollway.admin.render import record_json
from tollway.auth.identity import Actor
from tollway.auth.principal import Principal, Role
from tollway.core.errors import (
    AuthenticationFailed,
    GatewayError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from tollway.dialects.http import log_internal_error, read_json_object, request_id
from tollway.dialects.openai import error_response
from tollway.store import (
    OWNER_LEFT_TEAM,
    CredentialRecord,
    InvalidRecord,
    KeyAuthority,
    KeyRecord,
    KeyStatus,
    NewKey,
    RecordConflict,
    RecordNotFound,
    VaultKeyError,
)
from tollway.store.audit import MAX_PAGE as MAX_AUDIT_PAGE

if TYPE_CHECKING:
    from tollway.gateway import Gateway

B = TypeVar("B", bound=BaseModel)

Handler = Callable[["AdminCall"], Awaitable[Any]]


class Conflict(GatewayError):
    """The change conflicts with what exists (a duplicate name, a revoked key...)."""

    status = 409
    openai_type = "invalid_request_error"


class VaultUnavailable(GatewayError):
    """The vault key (``TOLLWAY_VAULT_KEY``) is missing or wrong, so a credential cannot be
    stored or read until the operator sets it: the message says what to do."""

    status = 503
    openai_type = "server_error"
    anthropic_type = "api_error"


@dataclass(frozen=True, slots=True)
class AdminCall:
    """One admin request: the caller, its parameters, and the gateway."""

    request: web.Request
    actor: Actor
    gateway: Gateway

    @property
    def principal(self) -> Principal:
        """The caller."""
        return self.actor.principal

    def param(self, name: str) -> str:
        """A path parameter."""
        return self.request.match_info[name]

    async def body(self, model: type[B]) -> B:
        """The JSON body validated as ``model``; 400 naming the field otherwise."""
        raw = await read_json_object(self.request, self.gateway.max_body_size)
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            field = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            raise InvalidRequest(f"'{field}': {message}", param=field) from None


@dataclass(frozen=True, slots=True)
class Route:
    """One admin endpoint: method, path, handler, what it does, its body model."""

    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    status: int = 200


def admin_routes(gateway: Gateway, routes: list[Route]) -> list[web.RouteDef]:
    """aiohttp routes that authenticate, authorise and answer in one error shape."""

    def wrap(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            rid = request_id(request)
            headers = {"x-request-id": rid}
            try:
                principal = await gateway.authenticator.authenticate(request.headers)
                if principal.kind == "anonymous":
                    # Not authenticated (401), whatever anonymous callers may do elsewhere.
                    raise AuthenticationFailed(
                        "The admin API needs a key or a token: send 'Authorization: Bearer <key>'.",
                        code="missing_api_key",
                    )
                actor = Actor(principal, request.remote, rid)
                result = await route.handler(AdminCall(request, actor, gateway))
            except GatewayError as exc:
                return error_response(exc, headers)
            except RecordNotFound as exc:
                return error_response(NotFound(str(exc), code="not_found"), headers)
            except RecordConflict as exc:
                return error_response(Conflict(str(exc), code="conflict"), headers)
            except InvalidRecord as exc:
                return error_response(InvalidRequest(str(exc)), headers)
            except VaultKeyError as exc:  # names the variable, never a key
                return error_response(VaultUnavailable(str(exc), code="vault_unavailable"), headers)
            except Exception as exc:
                down = await gateway.outage(exc)
                return error_response(down or log_internal_error(rid, exc), headers)
            if result is None:
                return web.Response(status=204, headers=headers)
            if isinstance(result, web.StreamResponse):  # streamed by the handler itself
                return result
            return web.Response(
                status=route.status,
                body=orjson.dumps(result),
                content_type="application/json",
                headers=headers,
            )

        return handle

    return [web.route(r.method, r.path, wrap(r)) for r in routes]


# Teams ---------------------------------------------------------------------------------


async def create_team(call: AdminCall) -> dict[str, Any]:
    require_role(call.principal, "admin")
    body = await call.body(bodies.TeamCreate)
    team = await call.gateway.store.teams.create(
        body.name, organization=body.organization, metadata=body.metadata
    )
    await call.gateway.identity.audit(
        call.actor, "team.create", "team", team.id, {"name": team.name}
    )
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
    team = await call.gateway.store.teams.update(call.param("team_id"), **changes)
    await call.gateway.identity.audit(
        call.actor, "team.update", "team", team.id, {"fields": sorted(changes)}
    )
    if "organization" in changes:  # org budgets go by the team's organisation
        await call.gateway.limits.load()
    await call.gateway.fleet.announce("team", team.id)
    return record_json(team)


async def delete_team(call: AdminCall) -> None:
    require_role(call.principal, "admin")
    team_id = call.param("team_id")
    await call.gateway.store.teams.delete(team_id)
    await call.gateway.identity.identities_changed(call.actor, "team.delete", "team", team_id, {})


async def add_member(call: AdminCall) -> dict[str, Any]:
    team_id = call.param("team_id")
    require_team(call.principal, team_id, "team_admin")
    body = await call.body(bodies.MemberAdd)
    membership = await call.gateway.store.teams.add_member(team_id, body.user_id, body.role)
    await call.gateway.identity.identities_changed(
        call.actor, "team.member.add", "team", team_id, {"user_id": body.user_id, "role": body.role}
    )
    return record_json(membership)


async def remove_member(call: AdminCall) -> dict[str, Any]:
    """Take a user out of a team; the keys they own there are blocked (docs/identity.md)."""
    team_id, user_id = call.param("team_id"), call.param("user_id")
    principal = call.principal
    require_team(principal, team_id, "team_admin")
    if not principal.has_role("admin") and await _owner_role(call, user_id) == "admin":
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


# Users ---------------------------------------------------------------------------------


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
    user = await call.gateway.store.users.update(call.param("user_id"), **changes)
    await call.gateway.identity.identities_changed(
        call.actor, "user.update", "user", user.id, {"fields": sorted(changes)}
    )
    return record_json(user)


# Keys ----------------------------------------------------------------------------------


async def create_key(call: AdminCall) -> dict[str, Any]:
    body = await call.body(bodies.KeyCreate)
    principal = call.principal
    user_id, team_id = body.user_id, body.team_id
    if not principal.has_role("admin"):
        user_id = await _key_owner_for(call, team_id, user_id)
        if team_id is None:  # a key for oneself: in one's only team
            team_id = own_team(principal)
        await _require_member(call, team_id, user_id)
        require_models_within(principal, body.allowed_models)
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
        require_outranked_owner(principal, await _owner_role(call, user_id))
    return user_id


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


async def _owner_role(call: AdminCall, user_id: str | None) -> Role | None:
    """The role of a key's owner, from the store (a user made on another replica a moment
    ago counts too)."""
    if user_id is None:
        return None
    try:
        return (await call.gateway.store.users.get(user_id)).role
    except RecordNotFound:
        return None


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
    require_key_manager(call.principal, key, await _owner_role(call, key.user_id))
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
    require_key_manager(call.principal, key, await _owner_role(call, key.user_id))
    body = await call.body(bodies.KeyRotate) if call.request.can_read_body else bodies.KeyRotate()
    grace = dt.timedelta(seconds=body.grace_period) if body.grace_period else None
    record, secret = await call.gateway.identity.rotate_key(call.actor, key.id, grace)
    # Key-scoped budgets and limits go by the rotation chain: every replica learns the new
    # key's chain, so an entry later set on its id joins the chain's account.
    await call.gateway.fleet.limits_changed(f"key:{record.id}")
    return {**record_json(record), "key": secret}


def _status_change(status: KeyStatus) -> Handler:
    async def change(call: AdminCall) -> dict[str, Any]:
        key = await _readable_key(call)
        require_key_manager(call.principal, key, await _owner_role(call, key.user_id))
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


# Credentials and audit -----------------------------------------------------------------


async def add_credential(call: AdminCall) -> dict[str, Any]:
    """Add a credential; 409 when the name is taken (rotate with PUT)."""
    require_role(call.principal, "admin")
    body = await call.body(bodies.CredentialPut)
    try:
        record = await call.gateway.store.credentials.add(body.name, body.provider, body.secret)
    except RecordConflict:
        raise Conflict(
            f"a credential named {body.name!r} exists; PUT to rotate it", code="conflict"
        ) from None
    return await _credential_stored(call, body, record)


async def rotate_credential(call: AdminCall) -> dict[str, Any]:
    """Create or replace the credential named in the path."""
    require_role(call.principal, "admin")
    body = await call.body(bodies.CredentialPut)
    if body.name != call.param("name"):
        raise InvalidRequest("the body's 'name' must match the path", param="name")
    record = await call.gateway.store.credentials.put(body.name, body.provider, body.secret)
    return await _credential_stored(call, body, record)


async def _credential_stored(
    call: AdminCall, body: bodies.CredentialPut, record: CredentialRecord
) -> dict[str, Any]:
    await call.gateway.fleet.credentials_changed(body.name)
    await call.gateway.identity.audit(
        call.actor, "credential.put", "credential", body.name, {"provider": body.provider}
    )
    return record_json(record)


async def list_credentials(call: AdminCall) -> dict[str, Any]:
    require_role(call.principal, "admin")
    return {"data": [record_json(c) for c in await call.gateway.store.credentials.find()]}


async def delete_credential(call: AdminCall) -> None:
    require_role(call.principal, "admin")
    name = call.param("name")
    await call.gateway.store.credentials.delete(name)
    await call.gateway.fleet.credentials_changed(name)
    await call.gateway.identity.audit(call.actor, "credential.delete", "credential", name, {})


async def list_audit(call: AdminCall) -> dict[str, Any]:
    require_role(call.principal, "admin")
    query = call.request.query
    try:
        limit = int(query.get("limit", "100"))
    except ValueError:
        raise InvalidRequest("'limit' must be an integer", param="limit") from None
    if not 1 <= limit <= MAX_AUDIT_PAGE:
        # As /admin/logs answers it (5000 was quietly cut to 1000, 0 refused unnamed).
        raise InvalidRequest(f"'limit' must be between 1 and {MAX_AUDIT_PAGE}", param="limit")
    page = await call.gateway.store.audit.page(
        actor=query.get("actor"),
        action=query.get("action"),
        target_type=query.get("target_type"),
        target_id=query.get("target_id"),
        limit=limit,
        cursor=query.get("cursor"),
    )
    return {"data": [record_json(e) for e in page.events], "next_cursor": page.next_cursor}


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


ROUTES = [
    Route("GET", "/admin/whoami", whoami, "The caller's identity and role"),
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
    Route("POST", "/admin/users", create_user, "Create a user", bodies.UserCreate, 201),
    Route("GET", "/admin/users", list_users, "List users"),
    Route("GET", "/admin/users/{user_id}", get_user, "A user and their teams"),
    Route(
        "PATCH",
        "/admin/users/{user_id}",
        update_user,
        "Change (or block) a user",
        bodies.UserUpdate,
    ),
    Route(
        "POST",
        "/admin/keys",
        create_key,
        "Create a virtual key (shown once)",
        bodies.KeyCreate,
        201,
    ),
    Route("GET", "/admin/keys", list_keys, "List keys"),
    Route("GET", "/admin/keys/{key_id}", get_key, "A key (never its secret)"),
    Route("PATCH", "/admin/keys/{key_id}", update_key, "Change a key", bodies.KeyUpdate),
    Route(
        "POST",
        "/admin/keys/{key_id}/rotate",
        rotate_key,
        "Rotate a key (new one shown once)",
        bodies.KeyRotate,
        201,
    ),
    Route("POST", "/admin/keys/{key_id}/revoke", _status_change("revoked"), "Revoke a key"),
    Route("POST", "/admin/keys/{key_id}/block", _status_change("blocked"), "Block a key"),
    Route("POST", "/admin/keys/{key_id}/unblock", _status_change("active"), "Unblock a key"),
    Route(
        "POST",
        "/admin/credentials",
        add_credential,
        "Add a provider credential (409 if the name exists)",
        bodies.CredentialPut,
        201,
    ),
    Route(
        "PUT",
        "/admin/credentials/{name}",
        rotate_credential,
        "Add or rotate (replace) a provider credential",
        bodies.CredentialPut,
    ),
    Route("GET", "/admin/credentials", list_credentials, "List provider credentials (no secrets)"),
    Route(
        "DELETE", "/admin/credentials/{name}", delete_credential, "Delete a credential", status=204
    ),
    Route("GET", "/admin/audit", list_audit, "The audit trail, newest first"),
]
