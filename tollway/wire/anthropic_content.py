"""Anthropic content blocks ⇄ canonical parts, tool calls and tool results.

Shared by requests (every turn) and responses (the assistant's turn). ``thinking`` and
``redacted_thinking`` blocks are ``ReasoningPart``s; a ``document`` holding a base64 PDF or
plain text, or a PDF by URL, is a ``DocumentPart``; blocks the gateway does not model
(documents by file id or content blocks, server tool results, ...) are kept as
``OpaquePart``.
"""

from __future__ import annotations

from typing import Any

import orjson

from tollway.core.errors import InvalidRequest
from tollway.core.types import (
    PDF,
    PLAIN_TEXT,
    ContentPart,
    DocumentCitation,
    DocumentPart,
    ImagePart,
    Message,
    OpaquePart,
    ReasoningPart,
    TextPart,
    ToolCall,
)
from tollway.wire.crossing import without_parts
from tollway.wire.fields import json_object, optional, required

_THINKING_KEYS = ("type", "thinking", "signature")


def text_from_wire(raw: Any, param: str) -> TextPart:
    """A ``text`` block (anything else is a 400 naming ``param``)."""
    block = json_object(raw, param)
    if block.get("type") != "text":
        raise InvalidRequest(f"'{param}.type' must be 'text'", param=f"{param}.type")
    text = required(block, "text", str, f"{param}.text")
    return TextPart(text, extra={k: v for k, v in block.items() if k not in ("type", "text")})


def user_from_wire(content: Any, param: str, extra: dict[str, Any]) -> list[Message]:
    """Tool results as one ``tool`` message each, then the rest of the turn as a user message."""
    if isinstance(content, str):
        return [Message(role="user", content=content, extra=extra)]
    blocks = _blocks(content, param)
    results = [
        _tool_result_from_wire(block, f"{param}[{i}]")
        for i, block in enumerate(blocks)
        if block.get("type") == "tool_result"
    ]
    parts = [
        _part_from_wire(block, f"{param}[{i}]")
        for i, block in enumerate(blocks)
        if block.get("type") != "tool_result"
    ]
    if results and not parts:
        return results
    return [*results, Message(role="user", content=parts, extra=extra)]


def _blocks(content: Any, param: str) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        raise InvalidRequest(f"'{param}' must be a string or an array of blocks", param=param)
    return [json_object(block, f"{param}[{i}]") for i, block in enumerate(content)]


def _tool_result_from_wire(block: dict[str, Any], param: str) -> Message:
    content = block.get("content")
    if content is not None and not isinstance(content, str):
        blocks = _blocks(content, f"{param}.content")
        content = [_part_from_wire(b, f"{param}.content[{i}]") for i, b in enumerate(blocks)]
    return Message(
        role="tool",
        content=content,
        tool_call_id=required(block, "tool_use_id", str, f"{param}.tool_use_id"),
        extra={k: v for k, v in block.items() if k not in ("type", "tool_use_id", "content")},
    )


def assistant_from_wire(content: Any, param: str) -> Message:
    """An assistant turn from its content: text and other blocks, and ``tool_use`` calls."""
    if isinstance(content, str):
        return Message(role="assistant", content=content)
    parts: list[ContentPart] = []
    calls: list[ToolCall] = []
    for index, block in enumerate(_blocks(content, param)):
        if block.get("type") == "tool_use":
            call = _tool_use_from_wire(block, f"{param}[{index}]")
            call.position = len(parts)  # so the turn's block order survives (assistant_blocks)
            calls.append(call)
        else:
            parts.append(_part_from_wire(block, f"{param}[{index}]"))
    return Message(
        role="assistant",
        content=None if calls and not parts else parts,
        tool_calls=calls or None,
    )


def _tool_use_from_wire(block: dict[str, Any], param: str) -> ToolCall:
    arguments = block.get("input")
    if not isinstance(arguments, dict):
        raise InvalidRequest(f"'{param}.input' must be an object", param=f"{param}.input")
    return ToolCall(
        id=required(block, "id", str, f"{param}.id"),
        name=required(block, "name", str, f"{param}.name"),
        arguments=orjson.dumps(arguments).decode(),
        extra={k: v for k, v in block.items() if k not in ("type", "id", "name", "input")},
    )


def _part_from_wire(raw: Any, param: str) -> ContentPart:
    block = json_object(raw, param)
    kind = required(block, "type", str, f"{param}.type")
    if kind == "text":
        return text_from_wire(block, param)
    if kind == "thinking":
        signature = optional(block, "signature", str, f"{param}.signature")
        return ReasoningPart(
            text=required(block, "thinking", str, f"{param}.thinking"),
            signature=signature or None,  # "": the gateway's, for reasoning no one signed
            extra={k: v for k, v in block.items() if k not in _THINKING_KEYS},
        )
    if kind == "redacted_thinking":
        return ReasoningPart(
            redacted=required(block, "data", str, f"{param}.data"),
            extra={k: v for k, v in block.items() if k not in ("type", "data")},
        )
    source = block.get("source")
    if kind == "image" and isinstance(source, dict) and source.get("type") in ("base64", "url"):
        extra = {k: v for k, v in block.items() if k not in ("type", "source")}
        if source["type"] == "url":
            return ImagePart(url=required(source, "url", str, f"{param}.source.url"), extra=extra)
        return ImagePart(
            data=required(source, "data", str, f"{param}.source.data"),
            media_type=_image_type(source, f"{param}.source.media_type"),
            extra=extra,
        )
    if kind == "document" and isinstance(source, dict):
        document = _document_from_wire(block, source)
        if document is not None:
            return document
    return OpaquePart(type=kind, data=block)


IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
"""The ``media_type`` of a base64 image Anthropic's API takes."""


def _image_type(source: dict[str, Any], param: str) -> str:
    """A base64 image's ``media_type``, one Anthropic's API takes whichever family serves
    (Gemini and OpenAI would take a BMP or an ``image/jpg``, and the client would not learn
    that its request fails on Claude)."""
    media_type = required(source, "media_type", str, param)
    if media_type not in IMAGE_TYPES:
        allowed = ", ".join(f"'{kind}'" for kind in IMAGE_TYPES)
        raise InvalidRequest(f"'{param}' must be one of {allowed}, not {media_type!r}", param=param)
    return media_type


def _document_from_wire(block: dict[str, Any], source: dict[str, Any]) -> DocumentPart | None:
    """A PDF (base64 or by URL) or plain-text ``document`` as a part; ``None`` for other
    sources (a file id, content blocks), kept as sent."""
    kind, media_type, data = source.get("type"), source.get("media_type"), source.get("data")
    title = block.get("title")
    name = title if isinstance(title, str) else None
    # A title that is no text (null) stays in the extras, so the block goes back as it came.
    read = ("type", "source", "title") if name is not None else ("type", "source")
    extra = {k: v for k, v in block.items() if k not in read}
    url = source.get("url")
    if kind == "url" and set(source) == {"type", "url"} and isinstance(url, str):
        return DocumentPart(PDF, url=url, name=name, extra=extra)  # Claude fetches only PDFs
    if set(source) != {"type", "media_type", "data"} or not isinstance(data, str):
        return None
    if kind == "base64" and media_type == PDF:
        return DocumentPart(PDF, data=data, name=name, extra=extra)
    if kind == "text" and media_type == PLAIN_TEXT:
        return DocumentPart(PLAIN_TEXT, text=data, name=name, extra=extra)
    return None


def holds_tool_results(message: dict[str, Any]) -> bool:
    """Whether a wire message is a user turn of tool results (more may join it)."""
    content = message["content"]
    return (
        message["role"] == "user"
        and isinstance(content, list)
        and bool(content)
        and content[0].get("type") == "tool_result"
    )


def tool_result_to_wire(message: Message, param: str) -> dict[str, Any]:
    """A ``tool_result`` block from a canonical tool message."""
    if message.tool_call_id is None:
        raise InvalidRequest(
            f"'{param}.tool_call_id' is a required property", param=f"{param}.tool_call_id"
        )
    out: dict[str, Any] = {
        **message.extra,
        "type": "tool_result",
        "tool_use_id": message.tool_call_id,
    }
    if isinstance(message.content, list):
        out["content"] = content_blocks(message.content)
    elif message.content is not None:
        out["content"] = message.content
    return out


def assistant_content(message: Message, param: str) -> str | list[dict[str, Any]]:
    """An assistant turn's ``content`` for a request: its text as sent, or blocks when it has
    calls or parts; reasoning Claude did not sign (unsigned, or Gemini's) is left out
    (Anthropic would refuse it)."""
    if not message.tool_calls and not isinstance(message.content, list):
        return message.content or ""
    return assistant_blocks(without_parts(message, lambda part: part.signer == "claude"), param)


def assistant_blocks(message: Message, param: str) -> list[dict[str, Any]]:
    """An assistant turn as content blocks: its content with one ``tool_use`` per call, each
    where it stood in the turn it was parsed from (``ToolCall.position``), else at the end."""
    blocks = content_blocks(message.content)
    for index, call in enumerate(message.tool_calls or ()):
        block = {
            **call.extra,
            "type": "tool_use",
            "id": call.id,
            "name": call.name,
            "input": _arguments(call.arguments, f"{param}.tool_calls[{index}]"),
        }
        if call.position is None:
            blocks.append(block)
        else:
            # Its parts before it, and the calls before it (placed already), come first.
            blocks.insert(min(call.position + index, len(blocks)), block)
    return blocks


def _arguments(text: str, call: str) -> dict[str, Any]:
    """A tool call's arguments (JSON text) as the object the API takes; a 400 naming the
    field as a Chat Completions client wrote it, ``<call>.function.arguments``."""
    if not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        param = f"{call}.function.arguments"
        raise InvalidRequest(f"'{param}' must be a JSON object", param=param)
    return value


def content_blocks(content: str | list[ContentPart] | None) -> list[dict[str, Any]]:
    """Canonical content as blocks; empty text becomes no block (Anthropic refuses those)."""
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [_part_to_wire(part) for part in content]


def _part_to_wire(part: ContentPart) -> dict[str, Any]:
    """One content block; an image's ``detail`` has no Anthropic counterpart and is dropped.
    Reasoning no provider signed is a ``thinking`` block with an empty signature."""
    if isinstance(part, TextPart):
        if part.citations:  # another provider's (Bedrock's), read by its codec
            cited = [citation_to_wire(citation) for citation in part.citations]
            return {**part.extra, "type": "text", "text": part.text, "citations": cited}
        return {**part.extra, "type": "text", "text": part.text}
    if isinstance(part, ReasoningPart):
        if part.redacted is not None:
            return {**part.extra, "type": "redacted_thinking", "data": part.redacted}
        signature = part.signature or ""
        return {**part.extra, "type": "thinking", "thinking": part.text, "signature": signature}
    if isinstance(part, ImagePart):
        if part.url is not None:
            source: dict[str, Any] = {"type": "url", "url": part.url}
        else:
            source = {"type": "base64", "media_type": part.media_type, "data": part.data}
        return {**part.extra, "type": "image", "source": source}
    if isinstance(part, DocumentPart):
        return document_to_wire(part)
    return part.data


def document_to_wire(part: DocumentPart) -> dict[str, Any]:
    """A ``document`` block: a PDF by URL or as base64, anything else as plain text."""
    if part.url is not None:
        source: dict[str, Any] = {"type": "url", "url": part.url}
    elif part.data is not None and part.media_type == PDF:
        source = {"type": "base64", "media_type": PDF, "data": part.data}
    else:
        source = {"type": "text", "media_type": PLAIN_TEXT, "data": part.text or ""}
    block: dict[str, Any] = {**part.extra, "type": "document", "source": source}
    if part.name is not None:
        block["title"] = part.name
    return block


_LOCATIONS = {
    "char": ("char_location", "start_char_index", "end_char_index"),
    "page": ("page_location", "start_page_number", "end_page_number"),
    "block": ("content_block_location", "start_block_index", "end_block_index"),
}


def citation_to_wire(citation: DocumentCitation) -> dict[str, Any]:
    """A text block's citation of a document passage (``char_location``, ...)."""
    kind, start, end = _LOCATIONS[citation.kind]
    return {
        "type": kind,
        "cited_text": citation.cited_text,
        "document_index": citation.document_index,
        "document_title": citation.document_title,
        start: citation.start,
        end: citation.end,
    }
