"""Tool use crossing from one client API to another family, through the real ``openai`` and
``anthropic`` SDKs against the session's gateway and the simulator: parallel calls turned off
where the family has no switch for it (Gemini: the answer keeps its first call) or has its own
(Claude on Bedrock), and call ids another provider made that the next one would refuse."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import anthropic
import openai
import pytest

from tests.integration.sdk import TIME, WEATHER, sent_upstream, user

CLAUDE_TOOLS: Any = [
    {"name": t["function"]["name"], "input_schema": t["function"]["parameters"]}
    for t in (WEATHER, TIME)
]


def marker(words: str) -> str:
    """Words no other test sends, to find this test's request in the simulator's log."""
    return f"{words} {uuid.uuid4().hex[:10]}"


# --- parallel calls turned off -----------------------------------------------------------


@pytest.mark.parametrize("model", ["test-gemini", "test-bedrock"])
def test_parallel_calls_are_on_unless_turned_off(gpt: openai.OpenAI, model: str) -> None:
    answer = gpt.chat.completions.create(
        model=model, messages=user(marker("call both in parallel")), tools=[WEATHER, TIME]
    )
    calls: Any = answer.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_answers_one_call_to_an_openai_client_that_turned_parallel_calls_off(
    gpt: openai.OpenAI, simulator_url: str, stream: bool
) -> None:
    asked = marker("call both in parallel")
    kwargs: Any = {"model": "test-gemini", "messages": user(asked), "tools": [WEATHER, TIME]}
    if stream:
        with gpt.chat.completions.stream(**kwargs, parallel_tool_calls=False) as events:
            answer = events.get_final_completion()
    else:
        answer = gpt.chat.completions.create(**kwargs, parallel_tool_calls=False)
    calls: Any = answer.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather"]
    assert json.loads(calls[0].function.arguments)
    assert answer.choices[0].finish_reason == "tool_calls"
    assert "parallel_tool_calls" not in json.dumps(sent_upstream(simulator_url, asked))


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_answers_one_call_to_an_anthropic_client_that_disabled_parallel_tool_use(
    claude: anthropic.Anthropic, stream: bool
) -> None:
    kwargs: Any = {
        "model": "test-gemini",
        "max_tokens": 200,
        "messages": user(marker("call both in parallel")),
        "tools": CLAUDE_TOOLS,
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    }
    if stream:
        with claude.messages.stream(**kwargs) as events:
            answer = events.get_final_message()
    else:
        answer = claude.messages.create(**kwargs)
    uses = [block for block in answer.content if block.type == "tool_use"]
    assert [use.name for use in uses] == ["get_weather"]
    assert answer.stop_reason == "tool_use"


@pytest.mark.parametrize(
    ("tool_choice", "sent_choice"),
    [
        (None, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", {"disable_parallel_tool_use": True}),
        ("auto", {"disable_parallel_tool_use": True}),
    ],
)
def test_claude_on_bedrock_is_told_to_call_one_tool_at_a_time(
    gpt: openai.OpenAI, simulator_url: str, tool_choice: Any, sent_choice: Any
) -> None:
    asked = marker("call both in parallel")
    extra: Any = {} if tool_choice is None else {"tool_choice": tool_choice}
    answer = gpt.chat.completions.create(
        model="test-bedrock",
        messages=user(asked),
        tools=[WEATHER, TIME],
        parallel_tool_calls=False,
        **extra,
    )
    calls: Any = answer.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather"]
    body = sent_upstream(simulator_url, asked)
    # Claude's own flag, merged by Bedrock into the toolConfig's choice (whose type it may
    # not repeat beside one, and must name without one).
    assert body["additionalModelRequestFields"]["tool_choice"] == sent_choice


def test_claude_on_bedrock_gets_an_anthropic_clients_disable_parallel_tool_use(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    asked = marker("call both in parallel")
    answer = claude.messages.create(
        model="test-bedrock",
        max_tokens=200,
        messages=user(asked),
        tools=CLAUDE_TOOLS,
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )
    assert [b.name for b in answer.content if b.type == "tool_use"] == ["get_weather"]
    body = sent_upstream(simulator_url, asked)
    assert body["toolConfig"]["toolChoice"] == {"any": {}}
    assert body["additionalModelRequestFields"]["tool_choice"] == {
        "disable_parallel_tool_use": True
    }


# --- call ids another provider made ------------------------------------------------------


def conversation(asked: str, call_id: str) -> list[Any]:
    """An OpenAI conversation whose one call (with ``call_id``) was answered."""
    call = {"id": call_id, "type": "function", "function": {"name": "get_weather"}}
    call["function"]["arguments"] = '{"city": "Oslo"}'
    return [
        {"role": "user", "content": asked},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
    ]


@pytest.mark.parametrize("model", ["test-claude", "test-bedrock"])
def test_call_ids_anthropic_and_bedrock_refuse_are_made_to_fit(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    # Kimi's and other compatible servers' ids: a dot and a colon, which Claude refuses.
    asked = marker("what did the tool say")
    answer = gpt.chat.completions.create(
        model=model, messages=conversation(asked, "functions.get_weather:0"), tools=[WEATHER]
    )
    assert answer.choices[0].message.content
    body = sent_upstream(simulator_url, asked)
    if model == "test-claude":
        use, result = body["messages"][1]["content"][0], body["messages"][2]["content"][0]
        sent = (use["id"], result["tool_use_id"])
    else:
        use, result = body["messages"][1]["content"][0], body["messages"][2]["content"][0]
        sent = (use["toolUse"]["toolUseId"], result["toolResult"]["toolUseId"])
    assert sent[0] == sent[1] and sent[0].startswith("functions_get_weather_0_")
    # An id that fits goes as it came.
    asked = marker("what did the tool say")
    gpt.chat.completions.create(
        model=model, messages=conversation(asked, "call_abc-123"), tools=[WEATHER]
    )
    assert "call_abc-123" in json.dumps(sent_upstream(simulator_url, asked))


def test_call_ids_longer_than_openai_takes_are_made_to_fit(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    # vLLM's ids are 46 long: an Anthropic client's conversation it served, failed over to
    # an OpenAI deployment.
    long_id = "chatcmpl-tool-" + "0123456789abcdef" * 2
    asked = marker("what did the tool say")
    answer = claude.messages.create(
        model="test-chat",
        max_tokens=100,
        tools=CLAUDE_TOOLS,
        messages=[
            {"role": "user", "content": asked},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": long_id, "name": "get_weather", "input": {}}
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": long_id, "content": "sunny"}],
            },
        ],
    )
    assert answer.content
    body = sent_upstream(simulator_url, asked)
    sent = body["messages"][1]["tool_calls"][0]["id"]
    assert len(sent) <= 40 and sent == body["messages"][2]["tool_call_id"]


# --- documents ---------------------------------------------------------------------------

PDF_DATA = base64.b64encode(b"%PDF-1.4 a tiny tollway test document").decode()


def documents(asked: str) -> list[Any]:
    """An Anthropic user turn holding a PDF, a plain-text document and the question."""
    pdf = {"type": "base64", "media_type": "application/pdf", "data": PDF_DATA}
    text = {"type": "text", "media_type": "text/plain", "data": "Cars pay 3 euros."}
    return [
        {
            "role": "user",
            "content": [
                {"type": "document", "source": pdf, "title": "tolls.pdf"},
                {"type": "document", "source": text},
                {"type": "text", "text": asked},
            ],
        }
    ]


def test_an_anthropic_clients_documents_reach_every_family(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    sent: dict[str, Any] = {}
    for model in ("test-chat", "test-gemini", "test-bedrock", "test-claude"):
        asked = marker("what do the documents say")
        answer = claude.messages.create(model=model, max_tokens=50, messages=documents(asked))
        assert answer.content
        sent[model] = sent_upstream(simulator_url, asked)[
            "messages" if model != "test-gemini" else "contents"
        ]
    openai_parts = sent["test-chat"][0]["content"]
    assert openai_parts[0] == {
        "type": "file",
        "file": {"file_data": f"data:application/pdf;base64,{PDF_DATA}", "filename": "tolls.pdf"},
    }
    assert openai_parts[1] == {"type": "text", "text": "Cars pay 3 euros."}
    gemini_parts = sent["test-gemini"][0]["parts"]
    assert gemini_parts[0] == {"inlineData": {"mimeType": "application/pdf", "data": PDF_DATA}}
    assert gemini_parts[1] == {"text": "Cars pay 3 euros."}
    pdf, text = (block["document"] for block in sent["test-bedrock"][0]["content"][:2])
    assert pdf == {"format": "pdf", "name": "tolls pdf", "source": {"bytes": PDF_DATA}}
    assert text["format"] == "txt" and text["name"].startswith("document-")
    assert base64.b64decode(text["source"]["bytes"]) == b"Cars pay 3 euros."
    assert sent["test-claude"][0]["content"][:2] == documents("")[0]["content"][:2]


@pytest.mark.parametrize("model", ["test-chat", "test-azure"])
def test_an_untitled_pdf_reaches_openai_with_a_file_name(
    claude: anthropic.Anthropic, simulator_url: str, model: str
) -> None:
    # Anthropic's documents need no title; Chat Completions refuses a file_data without a
    # filename (a 400 naming file.file_id), so an untitled PDF would never be read.
    pdf = {"type": "base64", "media_type": "application/pdf", "data": PDF_DATA}
    asked = marker("what does the untitled pdf say")
    content = [{"type": "document", "source": pdf}, {"type": "text", "text": asked}]
    answer = claude.messages.create(
        model=model, max_tokens=50, messages=[{"role": "user", "content": content}]
    )
    assert answer.content
    file = sent_upstream(simulator_url, asked)["messages"][0]["content"][0]["file"]
    assert file["file_data"] == f"data:application/pdf;base64,{PDF_DATA}"
    assert file["filename"].startswith("document-") and file["filename"].endswith(".pdf")


@pytest.mark.parametrize("model", ["test-claude", "test-bedrock", "test-gemini"])
def test_an_openai_clients_pdf_reaches_every_family(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    asked = marker("what does the pdf say")
    file: Any = {
        "type": "file",
        "file": {"file_data": f"data:application/pdf;base64,{PDF_DATA}", "filename": "t.pdf"},
    }
    answer = gpt.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": [file, {"type": "text", "text": asked}]}],
    )
    assert answer.choices[0].message.content
    body = sent_upstream(simulator_url, asked)
    if model == "test-claude":
        assert body["messages"][0]["content"][0] == {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_DATA},
            "title": "t.pdf",
        }
    elif model == "test-bedrock":
        assert body["messages"][0]["content"][0] == {
            "document": {"format": "pdf", "name": "t pdf", "source": {"bytes": PDF_DATA}}
        }
    else:
        part = body["contents"][0]["parts"][0]
        assert part == {"inlineData": {"mimeType": "application/pdf", "data": PDF_DATA}}


def test_a_documents_citations_are_a_400_for_another_family(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    asked = marker("cite the document")
    turn = documents(asked)
    turn[0]["content"][1]["citations"] = {"enabled": True}
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model="test-gemini", max_tokens=50, messages=turn)
    assert "'citations'" in caught.value.message
    # A document by URL, which Chat Completions cannot fetch, is a 400 saying so.
    url = {"type": "url", "url": "https://example.com/a.pdf"}
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model="test-chat",
            max_tokens=50,
            messages=[{"role": "user", "content": [{"type": "document", "source": url}]}],
        )
    assert "a document by URL" in caught.value.message
