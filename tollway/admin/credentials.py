"""Admin API of provider credentials in the vault (admins only; never a secret in an answer)."""

from __future__ import annotations

from typing import Any

from tollway.admin import bodies
from tollway.admin.access import require_role
from tollway.admin.call import AdminCall, Conflict, Route
from tollway.admin.render import record_json
from tollway.core.errors import InvalidRequest
from tollway.store import CredentialRecord, RecordConflict


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


CREDENTIAL_ROUTES = [
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
]
