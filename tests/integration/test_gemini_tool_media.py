"""Images and PDFs in tool results reach Gemini as Gemini 3's multimodal function responses:
``functionResponse.parts`` beside the text's ``response``, base64 as ``inlineData``, an image
URL as ``fileData`` on Vertex AI (the Gemini API takes no ``fileData`` there: a 400 naming the
client's part). The simulator refuses any other shape of a function response, as Google
does, so an answer proves the wire; what it recorded shows the parts.
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.integration.sdk import sent_upstream, user

PNG = "iVBORw0KGgo="
PDF = "JVBERi0xLjQK"
IMAGE_AND_PDF_PARTS = [
    {"inlineData": {"mimeType": "image/png", "data": PNG}},
    {"inlineData": {"mimeType": "application/pdf", "data": PDF}},
]
"""How Gemini is sent a tool result that holds ``PNG`` and ``PDF``: function response parts."""
BOTH = pytest.mark.parametrize("model", ["test-gemini", "test-vertex"])
SNAP: Any = {"type": "function", "function": {"name": "snap", "parameters": {"type": "object"}}}
IMAGE = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
FILE = {
    "type": "file",
    "file": {"filename": "r.pdf", "file_data": f"data:application/pdf;base64,{PDF}"},
}
IMAGE_URL = "https://example.com/shots/front.png?size=large"


def tool_turns(marker: str, *parts: Any) -> list[Any]:
    """A call of ``snap`` and its result: ``marker`` as text, then ``parts``."""
    call = {"id": "call_1", "type": "function", "function": {"name": "snap", "arguments": "{}"}}
    return [
        *user("take a picture"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": [{"type": "text", "text": marker}, *parts],
        },
    ]


def function_response(simulator_url: str, marker: str) -> dict[str, Any]:
    """The ``functionResponse`` of the last request the simulator received naming ``marker``."""
    contents = sent_upstream(simulator_url, marker)["contents"]
    return dict(contents[-1]["parts"][0]["functionResponse"])


@BOTH
def test_an_openai_clients_image_and_pdf_in_a_tool_result_are_function_response_parts(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    marker = f"tool media to {model}"
    answer = gpt.chat.completions.create(
        model=model, messages=tool_turns(marker, IMAGE, FILE), tools=[SNAP]
    )
    assert marker in (answer.choices[0].message.content or "")
    assert function_response(simulator_url, marker) == {
        "name": "snap",
        "response": {"output": marker},
        "parts": IMAGE_AND_PDF_PARTS,
    }


def test_a_streamed_answer_takes_them_too(gpt: openai.OpenAI, simulator_url: str) -> None:
    marker = "tool media, streamed"
    stream = gpt.chat.completions.create(
        model="test-gemini", messages=tool_turns(marker, IMAGE), tools=[SNAP], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert marker in text
    parts = function_response(simulator_url, marker)["parts"]
    assert parts == [{"inlineData": {"mimeType": "image/png", "data": PNG}}]


def test_an_image_url_in_a_tool_result_is_file_data_on_vertex(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    marker = "tool image by url to vertex"
    by_url = {"type": "image_url", "image_url": {"url": IMAGE_URL}}
    answer = gpt.chat.completions.create(
        model="test-vertex", messages=tool_turns(marker, by_url), tools=[SNAP]
    )
    assert marker in (answer.choices[0].message.content or "")
    parts = function_response(simulator_url, marker)["parts"]
    assert parts == [{"fileData": {"mimeType": "image/png", "fileUri": IMAGE_URL}}]


def test_the_gemini_api_takes_no_image_url_in_a_tool_result(gpt: openai.OpenAI) -> None:
    # Its FunctionResponsePart holds inline data only: a URL is refused before any call.
    by_url = {"type": "image_url", "image_url": {"url": IMAGE_URL}}
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.create(
            model="test-gemini", messages=tool_turns("by url", by_url), tools=[SNAP]
        )
    error = caught.value
    assert error.param == "messages[2].content[1]"
    assert "base64" in error.message and "vertex_ai" in error.message


def test_audio_in_a_tool_result_is_still_refused_by_name(gpt: openai.OpenAI) -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.create(
            model="test-gemini", messages=tool_turns("audio", audio), tools=[SNAP]
        )
    assert caught.value.param == "messages[2].content[1]"


def test_an_anthropic_clients_tool_result_image_and_document_reach_gemini(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    marker = "anthropic tool media to gemini"
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    document = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
    }
    result: Any = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [{"type": "text", "text": marker}, image, document],
    }
    messages: Any = [
        *user("take a picture"),
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "snap", "input": {}}],
        },
        {"role": "user", "content": [result]},
    ]
    tool: Any = {"name": "snap", "input_schema": {"type": "object"}}
    answer = claude.messages.create(
        model="test-gemini", max_tokens=100, messages=messages, tools=[tool]
    )
    assert marker in "".join(block.text for block in answer.content if block.type == "text")
    assert function_response(simulator_url, marker) == {
        "name": "snap",
        "response": {"output": marker},
        "parts": IMAGE_AND_PDF_PARTS,
    }
    # Google's own count reads the same parts (the simulator counts each as an image).
    counted = claude.messages.count_tokens(model="test-gemini", messages=messages, tools=[tool])
    assert counted.input_tokens == answer.usage.input_tokens


@pytest.mark.parametrize("model", ["test-chat", "test-azure"])
def test_an_openai_format_deployment_gets_them_as_the_client_sent_them(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    """The matrix's other column: a Chat Completions client's tool result reaches an OpenAI
    format deployment unchanged, whatever parts it holds."""
    marker = f"tool media as sent to {model}"
    turns = tool_turns(marker, IMAGE, FILE)
    gpt.chat.completions.create(model=model, messages=turns, tools=[SNAP])
    assert sent_upstream(simulator_url, marker)["messages"][-1] == turns[-1]


@BOTH
def test_a_tool_results_text_blocks_reach_gemini_apart(
    claude: anthropic.Anthropic, simulator_url: str, model: str
) -> None:
    """Gemini takes a function's result as one string: a result of several text blocks (an
    MCP tool's usual answer) is their texts one per line, not run together into one word."""
    marker = f"two text blocks to {model}"
    result: Any = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [{"type": "text", "text": marker}, {"type": "text", "text": '{"shots": 2}'}],
    }
    messages: Any = [
        *user("take a picture"),
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "snap", "input": {}}],
        },
        {"role": "user", "content": [result]},
    ]
    tool: Any = {"name": "snap", "input_schema": {"type": "object"}}
    claude.messages.create(model=model, max_tokens=50, messages=messages, tools=[tool])
    sent = function_response(simulator_url, marker)
    assert sent["response"] == {"output": f'{marker}\n{{"shots": 2}}'}
