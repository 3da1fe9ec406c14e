"""Claude's web searches in an answer, as the canonical searches and URL citations.

Claude searching (its web search server tool) answers with a ``server_tool_use`` block (its
``input.query``) and a ``web_search_tool_result`` block per search, then text blocks, those
that rest on a result carrying ``citations`` of type ``web_search_result_location`` (``url``,
``title``, ``cited_text``). The queries are ``Message.web_searches``; each such citation is a
``UrlCitation`` of its whole block, counted in characters of the answer's text (the blocks
joined), as OpenAI's ``url_citation`` annotations count. ``SearchTracker`` does the same for
a stream, a block at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from tollway.core.types import Message, OpaquePart, TextPart, UrlCitation

_LOCATION = "web_search_result_location"


def with_searches(message: Message) -> Message:
    """``message`` with the searches its blocks ran and the web sources its text cites."""
    if not isinstance(message.content, list):
        return message
    queries: list[str] = []
    cited: list[UrlCitation] = []
    offset = 0
    for part in message.content:
        if isinstance(part, OpaquePart) and part.type == "server_tool_use":
            query = _query(part.data)
            if query is not None:
                queries.append(query)
        elif isinstance(part, TextPart):
            end = offset + len(part.text)
            cited += citations_of(part.extra.get("citations"), offset, end)
            offset = end
    if queries:
        message.web_searches = queries
    if cited:
        message.citations = (message.citations or []) + cited
    return message


def citations_of(raw: Any, start: int, end: int) -> list[UrlCitation]:
    """The web sources among a text block's ``citations``, each citing ``start`` to ``end``."""
    if not isinstance(raw, list) or start == end:
        return []
    return [
        UrlCitation(url=str(c["url"]), title=str(c.get("title") or ""), start=start, end=end)
        for c in raw
        if isinstance(c, dict) and c.get("type") == _LOCATION and isinstance(c.get("url"), str)
    ]


def _query(block: dict[str, Any]) -> str | None:
    if block.get("name") != "web_search":
        return None
    given = block.get("input")
    query = given.get("query") if isinstance(given, dict) else None
    return query if isinstance(query, str) else None


@dataclass(slots=True)
class SearchTracker:
    """What a stream's blocks say of its searches: each search's query once its input is
    whole, each cited text block's sources once its text is."""

    offset: int = 0
    """Characters of the answer's text streamed so far."""
    _inputs: dict[int, list[str]] = field(default_factory=dict)
    """Per ``server_tool_use`` block of a web search, its input so far."""
    _texts: dict[int, tuple[int, list[Any]]] = field(default_factory=dict)
    """Per text block, where its text starts and its citations so far (at its start, or
    each in a ``citations_delta``, before its text)."""

    def block_started(self, index: int, block: dict[str, Any]) -> None:
        """Note a block that may say a search or carry citations."""
        kind = block.get("type")
        if kind == "server_tool_use" and block.get("name") == "web_search":
            given = block.get("input")
            self._inputs[index] = [orjson.dumps(given).decode()] if given else []
        elif kind == "text":
            self._texts[index] = (self.offset, list(block.get("citations") or ()))

    def delta(self, index: int, delta: dict[str, Any]) -> None:
        """Note a delta of a noted block: a search's input, a citation."""
        kind = delta.get("type")
        if kind == "input_json_delta" and index in self._inputs:
            self._inputs[index].append(str(delta.get("partial_json") or ""))
        elif kind == "citations_delta" and index in self._texts:
            self._texts[index][1].append(delta.get("citation"))

    def block_stopped(self, index: int) -> tuple[str | None, list[UrlCitation]]:
        """The query of a search block, or the sources of a cited text block, that ends."""
        pieces = self._inputs.pop(index, None)
        if pieces is not None:
            try:
                given = orjson.loads("".join(pieces) or "{}")
            except orjson.JSONDecodeError:
                return None, []
            return _query({"name": "web_search", "input": given}), []
        text = self._texts.pop(index, None)
        if text is None:
            return None, []
        return None, citations_of(text[1], text[0], self.offset)
