"""An upstream failure reaches the client naming its deployment, never the upstream's address."""

from __future__ import annotations

import pytest

from tollway.core.errors import UpstreamStatusError, UpstreamUnavailable, without_address

BASE = "http://10.0.0.7:8000/v1"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "connect() failed to http://10.0.0.7:8000/v1/chat",
            "connect() failed to <upstream>/v1/chat",
        ),
        ("no route to 10.0.0.7:8000.", "no route to <upstream>."),
        ("proxy (https://user:pw@10.0.0.7) said no", "proxy (<upstream>) said no"),
        ("10.0.0.75 and 110.0.0.7 are other hosts", "10.0.0.75 and 110.0.0.7 are other hosts"),
    ],
)
def test_the_upstreams_address_is_masked_in_its_own_words(text: str, masked: str) -> None:
    assert without_address(text, BASE) == masked


def test_a_named_host_is_masked_as_a_whole_word_only() -> None:
    base = "http://vllm:8000/v1"
    assert (
        without_address("vllm at vllm:8000 is loading", base)
        == "<upstream> at <upstream> is loading"
    )
    assert without_address("vllm-ish and myvllm stay", base) == "vllm-ish and myvllm stay"


def test_a_failure_the_gateway_answers_for_names_its_deployment_once() -> None:
    error = UpstreamUnavailable("cannot reach the upstream", detail=f"{BASE}: refused")
    error.blame("primary", "chat", BASE)
    error.blame("backup", "chat", BASE)  # the same error raised on: named once
    assert error.message == "deployment 'primary' (model group 'chat'): cannot reach the upstream"
    assert error.detail == f"{BASE}: refused"


def test_a_providers_own_4xx_keeps_its_words_but_not_the_address() -> None:
    error = UpstreamStatusError(404, "model x is not served at 10.0.0.7:8000")
    error.blame("primary", "chat", BASE)
    assert error.message == "model x is not served at <upstream>"


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "upstream_authentication_failed"), (403, "upstream_permission_denied")],
)
def test_a_refused_gateway_credential_is_the_gateways_502(status: int, code: str) -> None:
    words = "Incorrect API key provided: sk-abc***wxyz"
    error = UpstreamStatusError(status, words, error_type="invalid_request_error", code="x")
    assert (error.status, error.code, error.param) == (502, code, None)
    assert (error.openai_type, error.anthropic_type) == ("upstream_error", "api_error")
    assert error.retryable  # another deployment's key may still be good
    assert "refused the gateway's credential" in error.message and words not in error.message
    assert words in (error.detail or "")  # the operator's to read


def test_a_failed_dependency_is_the_upstreams_failure_not_the_clients() -> None:
    # Bedrock's ModelErrorException / ModelStreamErrorException: the model failed behind the
    # API; they reached clients as a 424 invalid_request_error and were never failed over.
    error = UpstreamStatusError(424, "the model failed", kind="ModelStreamErrorException")
    assert (error.status, error.openai_type, error.anthropic_type) == (
        502, "upstream_error", "api_error"
    )  # fmt: skip
    assert error.retryable and error.code is None
