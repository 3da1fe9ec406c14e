"""Bedrock deployments of several model families through the real SDKs: Claude's own fields
(betas, thinking, ``top_k``, its ``stop_sequence``) go only to Claude, cache points and tool
result statuses only to the families that take them, and ``tool_choice: "none"`` on a
conversation that used tools. The simulator refuses, as those models do, what a family does
not take (``bedrock_api.check_model_fields``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY, gateway_config
from tests.integration.sdk import user
from tests.support import running_gateway

CLAUDE = "us.anthropic.claude-sim-v1:0"  # an inference profile's id: the family still shows
NOVA = "amazon.nova-sim-v1:0"
LLAMA = "meta.llama-sim-v1:0"
ACCOUNT = "arn:aws:bedrock:us-east-1:123456789012"
"""ARNs naming no model: the simulator tells their family by their id's start."""
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def deployment(simulator_url: str, model: str, **more: Any) -> dict[str, Any]:
    """A Bedrock deployment of ``model`` on the simulator."""
    return {
        "provider": "bedrock",
        "model": model,
        "region": "us-east-1",
        "api_base": simulator_url,
        "api_key": "env:TEST_UPSTREAM_KEY",
        **more,
    }


@pytest.fixture(scope="module")
def gateway_url(log_dir: Path, simulator_url: str) -> Iterator[str]:
    """A gateway that forwards the client's ``anthropic-beta``, as the default config does."""
    config = gateway_config(simulator_url, forward_headers=["anthropic-beta", "x-sim-*"])
    pinned = {"Anthropic-Beta": "pinned-beta-1, context-1m-2025-08-07"}
    config["models"] += [
        {"name": "bedrock-claude", "deployments": [deployment(simulator_url, CLAUDE)]},
        {"name": "bedrock-nova", "deployments": [deployment(simulator_url, NOVA)]},
        {"name": "bedrock-llama", "deployments": [deployment(simulator_url, LLAMA)]},
        {
            "name": "bedrock-claude-pinned",
            "deployments": [deployment(simulator_url, CLAUDE, headers=pinned)],
        },
    ]
    for name, resource, family in [
        ("profile-claude", "application-inference-profile/claude-sim1", "claude"),
        ("profile-nova", "application-inference-profile/nova-sim1", "nova"),
        ("provisioned-other", "provisioned-model/llama-sim1", "other"),
    ]:
        declared = deployment(simulator_url, f"{ACCOUNT}:{resource}", bedrock_family=family)
        config["models"].append({"name": f"bedrock-{name}", "deployments": [declared]})
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, _):
        yield url


def marker(words: str) -> str:
    """Words no other test sends, to find this test's request in the simulator's log."""
    return f"{words} {uuid.uuid4().hex[:10]}"


def sent(simulator_url: str, text: str) -> dict[str, Any] | None:
    """The last request the simulator received mentioning ``text`` (body, headers), if any."""
    for request in reversed(httpx.get(simulator_url + "/_sim/requests").json()):
        if text in str(request["json"]):
            return dict(request)
    return None


def body_of(simulator_url: str, text: str) -> dict[str, Any]:
    """The body of the request mentioning ``text``, which must have been sent."""
    request = sent(simulator_url, text)
    assert request is not None, f"nothing mentioning {text!r} reached the simulator"
    return dict(request["json"])


# --- Claude's betas -----------------------------------------------------------------------


def test_an_anthropic_clients_betas_reach_claude_on_bedrock_in_the_body(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    asked = marker("betas to bedrock")
    betas = ["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"]
    claude.beta.messages.create(
        model="bedrock-claude", max_tokens=20, messages=user(asked), betas=betas
    )
    request = sent(simulator_url, asked)
    assert request is not None
    # Bedrock reads Claude's betas from the body, never from a header.
    assert request["json"]["additionalModelRequestFields"] == {"anthropic_beta": betas}
    assert "anthropic-beta" not in request["headers"]
    streamed = marker("streamed betas to bedrock")
    with claude.beta.messages.stream(
        model="bedrock-claude", max_tokens=20, messages=user(streamed), betas=betas[:1]
    ) as stream:
        stream.get_final_message()
    assert body_of(simulator_url, streamed)["additionalModelRequestFields"] == {
        "anthropic_beta": betas[:1]
    }
    # A deployment's own betas are added to the client's, each once, as for Anthropic's API.
    pinned = marker("pinned betas to bedrock")
    claude.beta.messages.create(
        model="bedrock-claude-pinned", max_tokens=20, messages=user(pinned), betas=betas
    )
    fields = body_of(simulator_url, pinned)["additionalModelRequestFields"]
    assert fields == {"anthropic_beta": [*betas, "pinned-beta-1"]}


def test_betas_for_a_model_other_than_claude_are_a_400_naming_the_header(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    asked = marker("betas to llama")
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.beta.messages.create(
            model="bedrock-llama", max_tokens=20, messages=user(asked), betas=["b-2025-01-01"]
        )
    assert caught.value.status_code == 400
    assert "anthropic-beta" in caught.value.message and "b-2025-01-01" in caught.value.message
    assert "Meta Llama" in caught.value.message
    assert sent(simulator_url, asked) is None


# --- Claude's own fields, other families ----------------------------------------------------


def test_thinking_for_a_model_other_than_claude_is_a_400_before_any_call(
    claude: anthropic.Anthropic, gpt: openai.OpenAI, simulator_url: str
) -> None:
    asked = marker("thinking llama")
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model="bedrock-llama", max_tokens=2048, messages=user(asked), thinking=thinking
        )
    assert "'thinking'" in caught.value.message and "Meta Llama" in caught.value.message
    with pytest.raises(openai.BadRequestError) as refused:
        gpt.chat.completions.create(
            model="bedrock-nova", messages=user(asked), reasoning_effort="low"
        )
    assert refused.value.param == "reasoning_effort" and "Amazon Nova" in refused.value.message
    assert sent(simulator_url, asked) is None
    # Thinking turned off asks nothing of the model, so it goes without the field.
    off = marker("thinking off llama")
    claude.messages.create(
        model="bedrock-llama", max_tokens=20, messages=user(off), thinking={"type": "disabled"}
    )
    assert "additionalModelRequestFields" not in body_of(simulator_url, off)


def test_top_k_is_each_familys_own_field_or_a_400(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    asked = marker("top k families")
    for model in ("bedrock-claude", "bedrock-nova"):
        claude.messages.create(
            model=model, max_tokens=20, messages=user(asked), extra_body={"top_k": 5}
        )
        fields = body_of(simulator_url, asked)["additionalModelRequestFields"]
        want = {"top_k": 5} if model == "bedrock-claude" else {"inferenceConfig": {"topK": 5}}
        assert fields == want
    refused = marker("top k llama")
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model="bedrock-llama", max_tokens=20, messages=user(refused), extra_body={"top_k": 5}
        )
    assert "'top_k'" in caught.value.message and "Meta Llama" in caught.value.message
    assert sent(simulator_url, refused) is None


def test_claudes_stop_sequence_field_is_asked_of_claude_only(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    for model in ("bedrock-claude", "bedrock-llama"):
        asked = marker(f"stops for {model}")
        answer = gpt.chat.completions.create(model=model, messages=user(asked), stop=["zulu"])
        assert answer.choices[0].finish_reason == "stop"
        paths = body_of(simulator_url, asked).get("additionalModelResponseFieldPaths")
        assert paths == (["/stop_sequence"] if model == "bedrock-claude" else None)


# --- families declared for ids that name no model ----------------------------------------


def test_a_profile_declared_claude_gets_claudes_fields_and_its_parallel_call_flag(
    claude: anthropic.Anthropic, gpt: openai.OpenAI, simulator_url: str
) -> None:
    # An application inference profile's ARN does not name its model: without the
    # declaration the gateway cut its answers to one call instead of asking Claude.
    asked = marker("call both in parallel")
    clock: Any = {"type": "function", "function": {"name": "get_time", "parameters": {}}}
    answer = gpt.chat.completions.create(
        model="bedrock-profile-claude",
        messages=user(asked),
        tools=[WEATHER, clock],
        parallel_tool_calls=False,
    )
    assert len(answer.choices[0].message.tool_calls or []) == 1
    fields = body_of(simulator_url, asked)["additionalModelRequestFields"]
    assert fields == {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}
    thought = marker("thinking profile")
    message = claude.messages.create(
        model="bedrock-profile-claude",
        max_tokens=2048,
        messages=user(thought),
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    assert message.content[0].type == "thinking"


def test_a_profile_declared_nova_or_other_is_refused_what_that_family_does_not_take(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    asked = marker("top k nova profile")
    claude.messages.create(
        model="bedrock-profile-nova", max_tokens=20, messages=user(asked), extra_body={"top_k": 5}
    )
    assert body_of(simulator_url, asked)["additionalModelRequestFields"] == {
        "inferenceConfig": {"topK": 5}
    }
    refused = marker("thinking other")
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model="bedrock-provisioned-other",
            max_tokens=2048,
            messages=user(refused),
            thinking={"type": "enabled", "budget_tokens": 1024},
        )
    assert "'thinking'" in caught.value.message and "non-Claude" in caught.value.message
    assert sent(simulator_url, refused) is None
    cached = marker("cache me on other")
    system: Any = [{"type": "text", "text": cached, "cache_control": {"type": "ephemeral"}}]
    claude.messages.create(
        model="bedrock-provisioned-other", max_tokens=20, system=system, messages=user("hi")
    )
    assert body_of(simulator_url, cached)["system"] == [{"text": cached}]


# --- cache points and tool result statuses ------------------------------------------------


def test_cache_hints_reach_the_families_that_cache_and_are_left_out_for_the_others(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    for model in ("bedrock-nova", "bedrock-llama"):
        asked = marker(f"cache me on {model}")
        system: Any = [{"type": "text", "text": asked, "cache_control": {"type": "ephemeral"}}]
        message = claude.messages.create(
            model=model, max_tokens=20, system=system, messages=user("hello")
        )
        blocks = body_of(simulator_url, asked)["system"]
        if model == "bedrock-nova":
            assert blocks == [{"text": asked}, {"cachePoint": {"type": "default"}}]
            assert (message.usage.cache_creation_input_tokens or 0) > 0
        else:
            assert blocks == [{"text": asked}]
            assert not message.usage.cache_creation_input_tokens


def test_a_failed_tool_call_is_said_in_text_to_a_family_without_a_status(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    tool: Any = {"name": "get_weather", "input_schema": {"type": "object"}}
    for model in ("bedrock-claude", "bedrock-llama"):
        asked = marker(f"failed call on {model}")
        call: Any = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
        result: Any = {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                       "content": asked}  # fmt: skip
        messages: Any = [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [call]},
            {"role": "user", "content": [result]},
        ]
        claude.messages.create(model=model, max_tokens=20, messages=messages, tools=[tool])
        block = body_of(simulator_url, asked)["messages"][2]["content"][0]["toolResult"]
        if model == "bedrock-claude":
            assert block["status"] == "error" and block["content"] == [{"text": asked}]
        else:
            assert "status" not in block
            assert block["content"] == [{"text": "Error:"}, {"text": asked}]


# --- tool_choice "none" -----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_none_after_tool_calls_gets_a_text_answer(
    gpt: openai.OpenAI, simulator_url: str, stream: bool
) -> None:
    asked = marker("sunny and warm")
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}  # fmt: skip
    messages: Any = [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": asked},
    ]
    for tools in ({"tools": [WEATHER], "tool_choice": "none"}, {}):
        if stream:
            chunks = list(
                gpt.chat.completions.create(
                    model="bedrock-claude", messages=messages, stream=True, **tools
                )
            )
            finish = [c.choices[0].finish_reason for c in chunks if c.choices]
            assert finish[-1] == "stop"
            assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)
        else:
            answer = gpt.chat.completions.create(model="bedrock-claude", messages=messages, **tools)
            assert answer.choices[0].finish_reason == "stop"
            assert not answer.choices[0].message.tool_calls
        body = body_of(simulator_url, asked)
        # Converse has no "none" and refuses tool blocks without toolConfig: no tool is
        # offered, and the conversation's call and result are said in words.
        assert "toolConfig" not in body
        assert body["messages"][1]["content"] == [
            {"text": '[call call_1: get_weather({"city":"Paris"})]'}
        ]
        assert body["messages"][2]["content"] == [
            {"text": "[result of call call_1]"},
            {"text": asked},
        ]


@pytest.mark.parametrize("model", ["bedrock-nova", "bedrock-llama"])
def test_output_effort_is_a_400_naming_it_for_models_other_than_claude(
    claude: anthropic.Anthropic, model: str
) -> None:
    """Claude's ``output_config.effort`` has no equivalent among these models' fields."""
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model=model,
            max_tokens=64,
            messages=user(f"effort on {model}"),
            output_config={"effort": "low"},  # type: ignore[typeddict-item]
        )
    assert "'output_config.effort'" in caught.value.message
