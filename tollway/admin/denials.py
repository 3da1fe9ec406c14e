"""Admin requests refused for want of a credential or a right (401, 403), in the audit trail.

The audit trail records the changes admins make; an auditor also asks who tried to use the
admin API without the right to. Every 401 (no, a malformed, an unknown, a revoked, blocked or
expired credential) and 403 (a role or team that does not allow the call) that the admin
wrapper (call.py) answers becomes an ``admin.denied`` event: who when known (a principal's
id, user and team; never the credential nor any part of it, not even a key's prefix), the
method, route and path asked for, the status and error code, the address and request id.

A flood is bounded as model routes' refusals are (telemetry/refusals.py, the same buckets):
each kind (status and code) at ``auth.admin_denials_per_second`` with bursts of ten seconds'
worth; those beyond are counted in ``tollway_admin_denials_suppressed_total``. Events are
written in the background, one a transaction, so a denial is answered without waiting for
the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tollway.core.errors import AuthenticationFailed
from tollway.store import AuditEntry
from tollway.telemetry.bodies import redact
from tollway.telemetry.refusals import RefusalBuckets

if TYPE_CHECKING:
    from aiohttp import web

    from tollway.auth.principal import Principal
    from tollway.core.errors import GatewayError

ACTION = "admin.denied"
"""The audit trail's action of a denied admin request."""
_MAX_PATH = 256
"""Characters of the path asked for kept in an event (the route names it in full anyway)."""


class AdminDenials:
    """Writes the admin API's 401s and 403s to the audit trail, up to a rate per kind."""

    def __init__(self, record: Callable[[AuditEntry], None], per_second: float) -> None:
        """``record``: appends an event to the audit trail in the background
        (``Gateway.record_later``); ``per_second``: events of each kind a second (0: none,
        every denial only counted)."""
        self.buckets = RefusalBuckets(
            per_second,
            "admin audit trail: denied admin requests",
            "tollway_admin_denials_suppressed_total",  # Metrics.watch_admin_denials
        )
        self._record = record

    def denied(
        self,
        request: web.Request,
        source: str | None,
        route: str,
        request_id: str,
        error: GatewayError,
        principal: Principal | None,
    ) -> None:
        """Record that ``request`` from the client address ``source`` to the admin route
        ``route`` was refused with ``error`` (a 401 or 403), when its kind is under its rate;
        count it otherwise."""
        if not self.buckets.admit(error):
            return
        if principal is None and isinstance(error, AuthenticationFailed):
            principal = error.principal  # a known key that cannot be used
        self._record(denial_event(request, source, route, request_id, error, principal))


def denial_event(
    request: web.Request,
    source: str | None,
    route: str,
    request_id: str,
    error: GatewayError,
    principal: Principal | None,
) -> AuditEntry:
    """The audit event of a denied admin request: the actor is the principal's id (a key's
    id, ``oidc:<issuer>#<subject>``) when one is known, ``anonymous`` when no credential
    was sent, ``unknown`` when the one sent names no one."""
    if principal is not None and principal.kind != "anonymous":
        actor = principal.id
        who = {"user": principal.user, "team": principal.team, "role": principal.role}
    else:
        actor = "anonymous" if error.code == "missing_api_key" else "unknown"
        who = {"user": None, "team": None, "role": None}
    return AuditEntry(
        actor=actor,
        action=ACTION,
        target_type="route",
        target_id=route,
        details={
            "method": request.method,
            "path": _without_secrets(request.rel_url.raw_path)[:_MAX_PATH],
            "status": error.status,
            "code": error.code,
            **who,
        },
        source_ip=source,
        request_id=request_id,
    )


def _without_secrets(path: str) -> str:
    """The path as sent (percent-encoded), with what looks like a credential masked: a client
    may put its key in the URL, and a denied request is recorded whatever it sent. Masked
    before the path is cut, so no would-be prefix of a key is left at the cut."""
    return redact(path)
