"""LangChain's ``with_structured_output`` with only the base URL changed, served by every family.

``ChatOpenAI`` (``method="json_schema"``: a strict ``response_format``; ``"function_calling"``:
one tool the model is made to call) and ``ChatAnthropic`` (a forced tool, or
``output_config.format``) must come back as the pydantic model whichever family answers.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.support import CLIENT_KEY

MODELS = ["test-chat", "test-claude", "test-gemini", "test-bedrock"]


class Home(BaseModel):
    """A home and its rooms' sizes."""

    street: str
    rooms: list[list[int]]


class Person(BaseModel):
    """A person and their homes."""

    name: str
    kind: Literal["a", "b"]
    nick: Optional[str]  # noqa: UP045 (as users write it)
    homes: list[Home]


def openai_chat(gateway_url: str, model: str) -> Any:
    return ChatOpenAI(
        base_url=gateway_url + "/v1", api_key=CLIENT_KEY, model=model, max_retries=0, timeout=30
    )  # type: ignore[arg-type]


def anthropic_chat(gateway_url: str, model: str) -> Any:
    return ChatAnthropic(
        base_url=gateway_url,
        api_key=CLIENT_KEY,
        model=model,
        max_retries=0,
        timeout=30,
        max_tokens=512,
    )  # type: ignore[call-arg]


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
@pytest.mark.parametrize("model", MODELS)
def test_chat_openai_structured_output_is_the_pydantic_model(
    gateway_url: str, model: str, method: str
) -> None:
    chat = openai_chat(gateway_url, model).with_structured_output(Person, method=method)
    person = chat.invoke("a person please")
    assert isinstance(person, Person) and person.homes


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
@pytest.mark.parametrize("model", MODELS)
def test_chat_anthropic_structured_output_is_the_pydantic_model(
    gateway_url: str, model: str, method: str
) -> None:
    chat = anthropic_chat(gateway_url, model).with_structured_output(Person, method=method)
    person = chat.invoke("a person please")
    assert isinstance(person, Person) and person.homes
