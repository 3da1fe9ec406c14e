"""Which family a Bedrock model id names, and what a Converse body keeps for each."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.core.errors import InvalidRequest
from tollway.wire import anthropic_request
from tollway.wire.bedrock_models import (
    CLAUDE,
    NOVA,
    OTHER,
    UNKNOWN,
    declared_family_conflict,
    deployment_family,
    family_of,
)
from tollway.wire.bedrock_request import request_to_wire


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", CLAUDE),
        ("us.anthropic.claude-sonnet-4-20250514-v1:0", CLAUDE),
        ("global.anthropic.claude-opus-4-1-20250805-v1:0", CLAUDE),
        ("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
         CLAUDE),
        ("arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-v1:0",
         CLAUDE),
        ("amazon.nova-pro-v1:0", NOVA),
        ("us.amazon.nova-lite-v1:0", NOVA),
        ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4", UNKNOWN),
        ("arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123", UNKNOWN),
    ],
)  # fmt: skip
def test_a_model_id_names_its_family(model: str, family: Any) -> None:
    assert family_of(model) is family


PROFILE = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4"


def test_a_declared_family_is_the_family_of_an_id_that_names_none() -> None:
    assert deployment_family(PROFILE, None) is UNKNOWN
    assert [deployment_family(PROFILE, f) for f in ("claude", "nova", "other")] == [
        CLAUDE, NOVA, OTHER
    ]  # fmt: skip
    assert not OTHER.claude_fields and OTHER.top_k is None and not OTHER.cache_points
    assert deployment_family("amazon.nova-pro-v1:0", None) is NOVA


@pytest.mark.parametrize(
    ("model", "declared", "conflict"),
    [
        (PROFILE, "claude", False),
        (PROFILE, "other", False),
        ("us.anthropic.claude-sonnet-4-20250514-v1:0", "claude", False),
        ("us.anthropic.claude-sonnet-4-20250514-v1:0", "other", True),
        ("amazon.nova-pro-v1:0", "claude", True),
        ("meta.llama3-1-70b-instruct-v1:0", "other", False),
        ("meta.llama3-1-70b-instruct-v1:0", "nova", True),
    ],
)
def test_a_declared_family_must_agree_with_the_one_an_id_names(
    model: str, declared: str, conflict: bool
) -> None:
    assert (declared_family_conflict(model, declared) is not None) is conflict


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("meta.llama3-1-70b-instruct-v1:0", "Meta Llama"),
        ("us.meta.llama3-2-90b-instruct-v1:0", "Meta Llama"),
        ("mistral.mistral-large-2407-v1:0", "Mistral"),
        ("us.deepseek.r1-v1:0", "DeepSeek"),
        ("amazon.titan-text-express-v1", "Amazon"),
    ],
)
def test_other_families_take_none_of_claudes_fields(model: str, name: str) -> None:
    family = family_of(model)
    assert family.name == name
    assert not family.claude_fields and family.top_k is None
    assert not family.cache_points and not family.tool_status


def anthropic(**body: Any) -> Any:
    messages = [{"role": "user", "content": "x"}]
    return anthropic_request.request_from_wire(
        {"model": "m", "max_tokens": 2048, "messages": messages, **body}
    )


def test_claudes_fields_are_400s_naming_them_for_other_families() -> None:
    llama = family_of("meta.llama3-1-70b-instruct-v1:0")
    thinking = {"type": "enabled", "budget_tokens": 1024}
    with pytest.raises(InvalidRequest, match="Meta Llama") as caught:
        request_to_wire(anthropic(thinking=thinking), llama)
    assert caught.value.param == "thinking"
    with pytest.raises(InvalidRequest) as caught:
        request_to_wire(anthropic(top_k=3), llama)
    assert caught.value.param == "top_k"
    with pytest.raises(InvalidRequest) as caught:
        request_to_wire(anthropic(), llama, ["beta-1"])
    assert caught.value.param == "anthropic-beta" and "beta-1" in caught.value.message
    assert request_to_wire(anthropic(), CLAUDE, ["b-1", "b-2"])["additionalModelRequestFields"] == {
        "anthropic_beta": ["b-1", "b-2"]
    }
    assert request_to_wire(anthropic(top_k=3), NOVA)["additionalModelRequestFields"] == {
        "inferenceConfig": {"topK": 3}
    }
    off = request_to_wire(anthropic(thinking={"type": "disabled"}), llama)
    assert "additionalModelRequestFields" not in off
