"""A Responses ``web_search`` tool as Claude's search or Gemini's Google Search, and their
searches and citations back."""

from __future__ import annotations

from typing import Any

import orjson

from tollway.core.types import WebSearch
from tollway.wire.anthropic_request import request_to_wire
from tollway.wire.anthropic_response import response_from_wire
from tollway.wire.anthropic_stream import StreamReader
from tollway.wire.gemini_request import request_to_wire as gemini_request_to_wire
from tollway.wire.gemini_stream import StreamReader as GeminiStreamReader
from tollway.wire.responses_request import request_from_wire

LOCATION = {"type": "approximate", "city": "Paris", "region": "", "country": "FR"}
CITATION = {
    "type": "web_search_result_location",
    "url": "https://example.com/a",
    "title": "A",
    "encrypted_index": "x",
    "cited_text": "said",
}


def parsed(*tools: Any, **body: Any) -> Any:
    return request_from_wire({"model": "m", "input": "hi", "tools": list(tools), **body}).chat


def test_a_web_search_is_claudes_search_with_its_filters_and_location() -> None:
    tool = {"type": "web_search", "filters": {"allowed_domains": ["a.com"]}}
    chat = parsed({**tool, "user_location": LOCATION}, max_tool_calls=3)
    # Google Search takes no location: Claude alone may serve it, refused naming it elsewhere.
    assert chat.responses_only.param == "tools[0].user_location"
    assert chat.responses_only.translated_for == frozenset({"anthropic"})
    assert chat.web_search == WebSearch(["a.com"], {"city": "Paris", "country": "FR"}, 3)
    [sent] = request_to_wire(chat, "claude")["tools"]
    assert sent == {
        "type": "web_search_20250305",
        "name": "web_search",
        "max_uses": 3,
        "allowed_domains": ["a.com"],
        "user_location": {"type": "approximate", "city": "Paris", "country": "FR"},
    }


def test_what_only_openais_search_does_keeps_the_request_for_a_responses_upstream() -> None:
    for tool, param in [
        ({"type": "web_search", "search_context_size": "low"}, "tools[0].search_context_size"),
        ({"type": "web_search", "external_web_access": False}, "tools[0].external_web_access"),
        ({"type": "web_search", "filters": {"blocked": ["a"]}}, "tools[0].filters.blocked"),
    ]:
        chat = parsed(tool)
        assert chat.responses_only.param == param
        assert not chat.responses_only.translated_for and chat.web_search is None


def test_another_built_in_tool_beside_a_search_keeps_it_for_a_responses_upstream() -> None:
    chat = parsed({"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["v"]})
    assert chat.responses_only.param == "tools[1].type" and chat.web_search is None
    chat = parsed({"type": "web_search"}, previous_response_id="resp_1")
    assert chat.responses_only.param == "previous_response_id" and chat.web_search is None


def answer(*blocks: Any) -> dict[str, Any]:
    return {"id": "msg_1", "model": "c", "content": list(blocks), "stop_reason": "end_turn"}


def test_claudes_searches_and_citations_are_read_in_characters_of_the_whole_text() -> None:
    use = {"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {"query": "q"}}
    found = {"type": "web_search_tool_result", "tool_use_id": "s1", "content": []}
    message = (
        response_from_wire(
            answer(
                use,
                found,
                {"type": "text", "text": "Héllo "},
                {"type": "text", "text": "cited", "citations": [CITATION]},
                {"type": "text", "text": "."},
            )
        )
        .choices[0]
        .message
    )
    assert message.web_searches == ["q"]
    [cited] = message.citations or []
    assert message.text()[cited.start : cited.end] == "cited"
    assert (cited.url, cited.title) == ("https://example.com/a", "A")


def events(*payloads: Any) -> list[Any]:
    reader = StreamReader()
    chunks = [reader.feed(orjson.dumps(p)) for p in payloads]
    return [choice for chunk in chunks if chunk for choice in chunk.choices]


def test_a_stream_says_the_query_once_whole_and_a_citation_once_its_text_is() -> None:
    start = {"type": "message_start", "message": {"id": "m", "model": "c", "usage": {}}}
    use = {"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {}}
    json_delta = {"type": "input_json_delta", "partial_json": '{"query": "tides"}'}
    choices = events(
        start,
        {"type": "content_block_start", "index": 0, "content_block": use},
        {"type": "content_block_delta", "index": 0, "delta": json_delta},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "ab"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "citations_delta", "citation": CITATION},
        },
        {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "cd"}},
        {"type": "content_block_stop", "index": 2},
    )
    assert [c.web_searches for c in choices if c.web_searches] == [["tides"]]
    cited = [citation for c in choices for citation in c.url_citations or ()]
    assert [(c.start, c.end) for c in cited] == [(2, 4)]


def test_a_web_search_is_geminis_google_search_unless_none_is_allowed() -> None:
    chat = parsed({"type": "web_search_preview"})
    assert chat.responses_only.translated_for == frozenset({"anthropic", "gemini", "vertex_ai"})
    assert gemini_request_to_wire(chat, "gemini-2.5-flash")["tools"] == [{"googleSearch": {}}]
    chat = parsed({"type": "web_search", "filters": {"allowed_domains": ["a.com"]}})
    assert chat.responses_only.param == "tools[0].filters.allowed_domains"
    assert chat.responses_only.translated_for == frozenset({"anthropic"})
    assert "tools" not in gemini_request_to_wire(parsed({"type": "web_search"}, max_tool_calls=0))


GROUNDING = {
    "webSearchQueries": ["tides", "tides"],
    "groundingChunks": [{"web": {"uri": "https://example.com/a", "title": "A"}}],
    # Bytes of the whole text streamed: "Héllo " is 7 bytes.
    "groundingSupports": [
        {
            "segment": {"startIndex": 7, "endIndex": 12, "text": "cited"},
            "groundingChunkIndices": [0],
        }
    ],
}


def test_geminis_grounding_in_a_stream_is_told_once_in_characters_of_the_whole_text() -> None:
    reader = GeminiStreamReader()

    def said(event: Any) -> list[Any]:
        chunk = reader.feed(orjson.dumps(event))
        return chunk.choices if chunk else []

    def candidate(text: str, **more: Any) -> Any:
        content = {"role": "model", "parts": [{"text": text}]}
        return {"candidates": [{"content": content, "index": 0, **more}], "responseId": "r"}

    said(candidate("Héllo "))
    [grounded] = said(candidate("cited", groundingMetadata=GROUNDING))
    assert grounded.content == "cited" and grounded.web_searches == ["tides", "tides"]
    [cited] = grounded.url_citations or []
    assert "Héllo cited"[cited.start : cited.end] == "cited"
    assert (cited.url, cited.title) == ("https://example.com/a", "A")
    # Resent with the finish, as Google does at times: nothing told twice.
    [last] = said(candidate("", groundingMetadata=GROUNDING, finishReason="STOP"))
    assert last.web_searches is None and last.url_citations is None
