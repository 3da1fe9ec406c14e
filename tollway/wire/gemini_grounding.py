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
segment without sources cite nothing. The queries grounding ran (``webSearchQueries``) are
the answer's web searches.

A stream (``GroundingTracker``) tells the metadata on some of its objects, the last one at
least, not always whole (Google has sent the queries early and the sources later, and resent
what it had told): each object's supports are read against the candidate's text streamed so
far, counted as one part (Google counts a streamed answer's offsets in its whole text; a
segment found elsewhere is looked for by its text, as above), and each query and citation is
told once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
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


def search_queries(metadata: Any) -> list[str] | None:
    """The Google Search queries a ``groundingMetadata`` says grounding ran (``None``: none)."""
    queries = metadata.get("webSearchQueries") if isinstance(metadata, dict) else None
    if not isinstance(queries, list):
        return None
    return [query for query in queries if isinstance(query, str)] or None


@dataclass(slots=True)
class GroundingTracker:
    """What one streamed candidate's grounding has told so far, to tell each query and each
    citation once."""

    _queries: Counter[str] = field(default_factory=Counter)
    """Each query told, as many times as it ran (a query may run twice)."""
    _cited: set[tuple[str, str, int, int]] = field(default_factory=set)

    def grounded(self, metadata: Any, text: str) -> tuple[list[str], list[UrlCitation]]:
        """The queries and citations ``metadata`` tells that were not told before (``text``:
        the candidate's answer text streamed so far, thoughts left out)."""
        queries: list[str] = []
        for query, times in Counter(search_queries(metadata) or ()).items():
            queries += [query] * max(0, times - self._queries[query])
            self._queries[query] = max(times, self._queries[query])
        cited: list[UrlCitation] = []
        for citation in citations_from_grounding(metadata, [{"text": text}]) or ():
            key = (citation.url, citation.title, citation.start, citation.end)
            if key not in self._cited:
                self._cited.add(key)
                cited.append(citation)
        return queries, cited
