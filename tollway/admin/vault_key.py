"""Admin route for changing the vault key: re-encrypt every stored credential with the first
key of ``TOLLWAY_VAULT_KEY`` so the older ones can be dropped (docs/identity.md, "Changing
the vault key"). Admins only; answers and audits counts and names, never a secret.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

from tollway.admin.access import require_role
from tollway.admin.call import AdminCall, Conflict, Route
from tollway.core.errors import GatewayError, StoreUnavailable
from tollway.dialects.openai import error_body
from tollway.store import VAULT_KEY_ENV, Reencryption, ReencryptionInterrupted

log = logging.getLogger("tollway")


async def reencrypt_credentials(call: AdminCall) -> dict[str, Any] | web.Response:
    """Encrypt every credential under an older key again with the first; 409 naming those
    no configured key decrypts (left as they were; the others are done all the same); 503
    ``store_busy`` with the counts done when other writes stopped it part way."""
    require_role(call.principal, "admin")
    try:
        result = await call.gateway.store.credentials.reencrypt()
    except ReencryptionInterrupted as exc:
        # Earlier batches were committed: the usual "busy, nothing was changed" is untrue.
        counts = _counts(exc.done)
        await call.gateway.identity.audit(
            call.actor, "credential.reencrypt", "credential", None, {**counts, "complete": False}
        )
        log.warning("vault credentials re-encryption stopped: %s", exc)
        return _answer(
            call, StoreUnavailable(f"{str(exc).capitalize()}.", code="store_busy"), counts
        )
    counts = _counts(result)
    await call.gateway.identity.audit(
        call.actor, "credential.reencrypt", "credential", None, counts
    )
    log.info(
        "vault credentials encrypted again with the first key: %d re-encrypted, %d already "
        "current, %d undecryptable", result.reencrypted, result.current, len(result.undecryptable),
    )  # fmt: skip
    if not result.undecryptable:
        return counts
    listed = ", ".join(repr(name) for name in result.undecryptable)
    error = Conflict(
        f"credential(s) {listed} cannot be decrypted with any key in {VAULT_KEY_ENV} and were "
        f"left as they are ({result.reencrypted} re-encrypted, {result.current} already "
        "current): add the key they were encrypted with after the first and run this again, "
        "or put them again (PUT /admin/credentials/{name}) or delete them",
        code="credential_undecryptable",
    )
    return _answer(call, error, counts)


def _answer(call: AdminCall, error: GatewayError, counts: dict[str, Any]) -> web.Response:
    """The error object in the admin API's shape, with the counts beside it."""
    body = {**orjson.loads(error_body(error)), **counts}
    rid = call.actor.request_id
    return web.Response(
        status=error.status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers={"x-request-id": rid} if rid else None,
    )


def _counts(result: Reencryption) -> dict[str, Any]:
    return {
        "reencrypted": result.reencrypted,
        "current": result.current,
        "undecryptable": list(result.undecryptable),
    }


VAULT_KEY_ROUTES = [
    Route(
        "POST",
        "/admin/credentials/reencrypt",
        reencrypt_credentials,
        "Encrypt every stored credential again with the first vault key (after a key change); "
        "409 naming any no configured key decrypts",
    ),
]
