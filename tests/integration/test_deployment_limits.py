"""Per-deployment rate limits through a real gateway: what a deployment's attempts used is
what its limits are charged, whether an attempt is retried on it, its stream fails after
it began, or it fails before its answer began having read the prompt (a stream whose head
reported it, a call a time limit cut once sent).

The simulator is this module's own: a test sets its server-wide fault, which would reach
every other test's requests on the session's simulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, running_gateway, running_simulator

DEPLOYMENT_TPM = 1000
ASKED = 600  # max_tokens of each request: one fits the deployment's minute, two do not
FAILS_FIRST = 36
"""A seed of the simulator's fault draws (``random.Random(36)``): the first below one half,
the next ones above, so with ``fault_rate`` 0.5 the first call fails and the rest answer."""

LONG_PROMPT = "tell me about the weather and the sea " * 125
"""About a thousand tokens, however counted: the part of a request its failed attempt used."""
SHORT_OUTPUT = 20
PROMPT_TPM = 1600
"""A deployment's minute that holds one request of ``LONG_PROMPT`` (input and output), and
not a second once a failed attempt's prompt is charged to it."""


@pytest.fixture(scope="module")
def simulator(log_dir: Path) -> Iterator[str]:
    with running_simulator(log_dir, "--api-key", UPSTREAM_KEY) as url:
        yield url


@pytest.fixture(scope="module")
def gateway(log_dir: Path, simulator: str) -> Iterator[str]:
    def group(name: str, **extra: Any) -> dict[str, Any]:
        deployment = {
            "id": "dep-" + name, "provider": "openai", "model": "sim-chat",
            "api_base": f"{simulator}/v1", "api_key": "env:TEST_UPSTREAM_KEY",
        }  # fmt: skip
        return {"name": name, "deployments": [deployment], **extra}

    claude = {
        "id": "dep-overloads", "provider": "anthropic", "model": "sim-chat",
        "api_base": simulator, "api_key": "env:TEST_UPSTREAM_KEY",
    }  # fmt: skip
    stalls = group("stalls")
    stalls["deployments"][0]["timeouts"] = {"first_byte": "300ms"}
    config = {
        "upstream": {"forward_headers": ["x-sim-*"]},
        "routing": {"backoff": "1ms", "backoff_max": "1ms"},
        "models": [
            group("retried", retries=1),
            group("cut"),
            {"name": "overloads", "deployments": [claude]},
            stalls,
        ],
        "limits": {
            "deployments": {
                "dep-retried": {"tpm": DEPLOYMENT_TPM},
                "dep-cut": {"tpm": DEPLOYMENT_TPM},
                "dep-overloads": {"tpm": PROMPT_TPM},
                "dep-stalls": {"tpm": PROMPT_TPM},
            }
        },
    }
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, _):
        yield url


def ask(client: openai.OpenAI, model: str, **extra: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": "tell me"}],
        max_tokens=ASKED,
        extra_headers={"x-sim-output-tokens": str(ASKED)},
        **extra,
    )


def test_a_retry_on_the_same_deployment_is_charged_to_its_limits(
    gateway: str, simulator: str
) -> None:
    # The first attempt's failure gave the deployment's tokens back, and the retry ran
    # under no claim at all: what it used was never taken, so the next request found the
    # deployment's minute full again and went on past the provider's own limit.
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0)
    fault = {"fault": "status:503", "fault_rate": 0.5, "seed": FAILS_FIRST}
    httpx.post(simulator + "/_sim/config", json=fault).raise_for_status()
    try:
        first = ask(client, "retried")
    finally:
        httpx.post(simulator + "/_sim/config", json={"fault": None}).raise_for_status()
    assert first.headers["x-tollway-attempts"] == "2"  # a 503, then the retry's answer
    usage = first.parse().usage
    assert usage is not None and usage.total_tokens > DEPLOYMENT_TPM - ASKED
    with pytest.raises(openai.RateLimitError) as caught:
        ask(client, "retried")
    assert caught.value.code == "rate_limit_exceeded"


def test_a_stream_that_fails_after_it_began_is_charged_what_it_generated(gateway: str) -> None:
    # The upstream failing mid-stream made the attempt a failed one, and a failed attempt
    # gave the deployment everything back, though the provider had generated (and the
    # request was charged for) hundreds of tokens.
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0)
    with client.chat.completions.with_streaming_response.create(
        model="cut",
        messages=[{"role": "user", "content": "tell me"}],
        max_tokens=ASKED,
        stream=True,
        extra_headers={"x-sim-output-tokens": str(ASKED), "x-sim-fault": "error-after:500"},
    ) as response:
        lines = list(response.iter_lines())
    assert any('"error"' in line for line in lines)  # the upstream's overload, mid-stream
    with pytest.raises(openai.RateLimitError) as caught:
        ask(client, "cut")
    assert caught.value.code == "rate_limit_exceeded"


def test_a_stream_failing_after_its_head_keeps_the_prompt_charged_to_the_deployment(
    gateway: str,
) -> None:
    # message_start reported the prompt's tokens, then an overloaded_error event: the
    # provider read the prompt and counts it against the deployment's TPM, but the failed
    # attempt gave the deployment's bucket everything back, so the gateway kept sending it
    # more than its TPM.
    client = anthropic.Anthropic(base_url=gateway, api_key=CLIENT_KEY, max_retries=0)
    messages: Any = [{"role": "user", "content": LONG_PROMPT}]
    with pytest.raises(anthropic.APIStatusError) as failed:
        list(client.messages.create(
            model="overloads", max_tokens=SHORT_OUTPUT, messages=messages, stream=True,
            extra_headers={"x-sim-fault": "error-after:0"},
        ))  # fmt: skip
    assert failed.value.status_code != 429  # the overload itself, not the gateway's limit
    with pytest.raises(anthropic.RateLimitError) as refused:
        client.messages.create(model="overloads", max_tokens=SHORT_OUTPUT, messages=messages)
    assert refused.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


def test_a_call_a_time_limit_cut_once_sent_keeps_its_prompt_charged_to_the_deployment(
    gateway: str,
) -> None:
    # The upstream never answered and the first-byte limit cut the call: the request is
    # charged the prompt the provider read, and so is the deployment's bucket.
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0)
    messages: Any = [{"role": "user", "content": LONG_PROMPT}]
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(
            model="stalls", messages=messages, max_tokens=SHORT_OUTPUT,
            extra_headers={"x-sim-fault": "hang"},
        )  # fmt: skip
    assert failed.value.status_code == 504
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="stalls", messages=messages, max_tokens=SHORT_OUTPUT)
    assert refused.value.code == "rate_limit_exceeded"
