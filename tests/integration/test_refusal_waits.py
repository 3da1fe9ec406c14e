"""The gateway's own refusals say how long to wait to the millisecond (``retry-after-ms``,
which the ``openai`` and ``anthropic`` SDKs read before ``retry-after``), so an SDK retries
when a token bucket has refilled, not a whole second later.

Each test's bucket is its own model group's (or deployment's) TPM. A short request leaves
the bucket a few tokens short of full; a request asking for the whole bucket (``max_tokens``
of its capacity: a request larger than a bucket fits it when full) is then refused until
those few tokens have refilled (``SHORT``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY, gateway_config
from tests.support import CLIENT_KEY, running_gateway

TPM = 4_000
"""67 tokens a second."""
SHORT = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
"""A short request's prompt: the tokens it leaves the bucket short of full (about 20, the
answer's included) refill in about 300 ms at ``TPM``: long enough for the next request to
come before, and well short of the whole second ``retry-after`` says."""
OPENAI_AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}
ANTHROPIC_AUTH = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def gateway(log_dir: Path, simulator_url: str) -> Iterator[str]:
    config = gateway_config(simulator_url)
    groups = {group["name"]: group for group in config["models"]}
    chat, claude = groups["test-chat"], groups["test-claude"]
    names = ("chat-sdk", "chat-raw", "claude-sdk", "claude-raw")
    config["models"] += [{**(claude if "claude" in n else chat), "name": n} for n in names]
    deployment = {**chat["deployments"][0], "id": "dep-own-tpm"}
    config["models"].append({"name": "chat-deployment", "deployments": [deployment]})
    config["limits"] = {
        "models": {name: {"tpm": TPM} for name in names},
        "deployments": {"dep-own-tpm": {"tpm": TPM}},
    }
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, _):
        yield url


def _short_of_full(url: str, model: str, anthropic_route: bool) -> None:
    """Leave ``model``'s bucket a few tokens short of full: one short request."""
    if anthropic_route:
        path, auth = "/v1/messages", ANTHROPIC_AUTH
    else:
        path, auth = "/v1/chat/completions", OPENAI_AUTH
    body = {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": SHORT}]}
    answer = httpx.post(url + path, headers=auth, json=body)
    assert answer.status_code == 200, answer.text


def _whole_bucket(model: str) -> dict[str, Any]:
    return {"model": model, "max_tokens": TPM, "messages": [{"role": "user", "content": "hi"}]}


def _assert_exact_wait(headers: httpx.Headers) -> None:
    assert headers["retry-after"] == "1"  # whole seconds, rounded up, for other clients
    assert 0 < int(headers["retry-after-ms"]) < 1000, headers


def test_the_openai_sdk_retries_when_the_bucket_has_refilled(gateway: str) -> None:
    # retry-after: 1 alone made the SDK wait a whole second for a bucket that refills in
    # a few hundred ms.
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=1)
    client.chat.completions.create(**_whole_bucket("test-chat"))  # warm: no limit there
    _short_of_full(gateway, "chat-sdk", anthropic_route=False)
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(**_whole_bucket("chat-sdk"))
    waited = time.monotonic() - started
    assert raw.retries_taken == 1  # refused once, then admitted
    assert waited < 0.9


def test_the_anthropic_sdk_retries_when_the_bucket_has_refilled(gateway: str) -> None:
    client = anthropic.Anthropic(base_url=gateway, api_key=CLIENT_KEY, max_retries=1)
    client.messages.create(**_whole_bucket("test-claude"))  # warm: no limit there
    _short_of_full(gateway, "claude-sdk", anthropic_route=True)
    started = time.monotonic()
    raw = client.messages.with_raw_response.create(**_whole_bucket("claude-sdk"))
    waited = time.monotonic() - started
    assert raw.retries_taken == 1
    assert waited < 0.9


def test_a_rate_limit_refusal_on_an_openai_route_says_its_wait_in_ms(gateway: str) -> None:
    _short_of_full(gateway, "chat-raw", anthropic_route=False)
    refused = httpx.post(
        gateway + "/v1/chat/completions", headers=OPENAI_AUTH, json=_whole_bucket("chat-raw")
    )
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    _assert_exact_wait(refused.headers)


def test_a_rate_limit_refusal_on_an_anthropic_route_says_its_wait_in_ms(gateway: str) -> None:
    _short_of_full(gateway, "claude-raw", anthropic_route=True)
    refused = httpx.post(
        gateway + "/v1/messages", headers=ANTHROPIC_AUTH, json=_whole_bucket("claude-raw")
    )
    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    _assert_exact_wait(refused.headers)


def test_a_deployment_at_its_own_limit_says_its_wait_in_ms(gateway: str) -> None:
    # Every candidate refused by its own limit: the client gets the soonest wait, as exact.
    _short_of_full(gateway, "chat-deployment", anthropic_route=False)
    refused = httpx.post(
        gateway + "/v1/chat/completions",
        headers=OPENAI_AUTH,
        json=_whole_bucket("chat-deployment"),
    )
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    _assert_exact_wait(refused.headers)
