"""Documents and images as Bedrock's Converse takes them, through the real SDKs.

Converse refuses a request whose messages hold two documents of one name ("Messages can't
contain duplicate document names"), counted over the whole conversation, tool results
included; a client's names (Anthropic's ``title``, OpenAI's ``filename``) need not differ.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support import pdf


def recorded(simulator_url: str, marker: str) -> dict[str, Any]:
    """The last request the simulator received whose body mentions ``marker``."""
    for request in reversed(httpx.get(simulator_url + "/_sim/requests").json()):
        if marker in json.dumps(request["json"]):
            return dict(request)
    raise AssertionError(f"the simulator received no request mentioning {marker!r}")


def documents(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every document block of a Converse body, tool results' included, in order."""
    found = []
    for message in body["messages"]:
        for block in message["content"]:
            inner = block.get("toolResult", {}).get("content", [block])
            found += [item["document"] for item in inner if "document" in item]
    return found


PDF_DATA = base64.b64encode(pdf(1)).decode()


def _anthropic_document(title: str | None, data: str = PDF_DATA) -> Any:
    document: Any = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": data},
    }
    if title is not None:
        document["title"] = title
    return document


def test_documents_of_one_name_reach_bedrock_named_apart(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    # Two versions of one file, the same PDF sent again in a later turn, and names that are
    # one once made to Converse's rules ("a.pdf", "a pdf"): each its own name.
    marker = "documents-named-apart"
    messages: Any = [
        {"role": "user", "content": [
            _anthropic_document("report.pdf"),
            _anthropic_document("report.pdf", base64.b64encode(pdf(2)).decode()),
            _anthropic_document(None),
            {"type": "text", "text": "compare them"},
        ]},
        {"role": "assistant", "content": "They differ."},
        {"role": "user", "content": [
            _anthropic_document(None),
            _anthropic_document("a.pdf"),
            _anthropic_document("a pdf"),
            {"type": "text", "text": marker},
        ]},
    ]  # fmt: skip
    message = claude.messages.create(model="test-bedrock", max_tokens=50, messages=messages)
    assert message.stop_reason == "end_turn"
    names = [document["name"] for document in documents(recorded(simulator_url, marker)["json"])]
    assert len(names) == 6 and len({name.lower() for name in names}) == 6, names
    assert names[0] == "report pdf" and names[4] == "a pdf", names


def test_an_openai_clients_files_of_one_filename_reach_bedrock_named_apart(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    marker = "openai-files-named-apart"
    file: Any = {
        "type": "file",
        "file": {"filename": "scan.pdf", "file_data": f"data:application/pdf;base64,{PDF_DATA}"},
    }
    answer = gpt.chat.completions.create(
        model="test-bedrock",
        messages=[{"role": "user", "content": [file, file, {"type": "text", "text": marker}]}],
    )
    assert answer.choices[0].finish_reason == "stop"
    names = [document["name"] for document in documents(recorded(simulator_url, marker)["json"])]
    assert len(set(names)) == 2, names


def test_a_document_in_a_developer_message_is_a_400_naming_it_for_bedrock(
    gpt: openai.OpenAI,
) -> None:
    # Converse's system prompt holds text (and guard content, cache points) only; a Responses
    # client's developer message may hold a file, which went to Bedrock as a system document.
    file: Any = {
        "type": "input_file",
        "filename": "rules.pdf",
        "file_data": f"data:application/pdf;base64,{PDF_DATA}",
    }
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.responses.create(
            model="test-bedrock",
            input=[
                {"role": "developer", "content": [file]},
                {"role": "user", "content": "system-document"},
            ],
        )
    assert caught.value.param == "input[0].content"
    assert "system messages can only hold text" in caught.value.message
