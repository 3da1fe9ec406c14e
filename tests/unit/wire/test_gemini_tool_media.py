"""Images and documents in tool results as Gemini's multimodal function responses."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.core.errors import InvalidRequest
from tollway.wire import openai_request
from tollway.wire.gemini_request import request_from_wire, request_to_wire

PNG = "iVBORw0KGgo="
PDF = "JVBERi0xLjQK"
PNG_URL = f"data:image/png;base64,{PNG}"
PDF_FILE = {
    "type": "file",
    "file": {"filename": "r.pdf", "file_data": f"data:application/pdf;base64,{PDF}"},
}


def function_response(*parts: Any, result_uris: bool = True) -> dict[str, Any]:
    """The ``functionResponse`` an OpenAI-format tool result holding ``parts`` becomes."""
    call = {"id": "call_1", "type": "function", "function": {"name": "snap", "arguments": "{}"}}
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "take a picture"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": list(parts)},
        ],
    }
    request = openai_request.request_from_wire(body)
    contents = request_to_wire(request, "gemini-3-flash-preview", result_uris=result_uris)
    return dict(contents["contents"][-1]["parts"][0]["functionResponse"])


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, "detail": "high"}}


def test_images_and_pdfs_are_parts_beside_the_texts_response() -> None:
    parts = (text("a"), image(PNG_URL), text("cat"), PDF_FILE)
    assert function_response(*parts) == {
        "name": "snap",
        "response": {"output": "a\ncat"},  # two text parts, one a line: never "acat"
        "parts": [
            {"inlineData": {"mimeType": "image/png", "data": PNG}},
            {"inlineData": {"mimeType": "application/pdf", "data": PDF}},
        ],
    }


def test_a_json_object_result_is_still_the_response_itself() -> None:
    result = function_response(text('{"seen": "a cat"}'), image(PNG_URL))
    assert result["response"] == {"seen": "a cat"}
    assert len(result["parts"]) == 1


def test_a_text_only_result_has_no_parts() -> None:
    assert function_response(text("a cat")) == {"name": "snap", "response": {"output": "a cat"}}


def test_an_image_url_is_file_data_where_the_api_takes_it() -> None:
    url = "https://example.com/shots/front.webp?v=2"
    assert function_response(image(url))["parts"] == [
        {"fileData": {"fileUri": url, "mimeType": "image/webp"}}
    ]
    with pytest.raises(InvalidRequest, match="vertex_ai") as caught:
        function_response(image(url), result_uris=False)
    assert caught.value.param == "messages[2].content[0]"


def test_an_image_url_without_a_media_type_is_refused_by_its_part() -> None:
    with pytest.raises(InvalidRequest, match="media type") as caught:
        function_response(text("a"), image("https://example.com/shot"))
    assert caught.value.param == "messages[2].content[1]"


def test_other_parts_are_refused_by_their_place() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    with pytest.raises(InvalidRequest, match="input_audio") as caught:
        function_response(text("a"), audio)
    assert caught.value.param == "messages[2].content[1]"


def test_a_gemini_clients_own_parts_go_back_as_they_came() -> None:
    blob = {"inlineData": {"mimeType": "image/png", "data": PNG}}
    result = {"name": "snap", "response": {"output": "a cat"}, "parts": [blob]}
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "take a picture"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "snap", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": result}]},
        ]
    }
    sent = request_to_wire(request_from_wire(body, "m"), "m")["contents"][-1]["parts"][0]
    assert sent["functionResponse"] == result
