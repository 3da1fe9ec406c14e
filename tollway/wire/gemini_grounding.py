"""Gemini's grounding (a candidate's ``groundingMetadata``) as the answer's URL citations.

A candidate grounded with Google Search (or Google Maps) lists its sources
(``groundingChunks``, each a ``web`` or ``maps`` object with ``uri`` and ``title``) and the
stretches of the answer they support (``groundingSupports``: a ``segment`` of the text part
``partIndex``, from ``startIndex`` to ``endIndex`` counted in UTF-8 bytes of that part, with
its ``text``, and the indices of the chunks behind it). Each pair of a segment and a source
with a URL is a ``UrlCitation`` counted in characters of the answer's text (its text parts
joined, as the answer's content is), which is how OpenAI's ``url_citation`` counts. A segment
whose offsets do not hold its own ``text`` is looked for by that text; one found nowhere is
left out rather than cited at the wrong place. Other chunks (``retrievedContext``) and a
segment without sources cite nothing.
"""

from __future__ import annotations

from typing import Any

from tollway.core.types import UrlCitation

_SOURCES = ("web", "maps")


def citations_from_grounding(
    metadata: Any, parts: list[dict[str, Any]]
) -> list[UrlCitation] | None:
    """The URL citations ``metadata`` (a ``groundingMetadata``) makes in the answer of
    ``parts`` (its candidate's), or ``None`` when it makes none."""
    if not isinstance(metadata, dict):
        return None
    supports, chunks = metadata.get("groundingSupports"), metadata.get("groundingChunks")
    if not isinstance(supports, list) or not isinstance(chunks, list):
        return None
    starts: dict[int, int] = {}  # where each text part begins in the answer's text
    texts: list[str] = []
    length = 0
    for index, part in enumerate(parts):
        text = part.get("text")
        if isinstance(text, str) and not part.get("thought"):
            starts[index] = length
            texts.append(text)
            length += len(text)
    whole = "".join(texts)
    out: list[UrlCitation] = []
    for support in supports:
        span = _span(support, parts, starts, whole) if isinstance(support, dict) else None
        if span is None:
            continue
        for chunk_index in support.get("groundingChunkIndices") or ():
            source = _source(chunks, chunk_index)
            if source is not None:
                out.append(UrlCitation(source[0], source[1], *span))
    return out or None


def _span(
    support: dict[str, Any], parts: list[dict[str, Any]], starts: dict[int, int], whole: str
) -> tuple[int, int] | None:
    """The characters of the answer's text that ``support``'s segment covers."""
    segment = support.get("segment")
    if not isinstance(segment, dict):
        return None
    number = segment.get("partIndex") or 0
    first, last = segment.get("startIndex") or 0, segment.get("endIndex")
    said = segment.get("text")
    if isinstance(number, int) and number in starts and isinstance(first, int) and first >= 0:
        data = str(parts[number]["text"]).encode()
        end = last if isinstance(last, int) else len(data)
        # A byte offset inside a character counts the whole character before it.
        offset = starts[number]
        span = (
            offset + len(data[:first].decode(errors="ignore")),
            offset + len(data[:end].decode(errors="ignore")),
        )
        if offset <= span[0] <= span[1] and (
            not isinstance(said, str) or whole[span[0] : span[1]] == said
        ):
            return span
    if isinstance(said, str) and said and (found := whole.find(said)) >= 0:
        return found, found + len(said)
    return None


def _source(chunks: list[Any], index: Any) -> tuple[str, str] | None:
    """The URL and title of chunk ``index``, if it is a web or maps source."""
    if not isinstance(index, int) or not 0 <= index < len(chunks):
        return None
    chunk = chunks[index]
    for kind in _SOURCES:
        source = chunk.get(kind) if isinstance(chunk, dict) else None
        if isinstance(source, dict) and isinstance(source.get("uri"), str):
            return source["uri"], str(source.get("title") or "")
    return None
