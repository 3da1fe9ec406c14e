"""Google's OAuth token endpoint, as Vertex AI callers with a service account use it.

``POST /oauth2/token`` takes the JWT-bearer grant (RFC 7523): an assertion signed with the
service account's private key. With ``google_oauth_public_key`` set (the account's public
key, PEM), the simulator checks the signature, the audience (this endpoint's URL), the
issuer and the lifetime, and answers an access token valid for an hour; the simulated Vertex
AI then accepts that token. The server-wide fault (``fault``) applies: ``status:NNN`` is an
OAuth error of that status, ``echo:NNN`` one whose description quotes the assertion and its
key id. Tokens carry their own expiry and an HMAC, so the simulator keeps
no state for them.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import jwt
from aiohttp import web

from tollway.simulator.settings import SimulatorSettings
from tollway.simulator.state import SimulatorState

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_LIFETIME = 3600
_PREFIX = "ya29.sim-"


def _mac(settings: SimulatorSettings, expires: str) -> str:
    key = hashlib.sha256((settings.google_oauth_public_key or "").encode()).digest()
    return hmac.new(key, expires.encode(), hashlib.sha256).hexdigest()[:32]


def issued_token_is_valid(settings: SimulatorSettings, token: str) -> bool:
    """Whether ``token`` was issued by this endpoint (under the current key) and is unexpired."""
    if settings.google_oauth_public_key is None or not token.startswith(_PREFIX):
        return False
    expires, _, mac = token[len(_PREFIX) :].partition(".")
    if not expires.isdigit() or not hmac.compare_digest(mac, _mac(settings, expires)):
        return False
    return int(expires) > time.time()


def _refused(error: str, description: str) -> web.Response:
    body = {"error": error, "error_description": description}
    return web.json_response(body, status=400 if error != "invalid_client" else 401)


def _faulted(kind: str, status: int, assertion: str) -> web.Response:
    """The server-wide ``status:NNN`` or ``echo:NNN`` fault, as an OAuth error; an echo quotes
    the assertion it was sent and the key id in its header, as a careless endpoint (or a
    proxy in front of one) might."""
    description = "Simulated fault."
    if kind == "echo":
        try:
            kid = jwt.get_unverified_header(assertion).get("kid")
        except jwt.PyJWTError:
            kid = None
        description = f"simulated fault, the request carried assertion={assertion} (kid {kid})"
    return web.json_response({"error": "invalid_grant", "error_description": description},
                             status=status)  # fmt: skip


def oauth_routes(state: SimulatorState) -> list[web.RouteDef]:
    """The token endpoint."""

    async def token(request: web.Request) -> web.Response:
        settings = state.settings
        form = await request.post()
        state.record(request, {key: str(value) for key, value in form.items()})
        try:
            fault = state.pick_fault(None)  # the gateway's own call: the server-wide fault
        except ValueError:
            fault = None
        if fault is not None and fault.kind in ("status", "echo"):
            return _faulted(fault.kind, fault.value, str(form.get("assertion", "")))
        if form.get("grant_type") != GRANT_TYPE:
            return _refused("unsupported_grant_type", "Invalid grant_type.")
        if settings.google_oauth_public_key is None:
            return _refused("invalid_grant", "No service account is registered here.")
        try:
            claims = jwt.decode(
                str(form.get("assertion", "")),
                settings.google_oauth_public_key,
                algorithms=["RS256"],
                audience=str(request.url.with_query(None)),
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except jwt.PyJWTError as exc:
            return _refused("invalid_grant", f"Invalid JWT: {exc}")
        if claims["exp"] - claims["iat"] > TOKEN_LIFETIME:
            return _refused("invalid_grant", "Invalid JWT: lifetime over one hour.")
        expires = str(int(time.time()) + TOKEN_LIFETIME)
        access_token = f"{_PREFIX}{expires}.{_mac(settings, expires)}"
        return web.json_response(
            {"access_token": access_token, "expires_in": TOKEN_LIFETIME - 1, "token_type": "Bearer"}
        )

    return [web.post("/oauth2/token", token)]
