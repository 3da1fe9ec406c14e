"""OIDC verification against a real OpenID Connect provider: oidc-provider run by node.

tests/integration/oidc/server.js issues RS256 JWT access tokens through client_credentials;
its loopback-only admin endpoints rotate the signing key and disable a client. Each test
builds its own authenticator (fresh key cache) and counts the JWKS fetches it makes; a fake
clock drives only the refetch rate limit, everything else is real sockets and real time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NoReturn

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support import ROOT, Process, free_port, wait_http
from tollway.auth.oidc import OIDCAuthenticator
from tollway.config.schema import OIDCIssuerConfig
from tollway.core.errors import AuthenticationFailed

HARNESS = ROOT / "tests" / "integration" / "oidc"
AUDIENCE = "https://tollway.test"
CLIENTS = {
    "alice-cli": "alice-secret",
    "ops-bot": "ops-secret",
    "bob-cli": "bob-secret",
    "short-lived": "short-secret",
    "carol-cli": "carol-secret",
    "dana-cli": "dana-secret",
}


def _unavailable(reason: str) -> NoReturn:
    # CI must run these tests; a developer without node gets a clear skip instead.
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required when CI=true)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with the harness's npm packages installed."""
    node_path = shutil.which("node")
    if node_path is None:
        _unavailable("node is not installed: the OIDC provider tests need node and npm")
    if not (HARNESS / "node_modules" / "oidc-provider").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            _unavailable("npm is not installed: cannot install tests/integration/oidc")
        install = subprocess.run(
            [npm, "ci", "--prefix", str(HARNESS), "--no-audit", "--no-fund", "--silent"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if install.returncode != 0:
            _unavailable(f"npm ci in tests/integration/oidc failed:\n{install.stderr[-2000:]}")
    return node_path


@contextmanager
def running_idp(node: str, log_dir: Path) -> Iterator[str]:
    """An oidc-provider process on a free port; yields its issuer URL."""
    port = free_port()
    process = Process([node, str(HARNESS / "server.js"), str(port)], log_dir / f"idp-{port}.log")
    issuer = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{issuer}/.well-known/openid-configuration", proc=process.proc)
        yield issuer
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n--- idp output ---\n{process.output()}") from None
    finally:
        process.stop()


@pytest.fixture(scope="module")
def issuer(node: str, log_dir: Path) -> Iterator[str]:
    """The issuer URL of the module's identity provider."""
    with running_idp(node, log_dir) as url:
        yield url


@dataclass
class FakeClock:
    """The monotonic clock of the refetch rate limit, moved by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Gateway:
    """What a test drives: an HTTP session that records its requests, and a clock."""

    session: aiohttp.ClientSession
    issuer: str
    requested: list[str] = field(default_factory=list)
    clock: FakeClock = field(default_factory=FakeClock)

    def authenticator(self, issuer: str | None = None, **fields: Any) -> OIDCAuthenticator:
        """A fresh authenticator (empty key cache) for ``issuer``."""
        settings = {
            "audience": [AUDIENCE],
            "team_claim": "groups",
            "role_claim": "roles",
            "role_map": {"viewer": "viewer", "team_admin": "team_admin"},
            "admin_groups": ["tollway-admins"],
            **fields,
        }
        config = OIDCIssuerConfig(issuer=issuer or self.issuer, **settings)
        return OIDCAuthenticator([config], self.session, clock=self.clock)

    def jwks_fetches(self) -> int:
        return sum(url.endswith("/jwks") for url in self.requested)

    async def token(
        self, client_id: str, resource: str | None = None, issuer: str | None = None
    ) -> str:
        """An access token from the IdP's token endpoint (client_credentials)."""
        status, body = await self.request_token(client_id, resource, issuer)
        assert status == 200, body
        token: str = body["access_token"]
        return token

    async def request_token(
        self, client_id: str, resource: str | None = None, issuer: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        form = {"grant_type": "client_credentials"}
        if resource is not None:
            form["resource"] = resource
        async with self.session.post(
            f"{issuer or self.issuer}/token",
            data=form,
            headers={"Authorization": aiohttp.encode_basic_auth(client_id, CLIENTS[client_id])},
        ) as response:
            return response.status, await response.json()

    async def admin(self, action: str, **params: str) -> dict[str, Any]:
        async with self.session.post(f"{self.issuer}/_admin/{action}", params=params) as response:
            assert response.status == 200
            state: dict[str, Any] = await response.json()
            return state


@pytest.fixture
async def gw(issuer: str) -> AsyncIterator[Gateway]:
    requested: list[str] = []

    async def on_request_start(
        _session: aiohttp.ClientSession, _context: SimpleNamespace, params: Any
    ) -> None:
        requested.append(str(params.url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        yield Gateway(session, issuer, requested)


async def rejection(authenticator: OIDCAuthenticator, token: str) -> str:
    with pytest.raises(AuthenticationFailed) as caught:
        await authenticator.authenticate(token)
    assert all(len(part) < 8 or part not in str(caught.value) for part in token.split("."))
    return caught.value.message


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of ``token``, unverified."""
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


async def test_an_idp_token_verifies_to_the_mapped_principal(gw: Gateway) -> None:
    authenticator = gw.authenticator()
    alice_token = await gw.token("alice-cli")
    header, claims = segments(alice_token)
    assert (header["alg"], header["typ"], claims["aud"]) == ("RS256", "at+jwt", AUDIENCE)
    assert authenticator.accepts(alice_token)
    alice = await authenticator.authenticate(alice_token)
    assert alice.kind == "oidc"
    assert alice.id == f"oidc:{gw.issuer}#alice-cli"
    assert (alice.user, alice.team, alice.teams) == (
        "alice@example.com",
        "research",
        ("research", "ml"),
    )
    assert alice.role == "team_admin", "the highest of the mapped roles wins"
    assert alice.allowed_models is None
    ops = await authenticator.authenticate(await gw.token("ops-bot"))
    assert (ops.user, ops.team, ops.role) == ("ops@example.com", "platform", "admin")
    assert gw.jwks_fetches() == 1, "the key set is fetched once and then served from memory"


async def test_a_token_for_another_audience_is_rejected(gw: Gateway) -> None:
    token = await gw.token("alice-cli", resource="https://other.test")
    assert segments(token)[1]["aud"] == "https://other.test"
    assert await rejection(gw.authenticator(), token) == "token audience not accepted"


async def test_an_expired_token_is_rejected(gw: Gateway) -> None:
    authenticator = gw.authenticator(leeway="1ms")
    token = await gw.token("short-lived")
    await authenticator.authenticate(token)
    expires = segments(token)[1]["exp"]
    await asyncio.sleep(max(0.0, expires - time.time()) + 0.05)
    assert await rejection(authenticator, token) == "token expired"


async def test_a_tampered_token_is_rejected(gw: Gateway) -> None:
    authenticator = gw.authenticator()
    header, payload, signature = (await gw.token("alice-cli")).split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    bad_signature = f"{signature[:middle]}{flipped}{signature[middle + 1 :]}"
    assert await rejection(authenticator, f"{header}.{payload}.{bad_signature}") == (
        "token signature invalid"
    )
    claims = segments(f"{header}.{payload}.{signature}")[1] | {"sub": "ops-bot"}
    forged_payload = b64(json.dumps(claims).encode())
    assert await rejection(authenticator, f"{header}.{forged_payload}.{signature}") == (
        "token signature invalid"
    )


async def test_a_token_signed_by_an_unknown_key_refetches_once_then_is_rejected(
    gw: Gateway,
) -> None:
    authenticator = gw.authenticator()
    real = await gw.token("alice-cli")
    await authenticator.authenticate(real)
    assert gw.jwks_fetches() == 1
    intruder = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = segments(real)[1]
    gw.clock.now += 11
    for kid in ("intruder", "intruder-2", "intruder-3"):
        forged = jwt.encode(claims, intruder, algorithm="RS256", headers={"kid": kid})
        assert await rejection(authenticator, forged) == "token signing key unknown"
    assert gw.jwks_fetches() == 2, "one refetch; later unknown kids wait for the rate limit"


async def test_after_key_rotation_new_tokens_verify_after_an_automatic_refetch(
    gw: Gateway,
) -> None:
    authenticator = gw.authenticator()
    before = await gw.token("alice-cli")
    await authenticator.authenticate(before)
    state = await gw.admin("rotate")
    after = await gw.token("alice-cli")
    assert segments(after)[0]["kid"] == state["active_kid"] != segments(before)[0]["kid"]
    gw.clock.now += 11
    assert (await authenticator.authenticate(after)).user == "alice@example.com"
    assert gw.jwks_fetches() == 2
    assert (await authenticator.authenticate(before)).user == "alice@example.com"
    assert gw.jwks_fetches() == 2, "the previous key stays published until its tokens expire"


async def test_hs256_forged_with_the_public_key_as_secret_is_rejected(gw: Gateway) -> None:
    authenticator = gw.authenticator()
    real = await gw.token("alice-cli")
    kid = segments(real)[0]["kid"]
    async with gw.session.get(f"{gw.issuer}/jwks") as response:
        jwks = await response.json()
    jwk = next(key for key in jwks["keys"] if key["kid"] == kid)
    public_pem = jwt.PyJWK(jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    signing_input = f"{header}.{real.split('.')[1]}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    assert await rejection(authenticator, f"{signing_input}.{b64(mac)}") == (
        "token algorithm not allowed"
    )


async def test_an_unsigned_alg_none_token_is_rejected(gw: Gateway) -> None:
    real = await gw.token("alice-cli")
    header = b64(json.dumps({"alg": "none", "typ": "at+jwt"}).encode())
    unsigned = f"{header}.{real.split('.')[1]}."
    assert await rejection(gw.authenticator(), unsigned) == "token algorithm not allowed"


async def test_a_token_from_an_untrusted_issuer_is_rejected(gw: Gateway) -> None:
    authenticator = gw.authenticator(issuer="https://idp.example.com")
    token = await gw.token("alice-cli")
    assert not authenticator.accepts(token)
    assert await rejection(authenticator, token) == "token issuer is not trusted"
    assert gw.requested == [f"{gw.issuer}/token"], "an untrusted issuer is never contacted"


async def test_an_idp_that_is_down_gives_a_clear_error_and_cached_keys_still_verify(
    gw: Gateway, node: str, log_dir: Path
) -> None:
    with running_idp(node, log_dir) as short_lived_issuer:
        warm = gw.authenticator(issuer=short_lived_issuer)
        token = await gw.token("alice-cli", issuer=short_lived_issuer)
        await warm.authenticate(token)
    cold = gw.authenticator(issuer=short_lived_issuer)
    assert await rejection(cold, token) == "identity provider unreachable"
    assert (await warm.authenticate(token)).user == "alice@example.com"


async def test_a_disabled_client_gets_no_new_token_but_its_issued_token_lives_until_exp(
    gw: Gateway,
) -> None:
    # JWTs are revoked by expiry: verification is local, so the IdP cannot recall one.
    authenticator = gw.authenticator()
    issued = await gw.token("bob-cli")
    assert (await authenticator.authenticate(issued)).user == "bob@example.com"
    await gw.admin("disable", client_id="bob-cli")
    status, body = await gw.request_token("bob-cli")
    assert (status, body["error"]) == (401, "invalid_client")
    assert (await authenticator.authenticate(issued)).user == "bob@example.com"
    assert segments(issued)[1]["exp"] - time.time() <= 300
