"""Tokens a real identity provider may well issue, through a gateway process: large ones
(a user in hundreds of groups) and odd ones that must be refused with a 401, never a 500.

The test is the identity provider here: it signs its own tokens and serves its key set on
loopback (the tokens' contents are the point, not the provider's flows; test_oidc_gateway.py
runs a real provider).
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, running_gateway

AUDIENCE = "https://tollway.test"
PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class _KeySet(http.server.BaseHTTPRequestHandler):
    """Serves the test's public key as a JWKS."""

    def do_GET(self) -> None:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(PRIVATE_KEY.public_key()))
        body = json.dumps({"keys": [{**jwk, "kid": "test-key", "use": "sig"}]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KeySet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def gateway(issuer: str, log_dir: Path, simulator_url: str) -> Iterator[str]:
    config = {
        "auth": {"oidc": [{
            "issuer": issuer, "jwks_uri": issuer + "/jwks", "audience": [AUDIENCE]}]},
        "models": [{"name": "chat", "deployments": [{
            "provider": "openai", "model": "sim-chat", "api_base": simulator_url + "/v1",
            "api_key": "env:TEST_UPSTREAM_KEY"}]}],
    }  # fmt: skip
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, _):
        yield url


def signed(issuer: str, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": issuer, "aud": AUDIENCE, "sub": "u-1", "exp": now + 300, "iat": now}
    return jwt.encode(payload | claims, PRIVATE_KEY, algorithm="RS256", headers={"kid": "test-key"})


def whoami(url: str, token: str) -> httpx.Response:
    return httpx.get(url + "/admin/whoami", headers={"Authorization": f"Bearer {token}"})


def test_a_token_naming_hundreds_of_groups_is_accepted(gateway: str, issuer: str) -> None:
    # Entra ID puts up to 200 group ids (36 characters each) in a token, Keycloak every group
    # path: such a token is well over 8 KiB, and the documented limit is 16 KiB.
    groups = [f"00000000-0000-4000-8000-{index:012d}" for index in range(250)]
    token = signed(issuer, groups=groups)
    assert 12 * 1024 < len(token) < 16 * 1024
    answer = whoami(gateway, token)
    assert answer.status_code == 200, answer.text[:200]
    # Each group is a team of the store, provisioned on this first sign-in, in the token's order.
    admin = httpx.get(gateway + "/admin/teams", headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    names = {team["id"]: team["name"] for team in admin.json()["data"]}
    assert [names[team] for team in answer.json()["teams"]] == groups
    assert whoami(gateway, token).json() == answer.json()


def test_claims_the_store_cannot_hold_are_a_401_or_left_out_never_a_500(
    gateway: str, issuer: str
) -> None:
    answer = whoami(gateway, signed(issuer, sub="u-long", email="x" * 400 + "@example.com"))
    assert answer.status_code == 401, answer.text
    assert "cannot name a user" in answer.json()["error"]["message"]
    answer = whoami(gateway, signed(issuer, sub="u-2", groups=["g" * 300, "fine", "nul\u0000"]))
    assert answer.status_code == 200, answer.text
    admin = httpx.get(gateway + "/admin/teams", headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    names = {team["id"]: team["name"] for team in admin.json()["data"]}
    assert [names[team] for team in answer.json()["teams"]] == ["fine"]


def test_a_token_over_16_kib_is_refused_as_malformed_without_echoing_it(
    gateway: str, issuer: str
) -> None:
    token = signed(issuer, groups=[f"group-{index:05d}" for index in range(950)])
    assert 16 * 1024 < len(token) < 24 * 1024
    answer = whoami(gateway, token)
    assert answer.status_code == 401
    assert answer.json()["error"]["message"] == "malformed token"
    assert token[:40] not in answer.text


def test_a_jwt_with_an_issuer_that_is_not_a_string_is_a_401_not_a_500(gateway: str) -> None:
    # A header with a leading space does not start "eyJ": the authenticator asks the token
    # verifier whether the token names one of its issuers, which must not trip on a list.
    def segment(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    header = base64.urlsafe_b64encode(b' {"alg": "RS256"}').rstrip(b"=").decode()
    for issuer in (["https://idp.example"], {"url": "https://idp.example"}):
        answer = whoami(gateway, f"{header}.{segment({'iss': issuer})}.c2ln")
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "invalid_api_key"
