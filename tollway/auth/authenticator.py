"""Turning a request's credential into a principal: virtual keys, OIDC tokens, or anonymous."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from tollway.auth.keys import KeyIndex
from tollway.auth.principal import Principal
from tollway.core.errors import AuthenticationFailed


class TokenVerifier(Protocol):
    """Verifies bearer JWTs from trusted identity providers."""

    def accepts(self, token: str) -> bool:
        """Whether ``token`` is a JWT this verifier should judge."""
        ...

    async def authenticate(self, token: str) -> Principal:
        """The principal of a valid token; ``AuthenticationFailed`` otherwise."""
        ...


def credential(headers: Mapping[str, str]) -> str | None:
    """The credential a client sent: ``Authorization: Bearer``, ``x-api-key`` or ``api-key``."""
    authorization = headers.get("Authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise AuthenticationFailed(
            "Authorization header must be 'Bearer <key>'.", code="invalid_authorization"
        )
    return headers.get("x-api-key") or headers.get("api-key") or None


class Authenticator:
    """Finds the principal of every request from memory (JWKS fetches aside)."""

    def __init__(
        self,
        keys: KeyIndex,
        tokens: TokenVerifier | None = None,
        anonymous_models: Sequence[str] = (),
        is_blocked: Callable[[str], bool] = lambda user: False,
        on_key_use: Callable[[Principal], None] = lambda principal: None,
    ) -> None:
        """``on_key_use`` is told of each request a virtual key was accepted for (its
        ``last_used_at``); refused keys are not used."""
        self.keys = keys
        self.tokens = tokens
        self._is_blocked = is_blocked
        self._on_key_use = on_key_use
        self._anonymous = (
            Principal(kind="anonymous", id="anonymous", allowed_models=tuple(anonymous_models))
            if anonymous_models
            else None
        )

    async def authenticate(
        self, headers: Mapping[str, str], source: str | None = None
    ) -> Principal:
        """The caller's principal; ``AuthenticationFailed`` saying what is wrong otherwise.

        A credential that is sent must be valid: a bad key is never downgraded to anonymous.
        ``source``: the client's address (``client_address``), which the store lookups of
        keys not in memory are limited by.
        """
        secret = credential(headers)
        if secret is None:
            if self._anonymous is not None:
                return self._anonymous
            raise AuthenticationFailed(
                "Missing API key: send 'Authorization: Bearer <key>' (or 'x-api-key').",
                code="missing_api_key",
            )
        if self.tokens is not None and (_looks_like_jwt(secret) or self.tokens.accepts(secret)):
            principal = await self.tokens.authenticate(secret)
            # The IdP vouches for the token; the gateway's own records can still stop the user.
            if principal.user is not None and self._is_blocked(principal.user):
                raise AuthenticationFailed(
                    "This user is blocked.", code="user_blocked", principal=principal
                )
            return principal
        principal = await self.keys.authenticate(secret, source=source)
        self._on_key_use(principal)
        return principal


def _looks_like_jwt(secret: str) -> bool:
    # A JWS compact token: base64url JSON header ("eyJ") and three dot-separated parts.
    return secret.startswith("eyJ") and secret.count(".") == 2
