"""Bearer JWTs from trusted OpenID Connect issuers, verified and turned into principals.

Verification is CPU only once an issuer's keys are cached (see ``tollway.auth.jwks``).
Verified tokens are deliberately not cached: every request re-checks signature and expiry, so
a token stops working the moment it expires, or once a key refresh finds its key withdrawn.
Error messages say which check failed and never contain the token.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import aiohttp
import jwt
import orjson

from tollway.auth.jwks import RemoteKeySet
from tollway.auth.principal import ROLE_RANK, Principal, Role
from tollway.config.schema import OIDCIssuerConfig
from tollway.core.errors import AuthenticationFailed

MAX_TOKEN_LENGTH = 16 * 1024
"""Longer bearer values are refused before any parsing."""

# Checked in order: InvalidSignatureError is a DecodeError, so the specific ones come first.
_FAILURES: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidAudienceError, "token audience not accepted"),
    (jwt.InvalidIssuerError, "token issuer mismatch"),
    (jwt.InvalidSignatureError, "token signature invalid"),
    (jwt.InvalidAlgorithmError, "token algorithm not allowed"),
    (jwt.InvalidIssuedAtError, "token issued-at time invalid"),
    (jwt.exceptions.InvalidSubjectError, "token subject invalid"),
    (jwt.DecodeError, "malformed token"),
)


def _rejected(message: str) -> AuthenticationFailed:
    return AuthenticationFailed(message, code="invalid_token")


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The header and claims of a JWT, unverified; None when it is not a JWT."""
    # Only a peek to pick the issuer and key: PyJWT's strict parse costs ten times as much
    # and runs once per token anyway, in jwt.decode, where it rejects what this lets through.
    if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        return None
    header_segment, claims_segment, _ = token.split(".")
    try:
        header = orjson.loads(_base64url(header_segment))
        claims = orjson.loads(_base64url(claims_segment))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    return header, claims


def _base64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def claim(claims: Mapping[str, Any], name: str) -> Any:
    """Claim ``name``, else the nested one its dots spell (``realm_access.roles``)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def claim_strings(value: Any) -> tuple[str, ...]:
    """A claim holding a string or a list of strings as a tuple; anything else is empty."""
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list):
        return tuple(dict.fromkeys(item for item in value if isinstance(item, str) and item))
    return ()


def principal_from_claims(config: OIDCIssuerConfig, claims: Mapping[str, Any]) -> Principal:
    """The principal of a verified token's claims, mapped as ``config`` says."""
    subject = claims["sub"]
    user = claim(claims, config.user_claim)
    teams = claim_strings(claim(claims, config.team_claim)) if config.team_claim else ()
    role = _role(config, teams, claims)
    return Principal(
        kind="oidc",
        id=f"oidc:{claims['iss']}#{subject}",
        role=role,
        user=user if isinstance(user, str) and user else subject,
        team=teams[0] if teams else None,
        teams=teams,
        # The identity provider grants one role; it holds in each team the token names.
        team_roles=dict.fromkeys(teams, role),
    )


def _role(config: OIDCIssuerConfig, teams: tuple[str, ...], claims: Mapping[str, Any]) -> Role:
    if not set(config.admin_groups).isdisjoint(teams):
        return "admin"
    if config.role_claim:
        values = claim_strings(claim(claims, config.role_claim))
        mapped = [config.role_map[value] for value in values if value in config.role_map]
        if mapped:
            return max(mapped, key=ROLE_RANK.__getitem__)
    return config.default_role


class PrincipalMapper(Protocol):
    """Turns a verified token's principal into the store's (auth/provisioning.py)."""

    async def principal(
        self, config: OIDCIssuerConfig, claims: Mapping[str, Any], principal: Principal
    ) -> Principal:
        """``principal`` with its user and teams as the store's ids."""
        ...


class IssuerVerifier:
    """Verifies tokens of one issuer against its cached keys and configured checks."""

    def __init__(
        self,
        config: OIDCIssuerConfig,
        keys: RemoteKeySet,
        provisioner: PrincipalMapper | None = None,
    ) -> None:
        """``provisioner`` maps principals to store users and teams when ``config.provision``."""
        self.config = config
        self._keys = keys
        self._provisioner = provisioner if config.provision else None
        self._options: jwt.types.Options = {"require": ["exp", "iss", "aud", "sub"]}

    async def verify(self, token: str, header: Mapping[str, Any]) -> Principal:
        """The principal of ``token`` (already known to name this issuer) if every check passes."""
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.config.algorithms:
            raise _rejected("token algorithm not allowed")
        if kid is not None and not isinstance(kid, str):
            raise _rejected("malformed token")
        key = await self._keys.signing_key(kid, alg)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=self.config.algorithms,
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway,
                options=self._options,
            )
        except jwt.MissingRequiredClaimError as exc:
            raise _rejected(f"token lacks the {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            message = next((text for kind, text in _FAILURES if isinstance(exc, kind)), None)
            raise _rejected(message or "token invalid") from None
        principal = principal_from_claims(self.config, claims)
        if self._provisioner is None:
            return principal
        return await self._provisioner.principal(self.config, claims, principal)


class OIDCAuthenticator:
    """Verifies bearer JWTs from the configured OpenID Connect issuers.

    ``session`` fetches discovery documents and key sets; the caller owns and closes it.
    ``min_refetch_interval`` bounds how often an unknown ``kid`` may trigger a JWKS fetch.
    ``provisioner`` makes the principals of issuers with ``provision`` on the store's own.
    """

    def __init__(
        self,
        issuers: Sequence[OIDCIssuerConfig],
        session: aiohttp.ClientSession,
        *,
        min_refetch_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        provisioner: PrincipalMapper | None = None,
    ) -> None:
        self._verifiers = {
            config.issuer: IssuerVerifier(
                config,
                RemoteKeySet(
                    config,
                    session,
                    min_refetch_interval=min_refetch_interval or config.jwks_min_refetch,
                    clock=clock,
                ),
                provisioner,
            )
            for config in issuers
        }

    def accepts(self, token: str) -> bool:
        """Whether ``token`` is a JWT naming a configured issuer (unverified, cheap)."""
        parsed = _unverified(token)
        if parsed is None:
            return False
        issuer = parsed[1].get("iss")
        # Any JSON may sit there: a list or an object is no issuer (and cannot be looked up).
        return isinstance(issuer, str) and issuer in self._verifiers

    async def authenticate(self, token: str) -> Principal:
        """The principal of a valid token; ``AuthenticationFailed`` saying which check failed."""
        parsed = _unverified(token)
        if parsed is None:
            raise _rejected("malformed token")
        header, claims = parsed
        issuer = claims.get("iss")
        verifier = self._verifiers.get(issuer) if isinstance(issuer, str) else None
        if verifier is None:
            raise _rejected("token issuer is not trusted")
        return await verifier.verify(token, header)
