"""Structured output through the openai SDK's helpers, served by every provider family.

``chat.completions.parse``, ``chat.completions.stream`` and ``responses.parse`` with a pydantic
model (nested models under ``$defs``, enums, nullable fields, nested arrays) must come back
parsed into the model whichever family answers; a schema that Claude's structured output
(Anthropic's, Bedrock's) cannot take, or that Gemini's would ignore, is a 400 naming what,
before any call, when strict, and naming the field the client sent it in; words in the
description when not.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Optional

import anthropic
import openai
import pytest
from pydantic import BaseModel, Field

from tests.integration.sdk import sent_upstream, user

MODELS = ["test-chat", "test-claude", "test-gemini", "test-bedrock"]
CLAUDES = ["test-claude", "test-bedrock"]


class Home(BaseModel):
    street: str
    rooms: list[list[int]]


class Person(BaseModel):
    name: str
    kind: Literal["a", "b"]
    nick: Optional[str]  # noqa: UP045 (as users write it)
    homes: list[Home]


class Rated(BaseModel):
    stars: int = Field(ge=1, le=5)


class Coded(BaseModel):
    code: str = Field(pattern="^[A-Z]{3}$", max_length=3)
    kind: Literal["coded"]


class Node(BaseModel):
    label: str
    children: list[Node]


def claude_schema_sent(simulator_url: str, marker: str) -> dict[str, Any]:
    """The JSON schema the simulator received for the request mentioning ``marker``."""
    body = sent_upstream(simulator_url, marker)
    if "generationConfig" in body:
        return dict(body["generationConfig"]["responseJsonSchema"])
    if "output_config" in body:
        return dict(body["output_config"]["format"]["schema"])
    text = body["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["schema"]
    return dict(json.loads(text))


@pytest.mark.parametrize("model", MODELS)
def test_chat_parse_and_stream_answer_in_the_pydantic_model(gpt: openai.OpenAI, model: str) -> None:
    ask: Any = {"model": model, "messages": user("a person please"), "response_format": Person}
    choice = gpt.chat.completions.parse(**ask).choices[0]
    assert choice.finish_reason == "stop" and choice.message.refusal is None
    assert isinstance(choice.message.parsed, Person) and choice.message.parsed.homes
    assert not choice.message.tool_calls
    with gpt.chat.completions.stream(**ask) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.parsed == choice.message.parsed
    assert final.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", MODELS)
def test_responses_parse_answers_in_the_pydantic_model(gpt: openai.OpenAI, model: str) -> None:
    response = gpt.responses.parse(model=model, input="a person please", text_format=Person)
    assert response.status == "completed"
    assert isinstance(response.output_parsed, Person)
    with gpt.responses.stream(model=model, input="a person please", text_format=Person) as stream:
        final = stream.get_final_response()
    assert final.output_parsed == response.output_parsed


class City(BaseModel):
    name: str


@pytest.mark.parametrize("model", ["test-chat", "test-claude"])
def test_a_declined_structured_output_is_the_sdks_refusal_whichever_family_declined(
    gpt: openai.OpenAI, model: str
) -> None:
    # OpenAI says a structured output its model declined as a refusal, never as content that
    # is not the schema's JSON; Claude's refusal (stop_reason "refusal", its words as text)
    # to such a request is the same event. As content, responses.parse failed validating the
    # words as the model's JSON, and a client checking message.refusal first never saw it.
    declined: Any = {"x-sim-refusal": "I cannot help with that"}
    ask: Any = {"model": model, "messages": user("a declined city"), "response_format": City}
    choice = gpt.chat.completions.parse(**ask, extra_headers=declined).choices[0]
    assert choice.finish_reason == "stop"
    assert (choice.message.refusal, choice.message.content) == ("I cannot help with that", None)
    assert choice.message.parsed is None
    response = gpt.responses.parse(
        model=model, input="a declined city", text_format=City, extra_headers=declined
    )
    assert response.status == "completed" and response.output_parsed is None
    assert [item.type for item in response.output] == ["message"]
    parts = [part.model_dump() for part in getattr(response.output[0], "content", [])]
    assert parts == [{"type": "refusal", "refusal": "I cannot help with that"}]


@pytest.mark.parametrize("model", CLAUDES)
def test_a_strict_bound_claude_cannot_enforce_is_a_400_naming_it(
    gpt: openai.OpenAI, model: str
) -> None:
    # Field(ge=1) is "minimum": OpenAI's strict mode enforces it, Claude's refuses it;
    # dropping it would break strict's promise, so the client hears which keyword.
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.parse(model=model, messages=user("rate it"), response_format=Rated)
    assert caught.value.param == "response_format.json_schema.schema"
    assert "'minimum'" in caught.value.message and "$.properties.stars" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.responses.parse(model=model, input="rate it", text_format=Rated)
    assert caught.value.param == "text.format.schema"
    assert "'text.format.schema'" in caught.value.message


@pytest.mark.parametrize("model", CLAUDES)
def test_a_loose_schemas_bounds_reach_claude_as_words(
    gpt: openai.OpenAI, model: str, simulator_url: str
) -> None:
    # strict off asks OpenAI for a best effort: Claude is told the bounds in the description.
    schema = Rated.model_json_schema()
    asked = f"rate it loosely on {model}"
    answer = gpt.chat.completions.create(
        model=model,
        messages=user(asked),
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
    )
    assert set(json.loads(answer.choices[0].message.content or "")) == {"stars"}
    stars = claude_schema_sent(simulator_url, asked)["properties"]["stars"]
    assert "minimum" not in stars and "maximum" not in stars
    assert stars["description"] == "{minimum: 1, maximum: 5}"


@pytest.mark.parametrize("model", CLAUDES)
def test_a_recursive_schema_is_a_400_for_claude(gpt: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.parse(model=model, messages=user("a tree"), response_format=Node)
    assert "recursive" in caught.value.message


@pytest.mark.parametrize("field", ["output_config.format", "output_format"])
def test_an_anthropic_clients_schema_claude_cannot_take_is_named_as_it_sent_it(
    claude: anthropic.Anthropic, field: str
) -> None:
    # Bedrock's Claude refuses the bound as Anthropic's would; the client sent no
    # response_format, so the 400 names its own field (``output_format``: the beta's form).
    fmt = {
        "type": "json_schema",
        "schema": {**Rated.model_json_schema(), "additionalProperties": False},
    }
    sent = (
        {"output_config": {"format": fmt}}
        if field == "output_config.format"
        else {"output_format": fmt}
    )
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model="test-bedrock", max_tokens=64, messages=user("rate it"), extra_body=sent
        )
    message = caught.value.body["error"]["message"]  # type: ignore[index]
    assert f"'{field}.schema'" in message and "'minimum'" in message
    assert "response_format" not in message and "strict" not in message  # it has no strict


def test_a_strict_keyword_gemini_would_ignore_is_a_400_naming_it(
    gpt: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    # Gemini ignores "maxLength" and "pattern": strict cannot promise the answer keeps them.
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.parse(
            model="test-gemini", messages=user("a code"), response_format=Coded
        )
    assert caught.value.param == "response_format.json_schema.schema"
    assert "'maxLength'" in caught.value.message and "$.properties.code" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.responses.parse(model="test-gemini", input="a code", text_format=Coded)
    assert caught.value.param == "text.format.schema"
    fmt = {"type": "json_schema", "schema": Coded.model_json_schema()}
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(
            model="test-gemini",
            max_tokens=64,
            messages=user("a code"),
            extra_body={"output_config": {"format": fmt}},
        )
    message = refused.value.body["error"]["message"]  # type: ignore[index]
    assert "'output_config.format.schema'" in message and "'maxLength'" in message
    assert "strict" not in message


def test_a_loose_schemas_keywords_gemini_would_ignore_reach_it_as_words(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    schema = Coded.model_json_schema()
    asked = "a code loosely on gemini"
    answer = gpt.chat.completions.create(
        model="test-gemini",
        messages=user(asked),
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    assert set(json.loads(answer.choices[0].message.content or "")) == {"code", "kind"}
    sent = claude_schema_sent(simulator_url, asked)["properties"]
    assert "pattern" not in sent["code"] and "maxLength" not in sent["code"]
    assert sent["code"]["description"] == '{maxLength: 3, pattern: "^[A-Z]{3}$"}'
    assert sent["kind"]["enum"] == ["coded"] and "const" not in sent["kind"]
