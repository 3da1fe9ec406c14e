"""Documents (a base64 PDF, plain text) as ``DocumentPart``s: each codec reads its own shape
and writes it back as it came, and writes the others' in its terms."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.core.errors import InvalidRequest
from tollway.core.types import DocumentPart
from tollway.wire.anthropic_request import request_from_wire as anthropic_request
from tollway.wire.anthropic_request import request_to_wire as anthropic_body
from tollway.wire.openai_request import request_from_wire as openai_request
from tollway.wire.openai_request import request_to_wire as openai_body

PDF_SOURCE = {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}


def anthropic_turn(*blocks: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": list(blocks)}]}


def test_anthropic_documents_go_back_to_anthropic_as_they_came() -> None:
    pdf = {"type": "document", "source": PDF_SOURCE, "title": "t", "cache_control": {"x": 1}}
    text = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "hi"},
    }
    untitled = {**text, "title": None, "context": "c"}
    body = anthropic_turn(pdf, text, untitled)
    request = anthropic_request(body)
    parts = request.messages[0].content
    assert isinstance(parts, list) and all(isinstance(p, DocumentPart) for p in parts)
    assert anthropic_body(request, "m")["messages"] == body["messages"]


def test_a_document_by_url_goes_back_to_anthropic_as_it_came_and_no_further() -> None:
    url = {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}, "title": "t"}
    body = anthropic_turn({"type": "text", "text": "read"}, url)
    request = anthropic_request(body)
    parts = request.messages[0].content
    assert isinstance(parts, list)
    assert parts[1] == DocumentPart("application/pdf", url="https://x/a.pdf", name="t")
    assert anthropic_body(request, "m")["messages"] == body["messages"]
    # Chat Completions fetches no file by URL: a 400 naming the part, never a blank document.
    with pytest.raises(InvalidRequest) as refused:
        openai_body(request, "m")
    assert refused.value.param == "messages[0].content[1]"
    assert "by URL" in str(refused.value) and "file_data" in str(refused.value)


def test_documents_by_file_stay_anthropics_own() -> None:
    stored = {"type": "document", "source": {"type": "file", "file_id": "file_011"}}
    request = anthropic_request(anthropic_turn(stored))
    assert not isinstance((request.messages[0].content or [None])[0], DocumentPart)


def test_openai_pdf_files_go_back_to_openai_as_they_came() -> None:
    file = {
        "type": "file",
        "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
    }
    stored = {"type": "file", "file": {"file_id": "file-1"}}
    body = {"model": "m", "messages": [{"role": "user", "content": [file, stored]}]}
    request = openai_request(body)
    parts = request.messages[0].content
    assert isinstance(parts, list) and parts[0] == DocumentPart(
        "application/pdf", data="JVBE", name="a.pdf"
    )
    assert openai_body(request, "m")["messages"] == body["messages"]


def test_a_pdf_crosses_between_openai_and_anthropic() -> None:
    file = {
        "type": "file",
        "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
    }
    request = openai_request({"model": "m", "messages": [{"role": "user", "content": [file]}]})
    block = anthropic_body(request, "m")["messages"][0]["content"][0]
    assert block == {"type": "document", "source": PDF_SOURCE, "title": "a.pdf"}
    back = anthropic_request(anthropic_turn(block))
    assert openai_body(back, "m")["messages"][0]["content"][0] == file
