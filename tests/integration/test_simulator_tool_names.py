"""The simulator refuses a function tool's name as each provider does, in its words: OpenAI
``^[a-zA-Z0-9_-]+$`` of at most 64, Anthropic ``^[a-zA-Z0-9_-]{1,128}$``, Bedrock
``[a-zA-Z0-9_-]+`` of 1 to 64, Gemini and Vertex AI a letter or underscore first, then letters,
digits, ``_ . : -``, 64 at most. Plain HTTP on a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tollway.simulator import Simulator

SCHEMA: Any = {"type": "object", "properties": {}}
HELLO = "hello there"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on a fresh simulator that takes any key."""
    async with Simulator() as sim:
        headers = {"authorization": "Bearer sk-test", "x-api-key": "sk-test"}
        headers["anthropic-version"] = "2023-06-01"
        async with httpx.AsyncClient(base_url=sim.url, headers=headers, timeout=10) as client:
            yield client


def openai_body(name: str) -> Any:
    tools = [
        {"type": "function", "function": {"name": n, "parameters": SCHEMA}} for n in ("ok", name)
    ]
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": HELLO}], "tools": tools}


def anthropic_body(name: str) -> Any:
    tools = [{"name": n, "input_schema": SCHEMA} for n in ("ok", name)]
    messages = [{"role": "user", "content": HELLO}]
    return {"model": "sim-chat", "max_tokens": 50, "messages": messages, "tools": tools}


def bedrock_body(name: str) -> Any:
    tools = [{"toolSpec": {"name": n, "inputSchema": {"json": SCHEMA}}} for n in ("ok", name)]
    messages = [{"role": "user", "content": [{"text": HELLO}]}]
    return {"messages": messages, "toolConfig": {"tools": tools}}


def gemini_body(name: str) -> Any:
    declarations = [{"name": n, "parametersJsonSchema": SCHEMA} for n in ("ok", name)]
    contents = [{"role": "user", "parts": [{"text": HELLO}]}]
    return {"contents": contents, "tools": [{"functionDeclarations": declarations}]}


OPENAI = "/v1/chat/completions"
ANTHROPIC = "/v1/messages"
BEDROCK = "/model/anthropic.claude-sim-v1:0/converse"
GEMINI = "/v1beta/models/sim-chat:generateContent"
VERTEX = "/v1/projects/p1/locations/us-east5/publishers/google/models/sim-chat:generateContent"
BEDROCK_REFUSED = [
    ("my.tool", "Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+"),
    ("x" * 65, "Member must have length less than or equal to 64"),
]
"""Names Bedrock refuses, with the constraint its message says each fails."""


def assert_bedrock_refused(response: httpx.Response, name: str, at: str, constraint: str) -> None:
    """``response`` is Bedrock's 400 for ``name``, at the member path ``at``, failing
    ``constraint``."""
    assert response.status_code == 400
    assert response.headers["x-amzn-errortype"].startswith("ValidationException")
    assert response.json()["message"] == (
        f"1 validation error detected: Value '{name}' at '{at}' failed to satisfy constraint:"
        f" {constraint}"
    )


def gemini_refusal(response: httpx.Response) -> str:
    """The message of ``response``, after checking it is Gemini's 400 ``INVALID_ARGUMENT``."""
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    message: str = error["message"]
    return message


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("my.tool", "string does not match pattern"),
        ("x" * 65, "string too long. Expected a string with maximum length 64"),
    ],
)
async def test_openai_refuses_a_function_name_outside_its_pattern(
    http: httpx.AsyncClient, name: str, words: str
) -> None:
    response = await http.post(OPENAI, json=openai_body(name))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "tools[1].function.name"
    assert error["message"].startswith(f"Invalid 'tools[1].function.name': {words}")


@pytest.mark.parametrize("name", ["my.tool", "tools/search", "x" * 129, ""])
async def test_anthropic_refuses_a_tool_name_outside_its_pattern(
    http: httpx.AsyncClient, name: str
) -> None:
    response = await http.post(ANTHROPIC, json=anthropic_body(name))
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "tools.1.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'",
    }


@pytest.mark.parametrize(("name", "constraint"), BEDROCK_REFUSED)
async def test_bedrock_refuses_a_tool_spec_name_outside_its_pattern(
    http: httpx.AsyncClient, name: str, constraint: str
) -> None:
    response = await http.post(BEDROCK, json=bedrock_body(name))
    at = "toolConfig.tools.2.member.toolSpec.name"
    assert_bedrock_refused(response, name, at, constraint)


@pytest.mark.parametrize("path", [GEMINI, VERTEX])
@pytest.mark.parametrize("name", ["tools/search", "1st_tool", "-x", "x" * 65])
async def test_gemini_refuses_a_function_name_outside_its_rule(
    http: httpx.AsyncClient, path: str, name: str
) -> None:
    response = await http.post(path, json=gemini_body(name))
    assert gemini_refusal(response).startswith(
        "* GenerateContentRequest.tools[0].function_declarations[1].name: Invalid function name."
        " Must start with a letter or an underscore."
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (OPENAI, openai_body("get-weather_2")),
        (ANTHROPIC, anthropic_body("x" * 128)),
        (BEDROCK, bedrock_body("x" * 64)),
        (GEMINI, gemini_body("_ns:tool.v1-2")),
        (VERTEX, gemini_body("x" * 64)),
    ],
    ids=["openai", "anthropic", "bedrock", "gemini", "vertex"],
)
async def test_names_each_provider_takes_are_answered(
    http: httpx.AsyncClient, path: str, body: Any
) -> None:
    response = await http.post(path, json=body)
    assert response.status_code == 200, response.text


def anthropic_history(name: str) -> Any:
    """An Anthropic body whose earlier turn called ``name`` (its second block)."""
    body = anthropic_body("ok2")
    call = {"type": "tool_use", "id": "toolu_1", "name": name, "input": {}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}
    body["messages"] += [
        {"role": "assistant", "content": [{"type": "text", "text": "let me see"}, call]},
        {"role": "user", "content": [result]},
    ]
    return body


def bedrock_history(name: str) -> Any:
    """A Converse body whose earlier turn called ``name`` (its second block)."""
    body = bedrock_body("ok2")
    call = {"toolUse": {"toolUseId": "call_1", "name": name, "input": {}}}
    result = {"toolResult": {"toolUseId": "call_1", "content": [{"text": "sunny"}]}}
    body["messages"] += [
        {"role": "assistant", "content": [{"text": "let me see"}, call]},
        {"role": "user", "content": [result]},
    ]
    return body


def gemini_history(call: str, answered: str | None = None) -> Any:
    """A Gemini body whose earlier turn called ``call``, answered as ``answered`` (the same
    name unless said)."""
    body = gemini_body("ok2")
    response = {"name": answered or call, "response": {"output": "sunny"}}
    body["contents"] += [
        {"role": "model", "parts": [{"text": "let me see"}, {"functionCall": {"name": call}}]},
        {"role": "user", "parts": [{"functionResponse": response}]},
    ]
    return body


@pytest.mark.parametrize("name", ["my.tool", "x" * 129, ""])
async def test_anthropic_refuses_an_earlier_calls_name_outside_its_pattern(
    http: httpx.AsyncClient, name: str
) -> None:
    response = await http.post(ANTHROPIC, json=anthropic_history(name))
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "messages.1.content.1.tool_use.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'"
    )


@pytest.mark.parametrize(("name", "constraint"), BEDROCK_REFUSED)
async def test_bedrock_refuses_an_earlier_tool_use_name_outside_its_pattern(
    http: httpx.AsyncClient, name: str, constraint: str
) -> None:
    response = await http.post(BEDROCK, json=bedrock_history(name))
    at = "messages.2.member.content.2.member.toolUse.name"
    assert_bedrock_refused(response, name, at, constraint)


@pytest.mark.parametrize("path", [GEMINI, VERTEX])
@pytest.mark.parametrize(
    ("body", "where"),
    [
        (gemini_history("1st_tool"), "contents[1].parts[1].function_call"),
        (gemini_history("x" * 65), "contents[1].parts[1].function_call"),
        (gemini_history("ok", "tools/search"), "contents[2].parts[0].function_response"),
    ],
    ids=["first-digit", "too-long", "response"],
)
async def test_gemini_refuses_an_earlier_function_name_outside_its_rule(
    http: httpx.AsyncClient, path: str, body: Any, where: str
) -> None:
    response = await http.post(path, json=body)
    assert gemini_refusal(response).startswith(
        f"* GenerateContentRequest.{where}.name: Invalid function name."
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (ANTHROPIC, anthropic_history("x" * 128)),
        (BEDROCK, bedrock_history("get-weather_2")),
        (GEMINI, gemini_history("my.tool")),
        (VERTEX, gemini_history("_ns:tool.v1")),
    ],
    ids=["anthropic", "bedrock", "gemini", "vertex"],
)
async def test_earlier_calls_names_each_provider_takes_are_answered(
    http: httpx.AsyncClient, path: str, body: Any
) -> None:
    response = await http.post(path, json=body)
    assert response.status_code == 200, response.text
