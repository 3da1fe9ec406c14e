"""Vertex AI through a service account key: the gateway mints, caches and renews tokens.

A simulator of its own plays Google's token endpoint (it checks the JWT-bearer assertion's
signature with the account's public key) and Vertex AI (which then wants those tokens).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support import Process, running_gateway, running_simulator

FILE_RECHECK = 0.2
"""The gateway's ``upstream.file_secret_recheck`` here (5 s by default), in seconds."""


def _picked_up() -> None:
    """Wait until the gateway looks at the key file again."""
    time.sleep(FILE_RECHECK + 0.5)


def _keypair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


ECHO_KEY_ID = "3f1c0b9e7d2a4c6e8b0d1f3a5c7e9b1d3f5a7c9e"
"""A real-looking private key id (40 hex digits), for the account whose errors are echoed."""


def _write_account(path: Path, private_key: str, token_uri: str, key_id: str = "k1") -> None:
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "simulated",
                "private_key_id": key_id,
                "private_key": private_key,
                "client_email": "tollway@simulated.iam.gserviceaccount.com",
                "token_uri": token_uri,
            }
        )
    )


def _register(sim: str, public_key: str) -> None:
    answer = httpx.post(sim + "/_sim/config", json={"google_oauth_public_key": public_key})
    answer.raise_for_status()


def _recorded(sim: str, path_part: str) -> list[dict[str, Any]]:
    requests = httpx.get(sim + "/_sim/requests").json()
    return [r for r in requests if path_part in r["path"]]


@dataclass
class Vertex:
    """The gateway, its process, the simulator and the service account key file."""

    url: str
    process: Process
    sim: str
    account: Path
    echoed_key: str
    """The private key of the account of ``vertex-echo`` (its own file)."""


@pytest.fixture(scope="module")
def vertex(log_dir: Path) -> Iterator[Vertex]:
    with running_simulator(log_dir) as sim:
        private, public = _keypair()
        account = log_dir / "service-account.json"
        _write_account(account, private, sim + "/oauth2/token")
        _register(sim, public)
        echoed, _ = _keypair()
        echo_account = log_dir / "echoed-service-account.json"
        _write_account(echo_account, echoed, sim + "/oauth2/token", ECHO_KEY_ID)

        def model(name: str, key_file: Path) -> dict[str, Any]:
            deployment = {
                "provider": "vertex_ai",
                "model": "sim-chat",
                "api_base": f"{sim}/v1/projects/simulated/locations/us-central1",
                "google_service_account": f"file:{key_file}",
            }
            return {"name": name, "deployments": [deployment]}

        config = {
            "upstream": {"file_secret_recheck": f"{FILE_RECHECK * 1000:.0f}ms"},
            "models": [model("vertex-sa", account), model("vertex-echo", echo_account)],
        }
        with running_gateway(log_dir, config) as (url, process):
            yield Vertex(url, process, sim, account, echoed)


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="client-key-for-tests-0123456789")


def test_tokens_are_minted_once_and_reused(vertex: Vertex) -> None:
    url, sim = vertex.url, vertex.sim
    httpx.delete(sim + "/_sim/requests")
    client = _client(url)
    for _ in range(3):
        reply = client.chat.completions.create(
            model="vertex-sa", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content
    stream = client.chat.completions.create(
        model="vertex-sa", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert len(_recorded(sim, "/oauth2/token")) == 1
    calls = _recorded(sim, ":generateContent") + _recorded(sim, ":streamGenerateContent")
    assert len(calls) == 4
    assert all(c["headers"]["authorization"].startswith("Bearer ya29.sim-") for c in calls)


def test_a_rotated_key_gets_a_token_of_its_own(vertex: Vertex) -> None:
    url, sim, account = vertex.url, vertex.sim, vertex.account
    private, public = _keypair()
    _write_account(account, private, sim + "/oauth2/token")
    _register(sim, public)  # tokens of the old key are now refused by the simulated Vertex
    _picked_up()
    httpx.delete(sim + "/_sim/requests")
    reply = _client(url).chat.completions.create(
        model="vertex-sa", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content
    assert len(_recorded(sim, "/oauth2/token")) == 1


def test_a_key_the_token_endpoint_refuses_is_a_clear_error(
    vertex: Vertex,
) -> None:
    url, sim, account = vertex.url, vertex.sim, vertex.account
    stranger, _ = _keypair()  # signs with a key the endpoint does not know
    _write_account(account, stranger, sim + "/oauth2/token")
    _picked_up()
    with pytest.raises(openai.APIStatusError) as caught:
        _client(url).chat.completions.create(
            model="vertex-sa", messages=[{"role": "user", "content": "hi"}]
        )
    # The gateway's credential was refused, not the client's key: a 502 that says so.
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_authentication_failed"
    assert "refused the gateway's credential" in caught.value.message
    assert "PRIVATE KEY" not in caught.value.response.text
    # The token endpoint's own words are the operator's to read.
    admin = {"Authorization": "Bearer client-key-for-tests-0123456789"}
    rows = httpx.get(url + "/admin/deployments", headers=admin).json()["data"]
    (row,) = (row for row in rows if row["group"] == "vertex-sa")
    assert "OAuth token request refused" in row["last_error_detail"]
    assert "Invalid JWT" in row["last_error_detail"]
    assert "PRIVATE KEY" not in json.dumps(row)


def test_a_file_that_is_not_a_service_account_key_is_named(
    vertex: Vertex,
) -> None:
    url, account = vertex.url, vertex.account
    account.write_text('{"not": "an account"}')
    _picked_up()
    with pytest.raises(openai.APIStatusError) as caught:
        _client(url).chat.completions.create(
            model="vertex-sa", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 502
    assert "is not a Google service account key" in caught.value.message


def test_what_the_token_endpoint_quotes_is_masked_and_its_words_reach_no_client(
    vertex: Vertex,
) -> None:
    # An endpoint (or a proxy before it) that quotes the signed assertion, a bearer credential
    # at that endpoint for its hour, and the private key id, in a refusal and in a 5xx.
    url, sim = vertex.url, vertex.sim
    httpx.delete(sim + "/_sim/requests")
    answers = []
    for fault in ("echo:400", "echo:503"):
        httpx.post(sim + "/_sim/config", json={"fault": fault}).raise_for_status()
        try:
            answer = httpx.post(
                url + "/v1/chat/completions",
                json={"model": "vertex-echo", "messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": "Bearer client-key-for-tests-0123456789"},
                timeout=30,
            )
        finally:
            httpx.post(sim + "/_sim/config", json={"fault": None}).raise_for_status()
        answers.append(answer)
    refused, unavailable = answers
    assert refused.status_code == 502, refused.text
    assert refused.json()["error"]["code"] == "upstream_authentication_failed"
    assert unavailable.status_code == 503, unavailable.text
    assert "OAuth token endpoint answered 503" in unavailable.json()["error"]["message"]
    for answer in answers:  # the endpoint's own words are the operator's only
        assert "simulated fault" not in answer.text and "invalid_grant" not in answer.text
    assertions = [r["json"]["assertion"] for r in _recorded(sim, "/oauth2/token")]
    assert len(assertions) >= 2
    admin = {"Authorization": "Bearer client-key-for-tests-0123456789"}
    rows = httpx.get(url + "/admin/deployments", headers=admin).json()["data"]
    (row,) = (row for row in rows if row["group"] == "vertex-echo")
    assert (
        "simulated fault, the request carried assertion=*** (kid ***)" in (row["last_error_detail"])
    )
    seen = {
        "the client": "".join(answer.text for answer in answers),
        "the admin API": json.dumps(rows),
        "the gateway's output": vertex.process.output(),
    }
    secrets = {"the private key id": ECHO_KEY_ID, "the private key": vertex.echoed_key}
    for assertion in assertions:
        secrets["an assertion"] = assertion
        secrets["an assertion's signature"] = assertion.rsplit(".", 1)[1]
        for where, text in seen.items():
            for what, secret in secrets.items():
                assert secret not in text, f"{what} reached {where}"
