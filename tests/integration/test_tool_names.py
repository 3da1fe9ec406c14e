"""Tool names another family refuses: a 400 in the client's own terms naming the tool and the
rule, before any upstream call (so nothing is charged), through the real ``openai`` and
``anthropic`` SDKs against the session's gateway and the simulator, which refuses such names
in each provider's words as the real ones do.

Anthropic takes ``^[a-zA-Z0-9_-]{1,128}$``, Bedrock's Converse ``[a-zA-Z0-9_-]+`` of 1 to 64,
Gemini a letter or underscore, then letters, digits, ``_ . : -``, 64 at most."""

from __future__ import annotations

import uuid
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.integration.sdk import WEATHER, user


def marker(words: str) -> str:
    """Words no other test sends, to find this test's request in the simulator's log."""
    return f"{words} {uuid.uuid4().hex[:10]}"


def received(simulator_url: str, words: str) -> bool:
    """Whether the simulator was sent a request mentioning ``words``."""
    requests = httpx.get(simulator_url + "/_sim/requests").json()
    return any(words in str(request["json"]) for request in requests)


def refusal(caught: pytest.ExceptionInfo[openai.BadRequestError], param: str, name: str) -> Any:
    """The body of the gateway's 400 in ``caught``, after checking that its ``param`` is
    ``param`` and its message names ``param`` and the refused ``name``."""
    error: Any = caught.value.body
    assert error["param"] == param
    assert f"'{param}'" in error["message"] and repr(name) in error["message"]
    return error


def function(name: str) -> Any:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


REFUSED = [
    ("test-claude", "tools/search", "Anthropic"),
    ("test-claude", "my.tool", "Anthropic"),
    ("test-claude", "x" * 129, "Anthropic"),
    ("test-bedrock", "my.tool", "Bedrock"),
    ("test-bedrock", "x" * 65, "Bedrock"),
    ("test-gemini", "tools/search", "Gemini"),
    ("test-gemini", "1st_tool", "Gemini"),
    ("test-gemini", "x" * 65, "Gemini"),
    ("test-vertex", "tools/search", "Gemini"),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("model", "name", "family"), REFUSED, ids=lambda v: str(v)[:16])
def test_an_openai_clients_tool_name_the_family_refuses_is_a_400_naming_it(
    gpt: openai.OpenAI, simulator_url: str, model: str, name: str, family: str, stream: bool
) -> None:
    asked = marker("use the tool")
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.create(
            model=model, messages=user(asked), tools=[WEATHER, function(name)], stream=stream
        )
    error = refusal(caught, "tools[1].function.name", name)
    assert family in error["message"]
    assert error["type"] == "invalid_request_error"
    assert not received(simulator_url, asked)


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("test-gemini", "my.tool"),
        ("test-gemini", "ns:tool-1"),
        ("test-claude", "x" * 128),
        ("test-bedrock", "get-weather_2"),
    ],
)
def test_a_tool_name_the_family_takes_is_called(gpt: openai.OpenAI, model: str, name: str) -> None:
    answer = gpt.chat.completions.create(
        model=model, messages=user(marker("use the tool")), tools=[function(name)]
    )
    calls: Any = answer.choices[0].message.tool_calls
    assert [call.function.name for call in calls] == [name]


@pytest.mark.parametrize("model", ["test-claude", "test-chat", "test-gemini", "test-bedrock"])
@pytest.mark.parametrize("name", ["my.tool", "tools/search", "x" * 129, ""], ids=len)
def test_an_anthropic_clients_tool_name_anthropic_refuses_is_refused_whoever_serves(
    claude: anthropic.Anthropic, simulator_url: str, model: str, name: str
) -> None:
    asked = marker("use the tool")
    tools: Any = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    tools.append({"name": name, "input_schema": {"type": "object"}})
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model=model, max_tokens=100, messages=user(asked), tools=tools)
    error: Any = caught.value.body
    assert error["error"]["type"] == "invalid_request_error"
    message = error["error"]["message"]
    # Anthropic's words (its own 400 says ``tools.1.custom.name: String should match ...``).
    assert message.startswith("'tools[1].name': String should match pattern")
    assert "'^[a-zA-Z0-9_-]{1,128}$'" in message and repr(name) in message
    assert not received(simulator_url, asked)


def test_count_tokens_refuses_a_tool_name_anthropic_refuses(claude: anthropic.Anthropic) -> None:
    tools: Any = [{"name": "my.tool", "input_schema": {"type": "object"}}]
    with pytest.raises(anthropic.BadRequestError, match=r"'tools\[0\]\.name'"):
        claude.messages.count_tokens(model="test-gemini", messages=user("count"), tools=tools)


@pytest.mark.parametrize(
    ("model", "name"), [("test-gemini", "1st_tool"), ("test-bedrock", "x" * 65)], ids=str
)
def test_an_anthropic_clients_tool_name_another_family_refuses_names_its_own_field(
    claude: anthropic.Anthropic, simulator_url: str, model: str, name: str
) -> None:
    asked = marker("use the tool")
    tools: Any = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    tools.append({"name": name, "input_schema": {"type": "object"}})
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model=model, max_tokens=100, messages=user(asked), tools=tools)
    message = caught.value.body["error"]["message"]  # type: ignore[index]
    assert message.startswith("'tools[1].name'") and repr(name) in message
    assert not received(simulator_url, asked)


def test_a_responses_clients_tool_name_names_its_place_in_tools(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    asked = marker("use the tool")
    tools: Any = [
        {"type": "function", "name": "get_weather", "parameters": {"type": "object"}},
        {"type": "function", "name": "tools/search", "parameters": {"type": "object"}},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.responses.create(model="test-claude", input=asked, tools=tools)
    refusal(caught, "tools[1].name", "tools/search")
    assert not received(simulator_url, asked)


def called(name: str, asked: str) -> Any:
    """Chat Completions messages whose earlier assistant turn called ``name``."""
    call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": "{}"}}
    return [
        {"role": "user", "content": "what is the weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "user", "content": asked},
    ]


HISTORY_REFUSED = [
    ("test-claude", "my.tool", "Anthropic"),
    ("test-bedrock", "my.tool", "Bedrock"),
    ("test-bedrock", "x" * 65, "Bedrock"),
    ("test-gemini", "1st_tool", "Gemini"),
    ("test-gemini", "tools/search", "Gemini"),
    ("test-vertex", "1st_tool", "Gemini"),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("model", "name", "family"), HISTORY_REFUSED, ids=lambda v: str(v)[:16])
def test_an_earlier_calls_name_the_family_refuses_is_a_400_naming_the_call(
    gpt: openai.OpenAI, simulator_url: str, model: str, name: str, family: str, stream: bool
) -> None:
    asked = marker("and tomorrow?")
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.create(
            model=model, messages=called(name, asked), tools=[WEATHER], stream=stream
        )
    error = refusal(caught, "messages[1].tool_calls[0].function.name", name)
    assert family in error["message"]
    assert not received(simulator_url, asked)


@pytest.mark.parametrize(
    ("model", "name"),
    [("test-gemini", "my.tool"), ("test-claude", "get-weather_2"), ("test-bedrock", "x" * 64)],
)
def test_an_earlier_calls_name_the_family_takes_is_answered(
    gpt: openai.OpenAI, model: str, name: str
) -> None:
    messages = called(name, marker("and tomorrow?"))
    answer = gpt.chat.completions.create(model=model, messages=messages, tools=[WEATHER])
    assert answer.choices[0].message is not None


def test_a_responses_clients_earlier_call_is_named_as_its_item(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    asked = marker("and tomorrow?")
    items: Any = [
        {"role": "user", "content": "what is the weather?"},
        {"type": "message", "role": "assistant", "content": "let me look"},
        {"type": "function_call", "call_id": "call_1", "name": "my.tool", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"role": "user", "content": asked},
    ]
    tools: Any = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.responses.create(model="test-claude", input=items, tools=tools)
    refusal(caught, "input[2].name", "my.tool")
    assert not received(simulator_url, asked)


@pytest.mark.parametrize(
    ("model", "name"), [("test-gemini", "1st_tool"), ("test-bedrock", "x" * 65)], ids=str
)
def test_an_anthropic_clients_earlier_tool_use_name_names_its_block(
    claude: anthropic.Anthropic, simulator_url: str, model: str, name: str
) -> None:
    asked = marker("and tomorrow?")
    use = {"type": "tool_use", "id": "toolu_1", "name": name, "input": {}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}
    messages: Any = [
        {"role": "user", "content": "what is the weather?"},
        {"role": "assistant", "content": [{"type": "text", "text": "let me look"}, use]},
        {"role": "user", "content": [result, {"type": "text", "text": asked}]},
    ]
    tools: Any = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model=model, max_tokens=100, system="be brief", messages=messages, tools=tools
        )
    message = caught.value.body["error"]["message"]  # type: ignore[index]
    assert message.startswith("'messages[1].content[1].name'") and repr(name) in message
    assert not received(simulator_url, asked)
