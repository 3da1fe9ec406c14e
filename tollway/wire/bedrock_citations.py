"""Bedrock Converse citations ⇄ canonical ``DocumentCitation``.

A document sent with citations on (Converse's ``citations: {"enabled": true}`` on a
``document`` block: an Anthropic client's ``citations``, kept by ``crossing``) is answered
with ``citationsContent`` blocks: the generated ``content`` (text) a quote supports and its
``citations``, each with the document's ``title``, the ``sourceContent`` quoted and a
``location`` union: ``documentChar`` (characters), ``documentPage`` (pages) or
``documentChunk`` (chunks), each with ``documentIndex``, ``start`` and ``end``. Such a block is
a text part carrying its citations; ConverseStream says each as a ``citation`` delta
(``CitationsDelta``, the same fields) in the quoting block. Locations of other kinds (web
results, search results) cite no document and are left out.
"""

from __future__ import annotations

from typing import Any, Literal

from tollway.core.types import DocumentCitation, DocumentPart, TextPart

_KINDS: dict[str, Literal["char", "page", "block"]] = {
    "documentChar": "char",
    "documentPage": "page",
    "documentChunk": "block",
}


def cites(part: DocumentPart) -> bool:
    """Whether the client asked for ``part`` to be cited (Anthropic's words, see module)."""
    citations = part.extra.get("citations")
    return isinstance(citations, dict) and citations.get("enabled") is True


def cited_text(block: dict[str, Any]) -> TextPart:
    """A ``citationsContent`` block as a text part with its citations."""
    content = block.get("content")
    texts = [
        item["text"]
        for item in (content if isinstance(content, list) else ())
        if isinstance(item, dict) and isinstance(item.get("text"), str)
    ]
    raw = block.get("citations")
    citations = [
        cited
        for citation in (raw if isinstance(raw, list) else ())
        if (cited := citation_from_wire(citation)) is not None
    ]
    return TextPart("".join(texts), citations=citations or None)


def citation_from_wire(citation: Any) -> DocumentCitation | None:
    """One Converse ``Citation`` (or stream ``CitationsDelta``); ``None`` when it cites no
    document."""
    if not isinstance(citation, dict) or not isinstance(citation.get("location"), dict):
        return None
    for key, kind in _KINDS.items():
        location = citation["location"].get(key)
        if not isinstance(location, dict):
            continue
        numbers: list[Any] = [location.get(name) for name in ("documentIndex", "start", "end")]
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
            return None
        sources = citation.get("sourceContent")
        quoted = [
            source["text"]
            for source in (sources if isinstance(sources, list) else ())
            if isinstance(source, dict) and isinstance(source.get("text"), str)
        ]
        title = citation.get("title")
        return DocumentCitation(
            kind,
            numbers[0],
            numbers[1],
            numbers[2],
            "".join(quoted),
            title if isinstance(title, str) else None,
        )
    return None
