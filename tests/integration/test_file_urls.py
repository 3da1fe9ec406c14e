"""Files by URL, through the real SDKs against the gateway and the simulator: a Responses
client's ``input_file`` with ``file_url`` reaches Claude as a ``document`` with a ``url``
source (Anthropic's API fetches PDFs by URL), and an Anthropic client's document by URL
reaches Claude as it was sent; Bedrock, Gemini and Chat Completions fetch no file by URL, so
they answer a 400 naming the part, never a request without it."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import openai
import pytest

URL = "https://example.com/tolls.pdf"


def recorded(simulator_url: str, marker: str) -> dict[str, Any]:
    """The body of the last request the simulator received that mentions ``marker``."""
    for request in reversed(httpx.get(simulator_url + "/_sim/requests").json()):
        if marker in json.dumps(request["json"]):
            return dict(request["json"])
    raise AssertionError(f"the simulator received no request mentioning {marker!r}")


def by_url(marker: str) -> list[Any]:
    """A Responses user turn asking about a PDF given by URL (the file is its part [1])."""
    content = [
        {"type": "input_text", "text": marker},
        {"type": "input_file", "file_url": URL, "filename": "tolls.pdf"},
    ]
    return [{"role": "user", "content": content}]


@pytest.mark.parametrize("stream", [False, True])
def test_a_responses_file_url_reaches_claude_as_a_url_document(
    gpt: openai.OpenAI, simulator_url: str, stream: bool
) -> None:
    marker = f"summarise the linked tolls, stream={stream}"
    if stream:
        with gpt.responses.stream(model="test-claude", input=by_url(marker)) as events:
            response = events.get_final_response()
    else:
        response = gpt.responses.create(model="test-claude", input=by_url(marker))
    assert response.status == "completed" and marker in response.output_text
    (turn,) = recorded(simulator_url, marker)["messages"]
    assert turn["content"] == [
        {"type": "text", "text": marker},
        {"type": "document", "source": {"type": "url", "url": URL}, "title": "tolls.pdf"},
    ]


@pytest.mark.parametrize(
    ("model", "words"),
    [("test-bedrock", "bedrock"), ("test-gemini", "gemini"), ("test-chat", "Chat Completions")],
)
def test_a_file_url_is_refused_by_name_where_no_deployment_fetches_it(
    gpt: openai.OpenAI, model: str, words: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.responses.create(model=model, input=by_url("fetch this elsewhere"))
    error = caught.value
    assert error.param == "input[0].content[1]"
    assert "file_url" in error.message and words in error.message
    assert "of provider 'anthropic'" in error.message  # where it can go


def test_an_anthropic_clients_url_document_reaches_claude_as_sent(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    marker = "anthropic url document"
    document: Any = {
        "type": "document",
        "source": {"type": "url", "url": URL},
        "title": "Tolls",
        "cache_control": {"type": "ephemeral"},
    }
    content: Any = [document, {"type": "text", "text": marker}]
    message = claude.messages.create(
        model="test-claude", max_tokens=50, messages=[{"role": "user", "content": content}]
    )
    assert message.stop_reason == "end_turn"
    assert recorded(simulator_url, marker)["messages"][0]["content"] == content


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("test-bedrock", "Bedrock reads documents only as bytes"),
        ("test-gemini", "Gemini fetches files only"),
        ("test-chat", "Chat Completions takes files only"),
    ],
)
def test_an_anthropic_clients_url_document_is_refused_by_name_elsewhere(
    claude: anthropic.Anthropic, model: str, words: str
) -> None:
    content: Any = [
        {"type": "text", "text": "read it"},
        {"type": "document", "source": {"type": "url", "url": URL}},
    ]
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model=model, max_tokens=50, messages=[{"role": "user", "content": content}]
        )
    error: Any = caught.value.body
    assert error["error"]["type"] == "invalid_request_error"
    message = error["error"]["message"]
    assert "by URL" in message and words in message and "messages[0].content[1]" in message
