"""A Responses client's ``function_call_output`` may hold images and files, as OpenAI's API
allows: Claude (on Anthropic's API or Bedrock) reads them in its tool result, Gemini in its
function response's ``parts``; a family whose tool results take only text answers a 400
naming the part."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support import CLIENT_KEY

PNG = "iVBORw0KGgo="
PDF = "JVBERi0xLjQK"
F_TOOL: Any = {"type": "function", "name": "snap", "parameters": {"type": "object"}}


@pytest.fixture(scope="module")
def client(gateway_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway_url + "/v1", api_key=CLIENT_KEY, max_retries=0) as c:
        yield c


def conversation(marker: str, *parts: Any) -> list[Any]:
    output = [{"type": "input_text", "text": marker}, *parts]
    return [
        {"role": "user", "content": "take a picture"},
        {"type": "function_call", "call_id": "call_1", "name": "snap", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": output},
    ]


IMAGE = {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}
FILE = {
    "type": "input_file",
    "filename": "r.pdf",
    "file_data": f"data:application/pdf;base64,{PDF}",
}


def recorded(simulator_url: str, marker: str) -> dict[str, Any]:
    """The body of the last request the simulator received that mentions ``marker``."""
    for request in reversed(httpx.get(simulator_url + "/_sim/requests").json()):
        if marker in json.dumps(request["json"]):
            return dict(request["json"])
    raise AssertionError(f"the simulator received no request mentioning {marker!r}")


def test_claude_reads_images_and_documents_in_a_tool_result(
    client: openai.OpenAI, simulator_url: str
) -> None:
    marker = "anthropic tool result media"
    response = client.responses.create(
        model="test-claude", tools=[F_TOOL], input=conversation(marker, IMAGE, FILE)
    )
    assert response.status == "completed"
    turn = recorded(simulator_url, marker)["messages"][-1]
    result = turn["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "call_1"
    assert result["content"] == [
        {"type": "text", "text": marker},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
            "title": "r.pdf",
        },
    ]


def test_claude_on_bedrock_reads_them_too(client: openai.OpenAI, simulator_url: str) -> None:
    marker = "bedrock tool result media"
    response = client.responses.create(
        model="test-bedrock", tools=[F_TOOL], input=conversation(marker, IMAGE, FILE)
    )
    assert response.status == "completed"
    turn = recorded(simulator_url, marker)["messages"][-1]
    content = turn["content"][0]["toolResult"]["content"]
    assert content[0] == {"text": marker}
    assert content[1]["image"]["format"] == "png"
    assert content[2]["document"]["format"] == "pdf"


@pytest.mark.parametrize(("part", "index"), [(IMAGE, 1), (FILE, 1)])
def test_an_openai_chat_deployment_refuses_the_part_by_name(
    client: openai.OpenAI, part: Any, index: int
) -> None:
    # Chat Completions' tool messages take only text parts.
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="test-chat", tools=[F_TOOL], input=conversation("to chat", part)
        )
    error = caught.value
    assert error.param == f"input[2].output[{index}]"
    assert f"'input[2].output[{index}]'" in error.message and "messages" not in error.message


def test_a_file_claude_cannot_read_is_refused_by_name(client: openai.OpenAI) -> None:
    text_file = {
        "type": "input_file",
        "filename": "a.csv",
        "file_data": "data:text/csv;base64,YQ==",
    }
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="test-claude", tools=[F_TOOL], input=conversation("csv", IMAGE, text_file)
        )
    assert caught.value.param == "input[2].output[2]"


def test_gemini_reads_them_as_function_response_parts(
    client: openai.OpenAI, simulator_url: str
) -> None:
    marker = "gemini tool result media"
    response = client.responses.create(
        model="test-gemini", tools=[F_TOOL], input=conversation(marker, IMAGE, FILE)
    )
    assert response.status == "completed"
    turn = recorded(simulator_url, marker)["contents"][-1]
    assert turn["parts"][0]["functionResponse"] == {
        "name": "snap",
        "response": {"output": marker},
        "parts": [
            {"inlineData": {"mimeType": "image/png", "data": PNG}},
            {"inlineData": {"mimeType": "application/pdf", "data": PDF}},
        ],
    }


def test_the_gemini_api_refuses_an_image_url_naming_the_output(client: openai.OpenAI) -> None:
    by_url = {"type": "input_image", "image_url": "https://example.com/a.png"}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="test-gemini", tools=[F_TOOL], input=conversation("to gemini", by_url)
        )
    assert caught.value.param == "input[2].output[1]"
