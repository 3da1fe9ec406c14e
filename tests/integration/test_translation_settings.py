"""Settings that cross from one client's dialect to another family, through the real ``openai``
and ``anthropic`` SDKs against the session's gateway and the simulator: ``temperature`` outside
Claude's range, ``top_k`` where the family takes it, Anthropic's structured output as OpenAI's
strict JSON schema (where strict mode takes the schema), and an OpenAI-format client's cache
hints on Anthropic and Bedrock."""

from __future__ import annotations

import uuid
from typing import Any

import anthropic
import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.integration.sdk import sent_upstream, user
from tests.integration.test_vision import PIXEL

SCHEMA: Any = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
EPHEMERAL: Any = {"type": "ephemeral"}


def marker(words: str) -> str:
    """Words no other test sends, to find this test's request in the simulator's log."""
    return f"{words} {uuid.uuid4().hex[:10]}"


def never_sent(simulator_url: str, text: str) -> bool:
    """Whether the simulator received no request mentioning ``text``."""
    requests = httpx.get(simulator_url + "/_sim/requests").json()
    return all(text not in str(request["json"]) for request in requests)


# --- temperature ------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["test-claude", "test-bedrock"])
def test_an_openai_temperature_above_claudes_range_is_a_400_before_any_call(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    asked = marker("too warm for claude")
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.create(model=model, messages=user(asked), temperature=1.5)
    error = caught.value
    assert error.status_code == 400 and error.param == "temperature"
    assert "1.5" in error.message and "0 to 1" in error.message
    assert never_sent(simulator_url, asked)
    # Within Claude's range it goes as sent.
    asked = marker("warm enough for claude")
    gpt.chat.completions.create(model=model, messages=user(asked), temperature=1)
    body = sent_upstream(simulator_url, asked)
    sent = body["temperature"] if model == "test-claude" else body["inferenceConfig"]["temperature"]
    assert sent == 1


# Gemini takes it as its googleSearch tool (test_tool_fees).
@pytest.mark.parametrize("model", ["test-claude", "test-bedrock"])
def test_web_search_asked_with_an_empty_object_is_a_400_for_families_without_it(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    # ``web_search_options: {}`` is how OpenAI's search models are asked to search (every
    # option at its default); left out, the answer would silently come without a search.
    asked = marker("search the web")
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.create(model=model, messages=user(asked), web_search_options={})
    assert caught.value.status_code == 400 and caught.value.param == "web_search_options"
    assert never_sent(simulator_url, asked)


def test_an_anthropic_client_is_answered_in_its_own_dialect(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    asked = marker("anthropic too warm")
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model="test-claude",
            max_tokens=20,
            messages=user(asked),
            extra_body={"temperature": 1.5},
        )
    assert caught.value.status_code == 400
    body: Any = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    # Refused by the gateway (Anthropic's range is 0 to 1), in Anthropic's words' shape.
    assert "'temperature'" in body["error"]["message"] and "1.5" in body["error"]["message"]
    assert never_sent(simulator_url, asked)


def test_gemini_takes_openais_whole_temperature_range(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    asked = marker("warm gemini")
    gpt.chat.completions.create(model="test-gemini", messages=user(asked), temperature=1.5)
    assert sent_upstream(simulator_url, asked)["generationConfig"]["temperature"] == 1.5


# --- top_k ------------------------------------------------------------------------------


def test_top_k_reaches_gemini_and_claude_on_bedrock(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    asked = marker("top k gemini")
    claude.messages.create(
        model="test-gemini", max_tokens=20, messages=user(asked), extra_body={"top_k": 7}
    )
    assert sent_upstream(simulator_url, asked)["generationConfig"]["topK"] == 7
    asked = marker("top k bedrock")
    claude.messages.create(
        model="test-bedrock", max_tokens=20, messages=user(asked), extra_body={"top_k": 7}
    )
    body = sent_upstream(simulator_url, asked)
    assert body["additionalModelRequestFields"] == {"top_k": 7}
    assert "topK" not in body["inferenceConfig"]  # Converse has no such common setting
    asked = marker("top k claude")
    claude.messages.create(
        model="test-claude", max_tokens=20, messages=user(asked), extra_body={"top_k": 7}
    )
    assert sent_upstream(simulator_url, asked)["top_k"] == 7


def test_top_k_is_a_400_for_openai_which_has_none(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    asked = marker("top k openai")
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model="test-chat", max_tokens=20, messages=user(asked), extra_body={"top_k": 7}
        )
    assert "'top_k' cannot be translated for an openai deployment" in str(caught.value)
    assert never_sent(simulator_url, asked)


# --- structured output ------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["output_config", "output_format"])
def test_anthropic_structured_output_is_openais_strict_json_schema(
    claude: anthropic.Anthropic, simulator_url: str, shape: str
) -> None:
    asked = marker(f"structured {shape}")
    fmt = {"type": "json_schema", "schema": SCHEMA}
    # output_config.format is the API's; output_format the beta's, which it replaced.
    extra = (
        {"output_config": {"format": fmt}} if shape == "output_config" else {"output_format": fmt}
    )
    answer = claude.messages.create(
        model="test-chat", max_tokens=50, messages=user(asked), extra_body=extra
    )
    assert answer.content[0].type == "text"
    body = sent_upstream(simulator_url, asked)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": SCHEMA, "strict": True},
    }
    assert "output_format" not in body and "output_config" not in body


class Toll(BaseModel):
    """A structured answer with an optional field: Claude's structured output takes it, not
    OpenAI's strict mode, which needs every property required."""

    road: str
    euros: float | None = None


@pytest.mark.parametrize("model", ["test-chat", "test-azure"])
def test_a_schema_strict_mode_refuses_reaches_openai_unforced(
    claude: anthropic.Anthropic, simulator_url: str, model: str
) -> None:
    asked = marker("structured with an optional field")
    answer = claude.messages.parse(
        model=model, max_tokens=50, messages=user(asked), output_format=Toll
    )
    assert answer.parsed_output == Toll(road="sample")
    sent = sent_upstream(simulator_url, asked)["response_format"]["json_schema"]
    assert sent["strict"] is False and sent["schema"]["required"] == ["road"]
    # A strict tool with an optional parameter alike.
    tool: Any = {"name": "pay", "strict": True, "input_schema": Toll.model_json_schema()}
    tool["input_schema"]["additionalProperties"] = False
    asked = marker("strict tool with an optional parameter")
    called = claude.messages.create(
        model=model, max_tokens=50, messages=user(asked), tools=[tool], tool_choice={"type": "any"}
    )
    assert [block.type for block in called.content] == ["tool_use"]
    assert sent_upstream(simulator_url, asked)["tools"][0]["function"]["strict"] is False


# --- cache hints ------------------------------------------------------------------------


def cached_conversation(asked: str) -> list[Any]:
    """An OpenAI-format conversation with Anthropic's cache hints where LangChain and LiteLLM
    put them: on a content part, on a message, on a tool message."""
    call = {
        "id": "call_cached",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"q": "x"}'},
    }
    return [
        {
            "role": "system",
            "content": [
                {"type": "text", "text": "a long system prompt", "cache_control": EPHEMERAL}
            ],
        },
        {"role": "user", "content": "look it up", "cache_control": {**EPHEMERAL, "ttl": "1h"}},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {
            "role": "tool",
            "tool_call_id": "call_cached",
            "content": "found",
            "cache_control": EPHEMERAL,
        },
        {"role": "user", "content": [{"type": "text", "text": asked}]},
    ]


LOOKUP: Any = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}


def test_openai_cache_hints_become_bedrock_cache_points(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    asked = marker("cached for bedrock")
    answer = gpt.chat.completions.create(
        model="test-bedrock", messages=cached_conversation(asked), tools=[LOOKUP]
    )
    assert answer.choices[0].message.content
    body = sent_upstream(simulator_url, asked)
    assert body["system"] == [{"text": "a long system prompt"}, {"cachePoint": {"type": "default"}}]
    first, _, results = body["messages"]
    assert first["content"] == [
        {"text": "look it up"},
        {"cachePoint": {"type": "default", "ttl": "1h"}},
    ]
    assert [next(iter(block)) for block in results["content"]] == [
        "toolResult",
        "cachePoint",
        "text",
    ]


def test_openai_cache_hints_reach_anthropic_on_the_blocks_they_mark(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    asked = marker("cached for claude")
    gpt.chat.completions.create(
        model="test-claude", messages=cached_conversation(asked), tools=[LOOKUP]
    )
    body = sent_upstream(simulator_url, asked)
    assert body["system"] == [
        {"type": "text", "text": "a long system prompt", "cache_control": EPHEMERAL}
    ]
    first, _, results = body["messages"]
    assert first == {
        "role": "user",
        "content": [
            {"type": "text", "text": "look it up", "cache_control": {**EPHEMERAL, "ttl": "1h"}}
        ],
    }
    result, question = results["content"]
    assert result["type"] == "tool_result" and result["cache_control"] == EPHEMERAL
    assert "cache_control" not in question


TINY_PNG = f"data:image/png;base64,{PIXEL}"


def test_an_openai_cache_hint_on_an_image_reaches_anthropic_on_that_image(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    asked = marker("cached image for claude")
    image: Any = {"type": "image_url", "image_url": {"url": TINY_PNG}, "cache_control": EPHEMERAL}
    gpt.chat.completions.create(
        model="test-claude",
        messages=[{"role": "user", "content": [image, {"type": "text", "text": asked}]}],
    )
    [block, text] = sent_upstream(simulator_url, asked)["messages"][0]["content"]
    assert block["type"] == "image" and block["cache_control"] == EPHEMERAL
    assert "cache_control" not in text


def test_an_image_parts_own_fields_reach_an_openai_deployment_as_sent(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    asked = marker("image fields for openai")
    image: Any = {
        "type": "image_url",
        "image_url": {"url": TINY_PNG, "detail": "low"},
        "cache_control": EPHEMERAL,
    }
    gpt.chat.completions.create(
        model="test-chat",
        messages=[{"role": "user", "content": [image, {"type": "text", "text": asked}]}],
    )
    assert sent_upstream(simulator_url, asked)["messages"][0]["content"][0] == image


@pytest.mark.parametrize("model", ["test-claude", "test-chat", "test-mistral"])
def test_an_openai_cache_hint_on_a_tool_reaches_anthropic_and_openai_deployments(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    # LiteLLM-style: Anthropic's cache_control beside the tool's function, to cache every
    # tool up to it; an OpenAI-format deployment gets the tool as it was sent.
    asked = marker("cached tools")
    tool: Any = {**LOOKUP, "cache_control": EPHEMERAL}
    gpt.chat.completions.create(model=model, messages=user(asked), tools=[tool])
    [sent] = sent_upstream(simulator_url, asked)["tools"]
    if model == "test-claude":
        assert sent["name"] == "lookup" and sent["cache_control"] == EPHEMERAL
    elif model == "test-mistral":  # Mistral's schema has no such field (and needs no hint)
        assert sent == LOOKUP
    else:
        assert sent == tool
