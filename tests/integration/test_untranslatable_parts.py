"""A content part the serving family cannot take is a 400 naming it in the client's own terms
(its path in the request it sent, not the canonical Chat Completions one) and saying what the
family takes instead: an image by URL for Bedrock, whose Converse reads images only as bytes,
and an image in an Anthropic client's ``tool_result`` for a Chat Completions deployment, whose
tool messages take only text. Through the real ``openai`` and ``anthropic`` SDKs."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

URL = "https://example.com/cat.png"
PNG = "iVBORw0KGgo="


def test_a_chat_clients_image_url_to_bedrock_names_the_part(gpt: openai.OpenAI) -> None:
    content: Any = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": URL}},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.create(
            model="test-bedrock", messages=[{"role": "user", "content": content}]
        )
    error = caught.value
    assert error.param == "messages[0].content[1].image_url"
    assert "'messages[0].content[1].image_url'" in error.message
    assert "base64" in error.message


def test_a_responses_clients_image_url_to_bedrock_names_the_part(gpt: openai.OpenAI) -> None:
    content: Any = [
        {"type": "input_text", "text": "what is this"},
        {"type": "input_image", "image_url": URL},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.responses.create(model="test-bedrock", input=[{"role": "user", "content": content}])
    error = caught.value
    assert error.param == "input[0].content[1].image_url"
    assert "'input[0].content[1].image_url'" in error.message
    assert "messages" not in error.message and "base64" in error.message


def test_an_anthropic_clients_image_url_to_bedrock_names_the_block(
    claude: anthropic.Anthropic,
) -> None:
    content: Any = [
        {"type": "text", "text": "what is this"},
        {"type": "image", "source": {"type": "url", "url": URL}},
    ]
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model="test-bedrock", max_tokens=20, messages=[{"role": "user", "content": content}]
        )
    message = caught.value.body["error"]["message"]  # type: ignore[index]
    assert "'messages[0].content[1].source'" in message
    assert "base64" in message


def test_an_anthropic_clients_tool_result_image_to_openai_names_the_block(
    claude: anthropic.Anthropic,
) -> None:
    # Chat Completions' tool messages take only text parts: the image would be lost.
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    messages: Any = [
        {"role": "user", "content": "take a picture"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "taking it"},
                {"type": "tool_use", "id": "toolu_1", "name": "snap", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "here it is"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "a photo"}, image],
                },
            ],
        },
    ]
    tools: Any = [{"name": "snap", "input_schema": {"type": "object"}}]
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model="test-chat", max_tokens=20, messages=messages, tools=tools)
    message = caught.value.body["error"]["message"]  # type: ignore[index]
    assert "'messages[2].content[1].content[1]'" in message
    assert "text" in message
