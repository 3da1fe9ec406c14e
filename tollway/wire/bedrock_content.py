"""Bedrock Converse content blocks ⇄ canonical parts, tool calls and tool results.

A Converse block is a union: an object with one key naming its kind (``text``, ``image``,
``toolUse``, ``toolResult``, ``document``, ``cachePoint``, ``reasoningContent``, ...).
``reasoningContent`` (``reasoningText`` with its ``signature``, or ``redactedContent``, the
base64 text its JSON carries) is a ``ReasoningPart``; reasoning no provider signed is not sent
back (Claude would refuse it). Kinds the gateway does not model are kept as ``OpaquePart``
named by that key. A document (a PDF, or plain text as a ``txt`` file) is a ``document`` block
whose ``name`` Converse requires and restricts (``_document_name``), no two of a request
alike (``named_apart``); with citations on (an
Anthropic client's document ``citations``, which ``crossing`` keeps) it says
``citations: {"enabled": true}``, and the answer's ``citationsContent`` blocks are text parts
with their ``citations`` (``bedrock_citations``). Images travel as base64 ``bytes`` with a
``format`` (``png``, ``jpeg``, ``gif``, ``webp``); Bedrock cannot fetch an image by URL, so
an image URL is a 400 naming the part's ``image_url`` and asking for base64 data. A ``json``
block in a tool result is a ``TextPart`` holding the JSON text (what other formats get) with
the value in its ``extra``.

An Anthropic client's cache hint (``cache_control``, which ``crossing`` keeps in the extras of
what it marks) is a ``cachePoint`` block right after that block, tool result, call or tool:
Bedrock caches the prompt up to each cache point, as Anthropic caches up to a marked block.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import orjson

from tollway.core.errors import InvalidRequest
from tollway.core.types import (
    JSON,
    PDF,
    ContentPart,
    DocumentPart,
    ImagePart,
    Message,
    OpaquePart,
    ReasoningPart,
    TextPart,
    ToolCall,
)
from tollway.wire.bedrock_citations import cited_text, cites
from tollway.wire.crossing import CACHE_HINT
from tollway.wire.fields import json_object, optional, required

_NOT_NAME_CHARACTERS = re.compile(r"[^a-zA-Z0-9\s\-()\[\]]")
_LONGEST_NAME = 200
_IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}
_TOOL_USE_KEYS = ("toolUseId", "name", "input")
_TOOL_RESULT_KEYS = ("toolUseId", "content")


def cache_point(extra: JSON) -> list[dict[str, Any]]:
    """The ``cachePoint`` block for the cache hint in ``extra`` (none without one), its
    ``ttl`` (``5m``, ``1h``) kept; Converse's ``type`` is always ``default``."""
    hint = extra.get(CACHE_HINT)
    if not isinstance(hint, dict):
        return []
    point: dict[str, Any] = {"type": "default"}
    if isinstance(hint.get("ttl"), str):
        point["ttl"] = hint["ttl"]
    return [{"cachePoint": point}]


def _cache_point_after(part: ContentPart) -> list[dict[str, Any]]:
    # A block of Bedrock's own kinds (OpaquePart) is sent as it came: it has no extras.
    return [] if isinstance(part, OpaquePart) else cache_point(part.extra)


def without_hint(extra: JSON) -> JSON:
    """``extra`` without its cache hint, which is a block of its own (``cache_point``)."""
    return {k: v for k, v in extra.items() if k != CACHE_HINT} if CACHE_HINT in extra else extra


def blocks(content: Any, param: str) -> list[dict[str, Any]]:
    """``content`` checked to be an array of objects."""
    if not isinstance(content, list):
        raise InvalidRequest(f"'{param}' must be an array of content blocks", param=param)
    return [json_object(block, f"{param}[{i}]") for i, block in enumerate(content)]


def kind_of(block: dict[str, Any]) -> str:
    """The kind of a union block: its one key (the first, when a block has several)."""
    return next(iter(block), "")


def part_from_wire(block: dict[str, Any], param: str) -> ContentPart:
    """A canonical part from a text, image, json (tool results) or other block."""
    kind = kind_of(block)
    if kind == "text":
        return TextPart(required(block, "text", str, f"{param}.text"))
    if kind == "json":
        return TextPart(orjson.dumps(block["json"]).decode(), extra={"json": block["json"]})
    if kind == "citationsContent" and isinstance(block["citationsContent"], dict):
        return cited_text(block["citationsContent"])
    if kind == "reasoningContent":
        reasoning = _reasoning_from_wire(block["reasoningContent"], f"{param}.reasoningContent")
        if reasoning is not None:
            return reasoning
    image = block.get("image")
    if kind == "image" and isinstance(image, dict) and len(image) == 2:
        source = image.get("source")
        if isinstance(source, dict) and list(source) == ["bytes"]:
            image_format = required(image, "format", str, f"{param}.image.format")
            data = required(source, "bytes", str, f"{param}.image.source.bytes")
            return ImagePart(data=data, media_type=f"image/{image_format}")
    # Images in S3, documents, cache points, reasoning, ...: Bedrock's own, kept as sent.
    return OpaquePart(type=kind, data=block)


def _reasoning_from_wire(raw: Any, param: str) -> ReasoningPart | None:
    """A ``reasoningContent`` union as a part (``None``: a member newer than this code)."""
    union = json_object(raw, param)
    if "redactedContent" in union:
        return ReasoningPart(redacted=required(union, "redactedContent", str, param))
    if "reasoningText" not in union:
        return None
    text = json_object(union["reasoningText"], f"{param}.reasoningText")
    signature = optional(text, "signature", str, f"{param}.reasoningText.signature")
    return ReasoningPart(
        text=required(text, "text", str, f"{param}.reasoningText.text"),
        signature=signature or None,
        extra={k: v for k, v in text.items() if k not in ("text", "signature")},
    )


def user_from_wire(content: Any, param: str) -> list[Message]:
    """Tool results as one ``tool`` message each, then the rest of the turn as a user message."""
    turn = blocks(content, param)
    results = [
        _tool_result_from_wire(block["toolResult"], f"{param}[{i}].toolResult")
        for i, block in enumerate(turn)
        if kind_of(block) == "toolResult"
    ]
    parts = [
        part_from_wire(block, f"{param}[{i}]")
        for i, block in enumerate(turn)
        if kind_of(block) != "toolResult"
    ]
    if results and not parts:
        return results
    return [*results, Message(role="user", content=parts)]


def _tool_result_from_wire(raw: Any, param: str) -> Message:
    result = json_object(raw, param)
    inner = blocks(result.get("content", []), f"{param}.content")
    return Message(
        role="tool",
        content=[part_from_wire(b, f"{param}.content[{i}]") for i, b in enumerate(inner)],
        tool_call_id=required(result, "toolUseId", str, f"{param}.toolUseId"),
        extra={k: v for k, v in result.items() if k not in _TOOL_RESULT_KEYS},
    )


def assistant_from_wire(content: Any, param: str) -> Message:
    """An assistant turn: text and other blocks as content, ``toolUse`` blocks as calls."""
    parts: list[ContentPart] = []
    calls: list[ToolCall] = []
    for index, block in enumerate(blocks(content, param)):
        if kind_of(block) == "toolUse":
            call = _tool_use_from_wire(block["toolUse"], f"{param}[{index}].toolUse")
            call.position = len(parts)  # so the turn's block order survives (assistant_blocks)
            calls.append(call)
        else:
            parts.append(part_from_wire(block, f"{param}[{index}]"))
    return Message(
        role="assistant",
        content=None if calls and not parts else parts,
        tool_calls=calls or None,
    )


def _tool_use_from_wire(raw: Any, param: str) -> ToolCall:
    use = json_object(raw, param)
    arguments = use.get("input")
    if not isinstance(arguments, dict):
        raise InvalidRequest(f"'{param}.input' must be an object", param=f"{param}.input")
    return ToolCall(
        id=required(use, "toolUseId", str, f"{param}.toolUseId"),
        name=required(use, "name", str, f"{param}.name"),
        arguments=orjson.dumps(arguments).decode(),
        extra={k: v for k, v in use.items() if k not in _TOOL_USE_KEYS},
    )


def content_blocks(content: str | list[ContentPart] | None, param: str) -> list[dict[str, Any]]:
    """Canonical content as blocks; blank text (empty or only whitespace) becomes no block:
    Bedrock refuses a text block without a visible character."""
    if content is None or isinstance(content, str):
        return [{"text": content}] if content and not content.isspace() else []
    out: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        if not _blank(part):
            out += [_part_to_wire(part, f"{param}[{index}]"), *_cache_point_after(part)]
    return out


def _blank(part: ContentPart) -> bool:
    if not isinstance(part, TextPart) or "json" in part.extra:
        return False
    return not part.text or part.text.isspace()


def _part_to_wire(part: ContentPart, param: str) -> dict[str, Any]:
    """One block (``param``: the part's path, which a 400 names); an image's ``detail`` has no
    Bedrock counterpart and is dropped."""
    if isinstance(part, TextPart):
        return {"json": part.extra["json"]} if "json" in part.extra else {"text": part.text}
    if isinstance(part, OpaquePart):
        return part.data
    if isinstance(part, ReasoningPart):
        if part.redacted is not None:
            return {"reasoningContent": {"redactedContent": part.redacted}}
        text = {**part.extra, "text": part.text}
        if part.signature is not None:
            text["signature"] = part.signature
        return {"reasoningContent": {"reasoningText": text}}
    if isinstance(part, DocumentPart):
        return _document_to_wire(part)
    if part.url is not None or part.data is None:
        at = f"{param}.image_url"
        raise InvalidRequest(
            f"'{at}' is an image by URL, which cannot be translated for a bedrock deployment: "
            "Converse takes an image only as its bytes, not a URL to fetch; send the image "
            "inline as base64 data",
            param=at,
        )
    media_type = part.media_type or ""
    image_format = _IMAGE_FORMATS.get(media_type.removeprefix("image/"))
    if image_format is None:
        raise InvalidRequest(
            f"images of type {media_type!r} cannot be sent to a bedrock deployment "
            "(png, jpeg, gif or webp)",
            param=param,
        )
    return {"image": {"format": image_format, "source": {"bytes": part.data}}}


def _document_to_wire(part: DocumentPart) -> dict[str, Any]:
    """A ``document`` block: a PDF, or plain text as a ``txt`` file, in base64 ``bytes``."""
    if part.data is not None and part.media_type == PDF:
        document_format, data = "pdf", part.data
    else:
        document_format, data = "txt", base64.b64encode((part.text or "").encode()).decode()
    document: dict[str, Any] = {
        "format": document_format,
        "name": _document_name(part.name, data),
        "source": {"bytes": data},
    }
    if cites(part):
        document["citations"] = {"enabled": True}
    return {"document": document}


def _document_name(name: str | None, data: str) -> str:
    """A document's name as Converse takes it (required; letters, digits, single spaces,
    hyphens, parentheses and square brackets: ``report.pdf`` is ``report pdf``); an unnamed
    one is named by a hash of its data, so documents of other data do not share a name (one
    sent twice does: ``named_apart``)."""
    if name is not None:
        kept = " ".join(_NOT_NAME_CHARACTERS.sub(" ", name).split())[:_LONGEST_NAME]
        if kept:
            return kept
    return "document-" + hashlib.sha256(data.encode()).hexdigest()[:8]


def named_apart(turns: list[dict[str, Any]]) -> None:
    """Each document of ``turns`` (a tool result's too) given a name no other has, in place:
    Converse refuses a request whose messages hold two documents of one name ("Messages can't
    contain duplicate document names"), and clients name theirs freely (two versions of
    ``report.pdf``, ``a.pdf`` and ``a pdf``, the same PDF sent again in a later turn). The
    first keeps its name, the next is ``report pdf (2)``, and so on; names are compared
    regardless of case, which costs nothing where Bedrock would tell them apart."""
    taken: set[str] = set()
    for holder in _document_holders(turns):
        name = str(holder["document"]["name"])
        number = 1
        while name.casefold() in taken:
            number += 1
            suffix = f" ({number})"
            name = holder["document"]["name"][: _LONGEST_NAME - len(suffix)] + suffix
        if number > 1:
            holder["document"] = {**holder["document"], "name": name}
        taken.add(name.casefold())


def _document_holders(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The blocks of ``turns`` holding a ``document``, in order, tool results' own too."""
    holders = []
    for turn in turns:
        for block in turn["content"]:
            result = block.get("toolResult")
            inner = result.get("content", ()) if isinstance(result, dict) else (block,)
            holders += [item for item in inner if isinstance(item.get("document"), dict)]
    return holders


def tool_result_to_wire(message: Message, param: str) -> dict[str, Any]:
    """A ``toolResult`` block from a canonical tool message."""
    if message.tool_call_id is None:
        raise InvalidRequest(
            f"'{param}.tool_call_id' is a required property", param=f"{param}.tool_call_id"
        )
    result = {
        **without_hint(message.extra),
        "toolUseId": message.tool_call_id,
        "content": content_blocks(message.content, f"{param}.content"),
    }
    return {"toolResult": result}


def assistant_blocks(message: Message, param: str) -> list[dict[str, Any]]:
    """An assistant turn as blocks: its content with one ``toolUse`` per call, each where it
    stood in the turn it was parsed from (``ToolCall.position``: an Anthropic or Bedrock turn
    such as [text, toolUse, text] keeps its order), else at the end; blank text is no block."""
    content = message.content
    parts = content if isinstance(content, list) else [TextPart(content)] if content else []
    # Each with its index: a call's in the turn's calls, a part's in its content.
    placed: list[tuple[int, ContentPart | ToolCall]] = list(enumerate(parts))
    for index, call in enumerate(message.tool_calls or ()):
        if call.position is None:
            placed.append((index, call))
        else:
            # Its parts before it, and the calls before it (placed already), come first.
            placed.insert(min(call.position + index, len(placed)), (index, call))
    out: list[dict[str, Any]] = []
    for index, item in placed:
        if isinstance(item, ToolCall):
            arguments = _arguments(item.arguments, f"{param}.tool_calls[{index}]")
            use = {**without_hint(item.extra), "toolUseId": item.id, "name": item.name}
            out += [{"toolUse": {**use, "input": arguments}}, *cache_point(item.extra)]
        elif not _blank(item):
            out += [_part_to_wire(item, f"{param}.content[{index}]"), *_cache_point_after(item)]
    return out


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


def tool_blocks_as_text(turn: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A turn's ``toolUse`` and ``toolResult`` blocks said in text blocks (a result's images
    and documents kept as blocks), for a request that offers no tools: Converse refuses those
    blocks in a request without ``toolConfig``. Other blocks are kept as they are."""
    out: list[dict[str, Any]] = []
    for block in turn:
        kind = kind_of(block)
        if kind == "toolUse":
            use = block["toolUse"]
            arguments = orjson.dumps(use.get("input", {})).decode()
            out.append({"text": f"[call {use['toolUseId']}: {use['name']}({arguments})]"})
        elif kind == "toolResult":
            result = block["toolResult"]
            failed = " (failed)" if result.get("status") == "error" else ""
            out.append({"text": f"[result of call {result['toolUseId']}{failed}]"})
            for inner in result.get("content", ()):
                if kind_of(inner) == "json":
                    out.append({"text": orjson.dumps(inner["json"]).decode()})
                elif not (kind_of(inner) == "text" and not inner["text"].strip()):
                    out.append(inner)
        else:
            out.append(block)
    return out
