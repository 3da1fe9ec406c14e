"""OIDC token verification against locally made keys served by a stub identity provider.

The stub serves discovery and a JWKS over a real socket and counts requests, so caching,
refetching on rotation and its rate limit are observable; time is a fake clock.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.support import free_port
from tollway.auth.jwks import key_algorithms
from tollway.auth.oidc import OIDCAuthenticator
from tollway.config.schema import OIDCIssuerConfig
from tollway.core.errors import AuthenticationFailed

AUDIENCE = "https://tollway.test"


@dataclass
class SigningKey:
    """A private key, its ``kid`` and the algorithm it signs with."""

    kid: str
    alg: str
    private: Any

    def jwk(self, **extra: Any) -> dict[str, Any]:
        """The public JWK of this key."""
        public = self.private.public_key()
        algorithms = jwt.algorithms
        family: dict[str, Any] = {
            "RS": algorithms.RSAAlgorithm,
            "PS": algorithms.RSAAlgorithm,
            "ES": algorithms.ECAlgorithm,
            "Ed": algorithms.OKPAlgorithm,
        }
        data: dict[str, Any] = family[self.alg[:2]].to_jwk(public, as_dict=True)
        return {**data, "kid": self.kid, "use": "sig", **extra}

    def sign(self, claims: dict[str, Any], alg: str | None = None, **header: Any) -> str:
        """A JWT of ``claims`` signed with this key."""
        headers = {"kid": self.kid, **header}
        return jwt.encode(claims, self.private, algorithm=alg or self.alg, headers=headers)


def rsa_key(kid: str) -> SigningKey:
    return SigningKey(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def rsa_a() -> SigningKey:
    return rsa_key("rsa-a")


@pytest.fixture(scope="module")
def rsa_b() -> SigningKey:
    return rsa_key("rsa-b")


@dataclass
class StubIdP:
    """Discovery and JWKS over a real socket; ``requests`` lists the paths asked for."""

    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    requests: list[str] = field(default_factory=list)
    status: int = 200
    discovery_issuer: str | None = None
    url: str = ""

    async def _discovery(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        issuer = self.discovery_issuer or self.url
        return web.json_response({"issuer": issuer, "jwks_uri": f"{self.url}/jwks"})

    async def _jwks(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        if self.status != 200:
            return web.Response(status=self.status)
        return web.json_response(self.jwks)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        return app

    def jwks_fetches(self) -> int:
        return self.requests.count("/jwks")


@pytest.fixture
async def idp(rsa_a: SigningKey) -> AsyncIterator[StubIdP]:
    stub = StubIdP(jwks={"keys": [rsa_a.jwk(alg="RS256")]})
    runner = web.AppRunner(stub.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    stub.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield stub
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@dataclass
class FakeClock:
    """A monotonic clock the test moves by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def make_authenticator(
    idp: StubIdP, session: aiohttp.ClientSession, clock: FakeClock | None = None, **fields: Any
) -> OIDCAuthenticator:
    config = OIDCIssuerConfig(issuer=idp.url, audience=[AUDIENCE], **fields)
    return OIDCAuthenticator([config], session, clock=clock or FakeClock())


def claims_for(idp: StubIdP, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": idp.url, "sub": "u-1", "aud": AUDIENCE, "iat": now, "exp": now + 300}
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


async def rejection(authenticator: OIDCAuthenticator, token: str) -> str:
    """The message ``token`` is rejected with, checked never to contain the token."""
    with pytest.raises(AuthenticationFailed) as caught:
        await authenticator.authenticate(token)
    message = caught.value.message
    for part in token.split("."):
        assert len(part) < 8 or part not in str(caught.value)
    assert caught.value.status == 401
    return message


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A JWT assembled by hand, for headers PyJWT refuses to sign."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(signature)}"


async def test_a_valid_token_gives_its_principal_with_one_discovery_and_one_jwks_fetch(
    idp: StubIdP, session: aiohttp.ClientSession, rsa_a: SigningKey
) -> None:
    authenticator = make_authenticator(idp, session, team_claim="groups")
    token = rsa_a.sign(claims_for(idp, email="ada@example.com", groups=["ml"]))
    assert authenticator.accepts(token)
    for _ in range(3):
        principal = await authenticator.authenticate(token)
    assert principal.id == f"oidc:{idp.url}#u-1"
    assert (principal.user, principal.team, principal.role) == ("ada@example.com", "ml", "member")
    assert idp.requests == ["/.well-known/openid-configuration", "/jwks"]


async def test_audience_lists_are_accepted_when_one_audience_matches(
    idp: StubIdP, session: aiohttp.ClientSession, rsa_a: SigningKey
) -> None:
    authenticator = make_authenticator(idp, session)
    token = rsa_a.sign(claims_for(idp, aud=["https://other.test", AUDIENCE]))
    assert (await authenticator.authenticate(token)).user == "u-1"


_TIME_CLAIMS = frozenset({"exp", "nbf", "iat"})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # Times as offsets from when the test runs, not from collection: a long suite run
        # (over ten minutes under load) made a future "nbf" taken at import time a past one.
        ({"exp": -120}, "token expired"),
        ({"nbf": 600}, "token not yet valid"),
        ({"iat": 600}, "token not yet valid"),
        ({"aud": "https://other.test"}, "token audience not accepted"),
        ({"aud": ["https://a.test", "https://b.test"]}, "token audience not accepted"),
        ({"exp": None}, "token lacks the 'exp' claim"),
        ({"aud": None}, "token lacks the 'aud' claim"),
        ({"sub": None}, "token lacks the 'sub' claim"),
    ],
)
async def test_claim_checks_say_which_check_failed(
    idp: StubIdP,
    session: aiohttp.ClientSession,
    rsa_a: SigningKey,
    overrides: dict[str, Any],
    message: str,
) -> None:
    authenticator = make_authenticator(idp, session)
    now = int(time.time())
    claims = {
        k: now + v if k in _TIME_CLAIMS and v is not None else v for k, v in overrides.items()
    }
    assert await rejection(authenticator, rsa_a.sign(claims_for(idp, **claims))) == message


async def test_leeway_tolerates_clock_skew(
    idp: StubIdP, session: aiohttp.ClientSession, rsa_a: SigningKey
) -> None:
    authenticator = make_authenticator(idp, session, leeway="60s")
    token = rsa_a.sign(claims_for(idp, exp=int(time.time()) - 30, nbf=int(time.time()) + 30))
    assert (await authenticator.authenticate(token)).id.endswith("#u-1")


async def test_a_tampered_token_fails_the_signature_check(
    idp: StubIdP, session: aiohttp.ClientSession, rsa_a: SigningKey
) -> None:
    authenticator = make_authenticator(idp, session)
    header, _, signature = rsa_a.sign(claims_for(idp)).split(".")
    forged_claims = b64(json.dumps(claims_for(idp, sub="admin")).encode())
    forged = f"{header}.{forged_claims}.{signature}"
    assert await rejection(authenticator, forged) == "token signature invalid"


async def test_hs256_signed_with_the_public_key_and_alg_none_are_refused_before_any_key_use(
    idp: StubIdP, session: aiohttp.ClientSession, rsa_a: SigningKey
) -> None:
    authenticator = make_authenticator(idp, session)
    public_pem = rsa_a.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": rsa_a.kid}
    unsigned = hand_made(header, claims_for(idp)).rsplit(".", 1)[0]
    mac = hmac.new(public_pem, unsigned.encode(), hashlib.sha256).digest()
    confused = f"{unsigned}.{b64(mac)}"
    assert await rejection(authenticator, confused) == "token algorithm not allowed"
    for alg in ("none", "None", ""):
        unsigned_token = hand_made({"alg": alg, "kid": rsa_a.kid}, claims_for(idp))
        assert await rejection(authenticator, unsigned_token) == "token algorithm not allowed"
    assert idp.requests == []


async def test_an_algorithm_outside_the_configured_list_is_refused(
    idp: StubIdP, session: aiohttp.ClientSession, rsa_a: SigningKey
) -> None:
    authenticator = make_authenticator(idp, session, algorithms=["ES256"])
    assert await rejection(authenticator, rsa_a.sign(claims_for(idp))) == (
        "token algorithm not allowed"
    )


async def test_the_token_alg_must_be_one_its_key_may_verify(
    idp: StubIdP, session: aiohttp.ClientSession, rsa_a: SigningKey
) -> None:
    # rsa-a is published with "alg": "RS256"; a PS256 token naming it is refused.
    authenticator = make_authenticator(idp, session)
    token = rsa_a.sign(claims_for(idp), alg="PS256")
    assert await rejection(authenticator, token) == "token algorithm does not match its signing key"


async def test_rsa_ec_and_eddsa_keys_all_verify_and_an_rsa_key_without_alg_takes_ps256(
    idp: StubIdP, session: aiohttp.ClientSession
) -> None:
    keys = [
        SigningKey("ps", "PS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        SigningKey("ec", "ES256", ec.generate_private_key(ec.SECP256R1())),
        SigningKey("ed", "EdDSA", ed25519.Ed25519PrivateKey.generate()),
    ]
    idp.jwks = {"keys": [key.jwk() for key in keys]}
    authenticator = make_authenticator(idp, session)
    for key in keys:
        principal = await authenticator.authenticate(key.sign(claims_for(idp, sub=key.kid)))
        assert principal.id.endswith(f"#{key.kid}")


async def test_malformed_and_foreign_tokens_are_named_as_such(
    idp: StubIdP, session: aiohttp.ClientSession, rsa_a: SigningKey
) -> None:
    authenticator = make_authenticator(idp, session)
    for garbage in ("sk-tollway-virtual-key", "a.b.c", "x" * 20000, "e30.e30.e30.e30"):
        assert not authenticator.accepts(garbage)
        assert await rejection(authenticator, garbage) == "malformed token"
    foreign = rsa_a.sign(claims_for(idp, iss="https://evil.example.com"))
    assert not authenticator.accepts(foreign)
    assert await rejection(authenticator, foreign) == "token issuer is not trusted"
    no_issuer = rsa_a.sign(claims_for(idp, iss=None))
    assert await rejection(authenticator, no_issuer) == "token issuer is not trusted"
    assert idp.requests == []


async def test_an_unknown_kid_refetches_once_then_is_rejected_until_the_interval_passes(
    idp: StubIdP, session: aiohttp.ClientSession, rsa_a: SigningKey
) -> None:
    clock = FakeClock()
    authenticator = make_authenticator(idp, session, clock)
    await authenticator.authenticate(rsa_a.sign(claims_for(idp)))
    assert idp.jwks_fetches() == 1
    clock.now += 11
    stranger = rsa_key("stranger")
    for kid in ("stranger", "made-up-1", "made-up-2"):
        token = stranger.sign(claims_for(idp), kid=kid)
        assert await rejection(authenticator, token) == "token signing key unknown"
    assert idp.jwks_fetches() == 2, "only the first unknown kid may refetch within 10 s"
    clock.now += 11
    assert await rejection(authenticator, stranger.sign(claims_for(idp))) == (
        "token signing key unknown"
    )
    assert idp.jwks_fetches() == 3


async def test_a_rotated_key_verifies_after_an_immediate_refetch(
    idp: StubIdP, session: aiohttp.ClientSession, rsa_a: SigningKey, rsa_b: SigningKey
) -> None:
    clock = FakeClock()
    authenticator = make_authenticator(idp, session, clock)
    await authenticator.authenticate(rsa_a.sign(claims_for(idp)))
    idp.jwks = {"keys": [rsa_b.jwk(), rsa_a.jwk()]}
    clock.now += 11
    principal = await authenticator.authenticate(rsa_b.sign(claims_for(idp, sub="after")))
    assert principal.id.endswith("#after")
    assert idp.jwks_fetches() == 2
    assert (await authenticator.authenticate(rsa_a.sign(claims_for(idp)))).id.endswith("#u-1")
    assert idp.jwks_fetches() == 2


async def test_concurrent_requests_on_a_cold_cache_share_one_fetch(
    idp: StubIdP, session: aiohttp.ClientSession, rsa_a: SigningKey
) -> None:
    authenticator = make_authenticator(idp, session)
    token = rsa_a.sign(claims_for(idp))
    principals = await asyncio.gather(*(authenticator.authenticate(token) for _ in range(20)))
    assert {principal.id for principal in principals} == {f"oidc:{idp.url}#u-1"}
    assert idp.requests == ["/.well-known/openid-configuration", "/jwks"]


async def test_keys_are_refreshed_after_jwks_refresh_and_kept_when_the_idp_fails(
    idp: StubIdP,
    session: aiohttp.ClientSession,
    rsa_a: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    authenticator = make_authenticator(idp, session, clock, jwks_refresh="60s")
    token = rsa_a.sign(claims_for(idp))
    await authenticator.authenticate(token)
    clock.now += 30
    await authenticator.authenticate(token)
    assert idp.jwks_fetches() == 1
    clock.now += 31
    idp.status = 503
    with caplog.at_level(logging.WARNING, logger="tollway.auth"):
        await authenticator.authenticate(token)
    assert idp.jwks_fetches() == 2
    assert "answered 503; keeping the cached keys" in caplog.text
    await authenticator.authenticate(token)
    assert idp.jwks_fetches() == 2, "a failed refresh is retried only after the interval"
    idp.status = 200
    clock.now += 11
    await authenticator.authenticate(token)
    assert idp.jwks_fetches() == 3


async def test_a_removed_key_stops_verifying_at_the_next_refresh(
    idp: StubIdP, session: aiohttp.ClientSession, rsa_a: SigningKey, rsa_b: SigningKey
) -> None:
    clock = FakeClock()
    authenticator = make_authenticator(idp, session, clock, jwks_refresh="60s")
    token = rsa_a.sign(claims_for(idp))
    await authenticator.authenticate(token)
    idp.jwks = {"keys": [rsa_b.jwk()]}
    clock.now += 61
    assert await rejection(authenticator, token) == "token signing key unknown"


async def test_an_unreachable_idp_is_reported_and_logged_without_the_token(
    session: aiohttp.ClientSession, rsa_a: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    issuer = f"http://127.0.0.1:{free_port()}"
    config = OIDCIssuerConfig(issuer=issuer, audience=[AUDIENCE])
    authenticator = OIDCAuthenticator([config], session, clock=FakeClock())
    token = rsa_a.sign({"iss": issuer, "sub": "u", "aud": AUDIENCE, "exp": time.time() + 60})
    with caplog.at_level(logging.WARNING, logger="tollway.auth"):
        with pytest.raises(AuthenticationFailed, match=r"^identity provider unreachable$"):
            await authenticator.authenticate(token)
        started = time.monotonic()
        with pytest.raises(AuthenticationFailed, match=r"^identity provider unreachable$"):
            await authenticator.authenticate(token)
        assert time.monotonic() - started < 0.1, "a second attempt within 10 s is not made"
    assert f"OIDC issuer {issuer}: cannot fetch {issuer}/.well-known" in caplog.text
    assert len(caplog.records) == 1
    assert all(part not in caplog.text for part in token.split("."))


async def test_a_discovery_document_naming_another_issuer_is_not_trusted(
    idp: StubIdP,
    session: aiohttp.ClientSession,
    rsa_a: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    idp.discovery_issuer = "https://impostor.example.com"
    authenticator = make_authenticator(idp, session)
    with caplog.at_level(logging.WARNING, logger="tollway.auth"):
        message = await rejection(authenticator, rsa_a.sign(claims_for(idp)))
    assert message == "identity provider unreachable"
    assert "names another issuer" in caplog.text
    assert idp.jwks_fetches() == 0


async def test_a_configured_jwks_uri_skips_discovery(
    idp: StubIdP, session: aiohttp.ClientSession, rsa_a: SigningKey
) -> None:
    authenticator = make_authenticator(idp, session, jwks_uri=f"{idp.url}/jwks")
    await authenticator.authenticate(rsa_a.sign(claims_for(idp)))
    assert idp.requests == ["/jwks"]


async def test_symmetric_and_encryption_keys_in_a_jwks_are_never_used(
    idp: StubIdP, session: aiohttp.ClientSession
) -> None:
    secret = b"shared-secret-that-is-long-enough-for-hs256"
    idp.jwks = {"keys": [{"kty": "oct", "kid": "hmac", "k": b64(secret)}]}
    authenticator = make_authenticator(idp, session, algorithms=["RS256"])
    token = jwt.encode(claims_for(idp), secret, algorithm="HS256", headers={"kid": "hmac"})
    assert await rejection(authenticator, token) == "token algorithm not allowed"
    assert key_algorithms({"kty": "oct", "k": "AA"}, ["RS256"]) == []
    assert key_algorithms({"kty": "RSA", "use": "enc"}, ["RS256"]) == []
    assert key_algorithms({"kty": "RSA", "key_ops": ["encrypt"]}, ["RS256"]) == []
    assert key_algorithms({"kty": "RSA"}, ["RS256", "PS256", "ES256"]) == ["RS256", "PS256"]
    assert key_algorithms({"kty": "RSA", "alg": "PS256"}, ["RS256", "PS256"]) == ["PS256"]
    assert key_algorithms({"kty": "EC", "crv": "P-384"}, ["ES256", "ES384"]) == ["ES384"]
    assert key_algorithms({"kty": "OKP", "crv": "Ed25519"}, ["EdDSA"]) == ["EdDSA"]
    assert key_algorithms({"kty": "OKP", "crv": "X25519"}, ["EdDSA"]) == []
