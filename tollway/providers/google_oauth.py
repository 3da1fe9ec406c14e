"""OAuth access tokens for Vertex AI, minted from a Google service account key.

Vertex AI takes short-lived OAuth tokens (an hour), so a deployment names its service
account key (``google_service_account: file:/etc/tollway/sa.json`` or a ``vault:`` / ``env:``
reference) and the gateway trades it for tokens itself: the JWT-bearer grant (RFC 7523) that
Google's own libraries use, a JWT signed with the account's private key (PyJWT, RS256) posted
to the key's ``token_uri``. google-auth would do the same through a blocking HTTP client;
here the exchange goes over the gateway's own pooled aiohttp client and never blocks the
event loop.

Tokens are cached per key and renewed when less than ``REFRESH_MARGIN`` of their life is
left; concurrent requests wait for one renewal instead of each minting their own. A rotated
key (a new value behind the same reference) gets a token of its own at once.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import jwt
import orjson

from tollway.auth.vault import MissingCredential, Vault
from tollway.config.types import SecretRef
from tollway.core.errors import UpstreamErrorBody, UpstreamProtocolError, UpstreamStatusError
from tollway.core.types import UpstreamTimeouts
from tollway.providers.http import UpstreamClient

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 3600
REFRESH_MARGIN = 300.0
"""Seconds before a token's expiry at which it is renewed."""


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    renew_at: float  # time.monotonic()


class ServiceAccountTokens:
    """Mints and caches Vertex AI access tokens from service account keys in the vault."""

    def __init__(self, client: UpstreamClient, vault: Vault) -> None:
        self._client = client
        self._vault = vault
        # Keyed by the key's JSON text itself, so a rotated key is a new entry.
        self._tokens: dict[str, _Token] = {}
        self._renewals: dict[str, asyncio.Lock] = {}

    async def token(self, ref: SecretRef, timeouts: UpstreamTimeouts) -> str:
        """A valid access token for the service account behind ``ref``."""
        key_text = self._vault.reveal(ref)
        cached = self._tokens.get(key_text)
        if cached is not None and time.monotonic() < cached.renew_at:
            return cached.value
        lock = self._renewals.setdefault(key_text, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(key_text)
            if cached is not None and time.monotonic() < cached.renew_at:
                return cached.value
            fresh = await self._mint(ref, key_text, timeouts)
            self._tokens = {**_still_valid(self._tokens), key_text: fresh}
            return fresh.value

    async def _mint(self, ref: SecretRef, key_text: str, timeouts: UpstreamTimeouts) -> _Token:
        account = _service_account(ref, key_text)
        now = int(time.time())
        token_uri = account.get("token_uri") or DEFAULT_TOKEN_URI
        claims = {
            "iss": account["client_email"],
            "scope": SCOPE,
            "aud": token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        headers = {"kid": account["private_key_id"]} if account.get("private_key_id") else None
        try:
            assertion = jwt.encode(claims, account["private_key"], "RS256", headers=headers)
        except (ValueError, TypeError, jwt.PyJWTError):
            raise MissingCredential(
                f"credential {ref.redacted()} holds a private key that cannot sign"
            ) from None
        body = urllib.parse.urlencode({"grant_type": GRANT_TYPE, "assertion": assertion})
        try:
            answer = await self._client.post_json(
                token_uri,
                body.encode(),
                {"Content-Type": "application/x-www-form-urlencoded"},
                timeouts,
                oauth_error,
                _echoable(account, assertion),
            )
        except UpstreamStatusError as exc:
            raise _token_refusal(exc) from None
        access_token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(access_token, str) or not access_token:
            raise UpstreamProtocolError("the OAuth token endpoint answered without a token")
        lifetime = answer.get("expires_in")
        lifetime = float(lifetime) if isinstance(lifetime, int | float) else ASSERTION_LIFETIME
        return _Token(access_token, time.monotonic() + max(lifetime - REFRESH_MARGIN, 0.0))


def _service_account(ref: SecretRef, key_text: str) -> dict[str, Any]:
    try:
        account = orjson.loads(key_text)
    except orjson.JSONDecodeError:
        account = None
    if (
        not isinstance(account, dict)
        or not isinstance(account.get("client_email"), str)
        or not isinstance(account.get("private_key"), str)
    ):
        raise MissingCredential(
            f"credential {ref.redacted()} is not a Google service account key "
            "(JSON with client_email and private_key)"
        )
    return account


def _echoable(account: dict[str, Any], assertion: str) -> tuple[str, ...]:
    """What the token endpoint's error must not quote, masked wherever it does: the signed
    assertion (a bearer credential at that endpoint for its hour) and its parts, the
    private key id and the private key (and its lines)."""
    parts = [assertion, *assertion.split(".")]
    for name in ("private_key_id", "private_key"):
        value = account.get(name)
        if isinstance(value, str) and value:
            parts.append(value)
    key = account["private_key"]
    parts += [line.strip() for line in key.splitlines() if "-----" not in line]
    # A short part (a test's key id) is masked where it stands alone (masking.scrub).
    return tuple(part for part in dict.fromkeys(parts) if part)


def _token_refusal(exc: UpstreamStatusError) -> UpstreamStatusError:
    """The token endpoint's error status in the gateway's own words: the endpoint's (masked)
    are the operator's, in ``detail``, and never reach the client."""
    status = exc.upstream_status
    if status >= 500 or status in (408, 429):
        # Google's trouble, not the account's: retried and failed over as such.
        message = (
            f"Google's OAuth token endpoint answered {status}: no token for the deployment's "
            "service account now"
        )
        return UpstreamStatusError(
            status, message, retry_after=exc.retry_after, kind=exc.kind, detail=exc.detail
        )
    # invalid_grant (400), invalid_client (401): the service account is refused, a refusal
    # of the gateway's credential like a 401 from the model's own API (its own message).
    return UpstreamStatusError(401, "OAuth token request refused", kind=exc.kind, detail=exc.detail)


def _still_valid(tokens: dict[str, _Token]) -> dict[str, _Token]:
    now = time.monotonic()
    return {text: token for text, token in tokens.items() if now < token.renew_at}


def oauth_error(raw: Any) -> UpstreamErrorBody:
    """An OAuth error answer (``error``, ``error_description``): the message, and the OAuth
    error (``invalid_grant``) as the kind."""
    if isinstance(raw, dict):
        code = raw.get("error") if isinstance(raw.get("error"), str) else None
        description = raw.get("error_description")
        message = description if isinstance(description, str) else code or ""
        return UpstreamErrorBody(f"OAuth token request refused: {message}", kind=code)
    return UpstreamErrorBody(f"OAuth token request refused: {str(raw)[:200]}")
