"""Bedrock Converse citations, as Claude on Bedrock answers a document it may cite.

A request holding a plain-text ``document`` (``format: txt``, its ``source.bytes``) with
``citations: {"enabled": true}`` (and answered with no tool call) is answered with the text
around the quote in ``text`` blocks and the quote in a ``citationsContent`` block: its
``content`` (the generated text it supports) and its ``citations``, each with the document's
``title`` (its ``name``), the ``sourceContent`` quoted and the ``location``
(``documentChar``: ``documentIndex``, ``start``, ``end``), as the Converse API reference draws
``CitationsContentBlock``. Streamed, the quoting block's text comes as ``text`` deltas and its
citation as one ``citation`` delta (``CitationsDelta``) before them, in the same content
block.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

BEFORE = "The document says: "
AFTER = " That is all it says."


def cited_blocks(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    """An answer quoting the first plain-text document with citations enabled, if any."""
    documents = [
        block["document"]
        for message in body.get("messages") or ()
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        for block in message["content"]
        if isinstance(block, dict) and isinstance(block.get("document"), dict)
    ]
    for index, document in enumerate(documents):
        citations = document.get("citations")
        if not (isinstance(citations, dict) and citations.get("enabled") is True):
            continue
        text = _plain_text(document)
        if text is None:
            continue
        citation = {
            "title": document.get("name"),
            "sourceContent": [{"text": text}],
            "location": {"documentChar": {"documentIndex": index, "start": 0, "end": len(text)}},
        }
        quote = {"content": [{"text": text}], "citations": [citation]}
        return [{"text": BEFORE}, {"citationsContent": quote}, {"text": AFTER}]
    return None


def _plain_text(document: dict[str, Any]) -> str | None:
    source = document.get("source")
    if document.get("format") != "txt" or not isinstance(source, dict):
        return None
    if isinstance(source.get("text"), str):
        return str(source["text"])
    data = source.get("bytes")
    if not isinstance(data, str):
        return None
    try:
        return base64.b64decode(data, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def block_deltas(block: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``contentBlockDelta`` deltas of one answer block (text, or a quote and its
    citations)."""
    quote = block.get("citationsContent")
    if quote is None:
        return [{"text": block["text"]}]
    # Claude on Bedrock says a quote's citation before its text, as Anthropic's own stream does.
    deltas: list[dict[str, Any]] = [{"citation": citation} for citation in quote["citations"]]
    deltas.extend({"text": part["text"]} for part in quote["content"])
    return deltas
