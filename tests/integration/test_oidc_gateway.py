"""OIDC sign-in through the gateway: a real identity provider's token as the SDK's API key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_oidc_provider import AUDIENCE, CLIENTS, node, running_idp
from tests.support import CLIENT_KEY, Process, running_gateway

__all__ = ["node"]  # the fixture, imported so this module can use it


@pytest.fixture(scope="module")
def idp(node: str, log_dir: Path) -> Iterator[str]:
    """A real oidc-provider process; yields its issuer URL."""
    with running_idp(node, log_dir) as issuer:
        yield issuer


@pytest.fixture(scope="module")
def signed_in(idp: str, log_dir: Path, simulator_url: str) -> Iterator[tuple[str, Process]]:
    """A gateway that trusts the identity provider and requires a credential."""
    config = {
        "auth": {"oidc": [{
            "issuer": idp, "audience": [AUDIENCE], "team_claim": "groups",
            "role_claim": "roles", "role_map": {"team_admin": "team_admin"},
            "admin_groups": ["tollway-admins"], "jwks_min_refetch": "200ms",
        }]},
        "models": [{"name": "chat", "deployments": [{
            "provider": "openai", "model": "sim-chat", "api_base": simulator_url + "/v1",
            "api_key": "env:TEST_UPSTREAM_KEY"}]}],
    }  # fmt: skip
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as running:
        yield running


def token(issuer: str, client_id: str, resource: str | None = None) -> str:
    form = {"grant_type": "client_credentials", **({"resource": resource} if resource else {})}
    answer = httpx.post(f"{issuer}/token", data=form, auth=(client_id, CLIENTS[client_id]))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def ask(url: str, credential: str) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(base_url=url + "/v1", api_key=credential, max_retries=0)
    return client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "signed in"}]
    )


def test_an_idp_token_is_a_credential(signed_in: tuple[str, Process], idp: str) -> None:
    url, process = signed_in
    alice = token(idp, "alice-cli")
    assert "signed in" in (ask(url, alice).choices[0].message.content or "")
    me = httpx.get(url + "/admin/whoami", headers={"Authorization": f"Bearer {alice}"}).json()
    # Provisioned: the store's user and teams, found or made from the token's claims.
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    user = admin.get(f"/admin/users/{me['user']}").json()
    teams = {team["name"]: team["id"] for team in admin.get("/admin/teams").json()["data"]}
    assert me["kind"] == "oidc" and user["email"] == "alice@example.com"
    assert me["teams"] == [teams["research"], teams["ml"]] and me["role"] == "team_admin"
    ops = token(idp, "ops-bot")
    assert (
        httpx.get(url + "/admin/whoami", headers={"Authorization": f"Bearer {ops}"}).json()["role"]
        == "admin"
    )
    assert alice not in process.output()


def test_bad_tokens_are_401_saying_why(signed_in: tuple[str, Process], idp: str) -> None:
    url, _ = signed_in
    other = token(idp, "bob-cli", resource="https://other.test")
    with pytest.raises(openai.AuthenticationError) as caught:
        ask(url, other)
    assert "audience" in caught.value.message
    header, payload, signature = token(idp, "bob-cli").split(".")
    with pytest.raises(openai.AuthenticationError) as caught:
        flipped = "A" if signature[10] != "A" else "B"
        ask(url, f"{header}.{payload}.{signature[:10]}{flipped}{signature[11:]}")
    assert "signature" in caught.value.message


def test_rotating_the_idp_key_needs_no_gateway_change(
    signed_in: tuple[str, Process], idp: str
) -> None:
    url, _ = signed_in
    assert httpx.post(f"{idp}/_admin/rotate").status_code == 200
    assert ask(url, token(idp, "bob-cli")).choices


def test_blocking_the_user_in_the_gateway_stops_their_tokens(
    signed_in: tuple[str, Process], idp: str
) -> None:
    url, _ = signed_in
    bob = token(idp, "bob-cli")
    assert ask(url, bob).choices
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    users = admin.get("/admin/users").json()["data"]
    user = next(user for user in users if user["email"] == "bob@example.com")  # signed in
    admin.patch(f"/admin/users/{user['id']}", json={"blocked": True}).raise_for_status()
    with pytest.raises(openai.AuthenticationError) as caught:
        ask(url, bob)
    assert "blocked" in caught.value.message
    assert httpx.post(f"{idp}/_admin/disable", params={"client_id": "bob-cli"}).status_code == 200
    refused = httpx.post(
        f"{idp}/token",
        data={"grant_type": "client_credentials"},
        auth=("bob-cli", CLIENTS["bob-cli"]),
    )
    assert refused.status_code == 401  # the IdP no longer issues tokens to it either
