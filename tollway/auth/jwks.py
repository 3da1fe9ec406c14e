"""The signing keys of one OIDC issuer: discovery, JWKS fetching, caching and refetching.

Keys are parsed once per fetch into PyJWT key objects, so verifying a token costs no parsing
of the key set. A token naming an unknown ``kid`` triggers an immediate refetch (a rotated
key), at most once per ``min_refetch_interval`` so that made-up ``kid`` values cannot make
the gateway hammer the identity provider.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import aiohttp
import jwt
import orjson

from tollway.config.schema import OIDCIssuerConfig
from tollway.core.errors import AuthenticationFailed

log = logging.getLogger("tollway.auth")

FETCH_TIMEOUT = aiohttp.ClientTimeout(total=5.0)
"""Bound on one discovery or JWKS request; requests waiting for new keys wait this long."""

_MAX_DOCUMENT = 1024 * 1024
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGORITHMS = MappingProxyType({"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"})
_OKP_CURVES = frozenset({"Ed25519", "Ed448"})


class FetchFailed(Exception):
    """Discovery or the JWKS could not be fetched or understood; the text is for logs."""


def key_algorithms(jwk: Mapping[str, Any], allowed: Iterable[str]) -> list[str]:
    """The allowed algorithms ``jwk`` may verify: its own ``alg``, else those of its type."""
    if jwk.get("use", "sig") != "sig" or "verify" not in jwk.get("key_ops", ["verify"]):
        return []
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "RSA":
        family: frozenset[str] = _RSA_ALGORITHMS
    elif kty == "EC" and isinstance(crv, str) and crv in _EC_ALGORITHMS:
        family = frozenset({_EC_ALGORITHMS[crv]})
    elif kty == "OKP" and crv in _OKP_CURVES:
        family = frozenset({"EdDSA"})
    else:
        # Symmetric ("oct") keys are never trusted from a key set: anyone could sign with them.
        return []
    declared = jwk.get("alg")
    return [alg for alg in allowed if alg in family and declared in (None, alg)]


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """A parsed JWKS: for each ``kid``, one PyJWT key per algorithm it may verify."""

    by_kid: Mapping[str | None, Mapping[str, jwt.PyJWK]]

    @classmethod
    def from_jwks(cls, document: Mapping[str, Any], algorithms: Iterable[str]) -> SigningKeys:
        """Parse a JWKS document, keeping only keys usable with ``algorithms``."""
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise FetchFailed("the JWKS has no 'keys' list")
        allowed = list(algorithms)
        by_kid: dict[str | None, dict[str, jwt.PyJWK]] = {}
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            kid = entry.get("kid")
            if kid is not None and not isinstance(kid, str):
                continue
            for alg in key_algorithms(entry, allowed):
                try:
                    key = jwt.PyJWK(entry, algorithm=alg)
                except jwt.PyJWTError:
                    continue
                by_kid.setdefault(kid, {})[alg] = key
        return cls(MappingProxyType(by_kid))

    def for_kid(self, kid: str | None) -> Mapping[str, jwt.PyJWK] | None:
        """The keys (by algorithm) for ``kid``; a token without one matches a lone key."""
        keys = self.by_kid.get(kid)
        if keys is None and kid is None and len(self.by_kid) == 1:
            keys = next(iter(self.by_kid.values()))
        return keys


class RemoteKeySet:
    """The signing keys of one issuer, fetched with ``session`` and kept in memory."""

    def __init__(
        self,
        config: OIDCIssuerConfig,
        session: aiohttp.ClientSession,
        *,
        min_refetch_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._session = session
        self._min_refetch_interval = min_refetch_interval
        self._clock = clock
        self._keys: SigningKeys | None = None
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        self._lock = asyncio.Lock()

    async def signing_key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The key to verify a token whose header names ``kid`` and ``alg``."""
        keys = await self._keys_for(kid)
        candidates = keys.for_kid(kid)
        if candidates is None:
            raise AuthenticationFailed("token signing key unknown", code="invalid_token")
        key = candidates.get(alg)
        if key is None:
            raise AuthenticationFailed(
                "token algorithm does not match its signing key", code="invalid_token"
            )
        return key

    async def _keys_for(self, kid: str | None) -> SigningKeys:
        keys = self._keys
        known = keys is not None and keys.for_kid(kid) is not None
        if known and keys is not None and (self._fresh() or self._lock.locked()):
            # Fresh, or another request is refreshing them: the cached keys serve meanwhile.
            return keys
        async with self._lock:
            return await self._refetch(kid)

    def _fresh(self) -> bool:
        return self._clock() - self._fetched_at < self._config.jwks_refresh

    async def _refetch(self, kid: str | None) -> SigningKeys:
        keys, now = self._keys, self._clock()
        if keys is not None and keys.for_kid(kid) is not None and self._fresh():
            return keys  # fetched by the request we waited for
        if now - self._attempted_at < self._min_refetch_interval:
            if keys is None:
                raise _unreachable()
            return keys
        self._attempted_at = now
        try:
            fetched = SigningKeys.from_jwks(await self._fetch_jwks(), self._config.algorithms)
        except FetchFailed as exc:
            stale = "; keeping the cached keys" if keys is not None else ""
            log.warning("OIDC issuer %s: %s%s", self._config.issuer, exc, stale)
            if keys is None:
                raise _unreachable() from None
            return keys
        if not fetched.by_kid:
            log.warning(
                "OIDC issuer %s: its JWKS has no key usable with algorithms %s",
                self._config.issuer,
                self._config.algorithms,
            )
        self._keys, self._fetched_at = fetched, now
        return fetched

    async def _fetch_jwks(self) -> dict[str, Any]:
        jwks_uri = self._config.jwks_uri
        if jwks_uri is None:
            discovery_url = self._config.discovery_url or (
                self._config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            )
            discovery = await self._get_json(discovery_url)
            # OpenID Connect Discovery 1.0 §4.3: the document must name the issuer we trust.
            if discovery.get("issuer") != self._config.issuer:
                raise FetchFailed(f"{discovery_url} names another issuer")
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise FetchFailed(f"{discovery_url} has no jwks_uri")
        return await self._get_json(jwks_uri)

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._session.get(
                url, timeout=FETCH_TIMEOUT, headers={"Accept": "application/json"}
            ) as response:
                if response.status != 200:
                    raise FetchFailed(f"{url} answered {response.status}")
                body = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > _MAX_DOCUMENT:
                        raise FetchFailed(f"{url} sent more than {_MAX_DOCUMENT} bytes")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise FetchFailed(f"cannot fetch {url}: {type(exc).__name__}") from None
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise FetchFailed(f"{url} sent invalid JSON") from None
        if not isinstance(document, dict):
            raise FetchFailed(f"{url} sent JSON that is not an object")
        return document


def _unreachable() -> AuthenticationFailed:
    return AuthenticationFailed("identity provider unreachable", code="idp_unreachable")
