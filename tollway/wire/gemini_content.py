"""Gemini parts ⇄ canonical parts, tool calls and tool results; the call ids Gemini lacks.

Gemini function calls carry no id the gateway can rely on, and a ``functionResponse`` names
the function, not the call. So every call of an answer gets the id ``call_<key>_<n>_<name>``:
``key`` names the answer (``answer_key``: eight letters from a hash of its ``responseId``, and
of the candidate's index for each candidate after the first, so the same answer, streamed or
not, always gets the same ids, and no two answers, nor two candidates of one (``n``), share
one: Anthropic's API refuses a conversation with a repeated ``tool_use`` id, OpenAI's gives
every call an id of its own, and clients pair results with calls by id), ``n`` counts the
answer's calls from 0, and the name is left out
when the id would be longer than OpenAI takes (40). A model turn of a Gemini request has no
answer to name, so its calls are ``call_<n>_<name>``. A tool result finds its function again
by looking up the assistant call with that id earlier in the conversation (``ToolNames``),
or, when the client trimmed that turn, from the id itself (when it holds the name).

Thoughts: a ``thought: true`` text part (a thought summary, sent when ``includeThoughts``) is
a ``ReasoningPart``; a ``thoughtSignature`` on a part (the first function call of a step, or
the last part of an answer) is a ``ReasoningPart`` right before that part whose ``signature``
is the Gemini signature behind ``GEMINI_SIGNATURE_PREFIX`` (joined to the summary just before
it, if any). So an Anthropic client sees it as a signed ``thinking`` block before the call,
and gives it back where it stood; a model turn sent to Gemini puts each Gemini signature back
on the part that follows it (``assistant_parts``), and other reasoning (Claude's, unsigned)
is not sent.

A tool result is a ``functionResponse``: its text the ``response``, its images and PDFs the
``parts`` (Gemini 3's multimodal function responses; ``function_response_to_wire``).

Gemini 3 models refuse a replayed ``functionCall`` without the ``thoughtSignature`` they gave
it. A client that did not keep the reasoning (another API's, or one that did not ask for
thinking) has lost it, so calls that come from another format without one carry Google's
documented placeholder (``FOREIGN_THOUGHT_SIGNATURE``) on the first call of each model turn,
as Google advises for history the model did not write.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

import orjson

from tollway.core.errors import InvalidRequest
from tollway.core.types import (
    GEMINI_SIGNATURE_PREFIX,
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
from tollway.wire.fields import json_object, required

FOREIGN_THOUGHT_SIGNATURE = "skip_thought_signature_validator"
"""Google's placeholder signature for function calls the model did not produce itself."""

_SYNTHETIC_ID = re.compile(r"call_(?:[a-z]{8}_)?\d+_(?P<name>.+)")
_LONGEST_ID = 40
"""OpenAI's limit on a tool call id (Bedrock's is 64): a conversation goes on elsewhere."""


def answer_key(response_id: str, candidate: int = 0) -> str:
    """Eight letters naming one answer in its calls' ids (letters, so never read as the
    call's number): from a hash of its ``responseId`` and, past the first, the index of its
    ``candidate`` (each of ``n`` candidates makes calls of its own), or random when it has
    no ``responseId``."""
    named = f"{response_id}#{candidate}" if candidate else response_id
    digest = hashlib.sha256(named.encode()).digest() if response_id else None
    raw = digest or secrets.token_bytes(8)
    return "".join(chr(ord("a") + byte % 26) for byte in raw[:8])


def call_id(ordinal: int, name: str, answer: str = "") -> str:
    """The canonical id of the ``ordinal``-th function call of one model turn; ``answer``:
    the key of the answer it came in (``answer_key``), none for a request's model turn. An
    answer's id leaves out a name that would make it longer than ``_LONGEST_ID``."""
    if not answer:
        return f"call_{ordinal}_{name}"
    named = f"call_{answer}_{ordinal}_{name}"
    return named if len(named) <= _LONGEST_ID else f"call_{answer}_{ordinal}"


class ToolNames:
    """Function names by call id, as the assistant turns of a conversation declare them."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def learn(self, message: Message) -> None:
        """Remember the calls of an assistant turn (a later turn reusing an id wins)."""
        for call in message.tool_calls or ():
            self._names[call.id] = call.name

    def name_of(self, tool_call_id: str | None, param: str) -> str:
        """The function a tool result answers; a 400 naming ``param`` when none is known."""
        if tool_call_id is not None:
            name = self._names.get(tool_call_id)
            if name is not None:
                return name
            synthetic = _SYNTHETIC_ID.fullmatch(tool_call_id)
            if synthetic is not None:
                return synthetic["name"]
        raise InvalidRequest(
            f"'{param}.tool_call_id' matches no tool call of an earlier assistant message",
            param=f"{param}.tool_call_id",
        )


def parts_from_wire(raw: Any, param: str) -> list[dict[str, Any]]:
    """A content's ``parts``, each checked to be an object."""
    if not isinstance(raw, list):
        raise InvalidRequest(f"'{param}' must be an array of parts", param=param)
    return [json_object(part, f"{param}[{i}]") for i, part in enumerate(raw)]


def part_from_wire(part: dict[str, Any], param: str) -> ContentPart:
    """A text, image or other part of a request turn (thoughts and media kept as sent)."""
    if "text" in part and not part.get("thought"):
        text = required(part, "text", str, f"{param}.text")
        return TextPart(text, extra={k: v for k, v in part.items() if k != "text"})
    for key, source in (("inlineData", "data"), ("fileData", "fileUri")):
        media = part.get(key)
        if isinstance(media, dict) and str(media.get("mimeType", "")).startswith("image/"):
            value = required(media, source, str, f"{param}.{key}.{source}")
            extra = {k: v for k, v in part.items() if k != key}
            if key == "inlineData":
                return ImagePart(data=value, media_type=str(media["mimeType"]), extra=extra)
            return ImagePart(url=value, media_type=str(media["mimeType"]), extra=extra)
    kind = "thought" if part.get("thought") else next(iter(part), "empty")
    return OpaquePart(type=kind, data=part)


def function_call_from_wire(
    part: dict[str, Any], ordinal: int, param: str, answer: str = ""
) -> ToolCall:
    """A ``functionCall`` part as a tool call with a synthesized id (``answer``: the key of
    the answer it came in)."""
    call = json_object(part["functionCall"], f"{param}.functionCall")
    name = required(call, "name", str, f"{param}.functionCall.name")
    args = call.get("args")
    if args is not None and not isinstance(args, dict):
        raise InvalidRequest(
            f"'{param}.functionCall.args' must be an object", param=f"{param}.functionCall.args"
        )
    extra: dict[str, Any] = {k: v for k, v in part.items() if k != "functionCall"}
    if rest := {k: v for k, v in call.items() if k not in ("name", "args")}:
        extra["functionCall"] = rest
    return ToolCall(
        id=call_id(ordinal, name, answer),
        name=name,
        arguments=orjson.dumps(args or {}).decode(),
        extra=extra,
    )


def function_response_from_wire(part: dict[str, Any], tool_call_id: str, param: str) -> Message:
    """A ``functionResponse`` part as a tool message whose content is the response's JSON."""
    result = json_object(part["functionResponse"], f"{param}.functionResponse")
    required(result, "name", str, f"{param}.functionResponse.name")
    response = result.get("response")
    if not isinstance(response, dict):
        raise InvalidRequest(
            f"'{param}.functionResponse.response' must be an object",
            param=f"{param}.functionResponse.response",
        )
    extra: dict[str, Any] = {k: v for k, v in part.items() if k != "functionResponse"}
    if rest := {k: v for k, v in result.items() if k not in ("name", "response")}:
        extra["functionResponse"] = rest
    return Message(
        role="tool",
        content=orjson.dumps(response).decode(),
        tool_call_id=tool_call_id,
        extra=extra,
    )


def content_parts(
    content: str | list[ContentPart] | None, param: str = "messages"
) -> list[dict[str, Any]]:
    """Canonical content (at ``param``, for errors) as Gemini parts; empty text is no part
    (Google refuses an empty text part: "empty text parameter"), unless it carries more (a
    thought signature)."""
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    return [
        _part_to_wire(part, f"{param}[{index}]")
        for index, part in enumerate(content)
        # Another provider's reasoning means nothing to Gemini (its thoughts are its own).
        if not isinstance(part, ReasoningPart)
        and not (isinstance(part, TextPart) and not part.text and not part.extra)
    ]


def _part_to_wire(
    part: TextPart | ImagePart | DocumentPart | OpaquePart, param: str
) -> dict[str, Any]:
    """One part; an image's ``detail`` and a document's name have no Gemini counterpart and
    are dropped. A PDF is ``inlineData``; a plain-text document is its text."""
    if isinstance(part, TextPart):
        return {**part.extra, "text": part.text}
    if isinstance(part, OpaquePart):
        return part.data
    if isinstance(part, DocumentPart):
        if part.data is not None and part.media_type == PDF:
            return {**part.extra, "inlineData": {"mimeType": PDF, "data": part.data}}
        return {**part.extra, "text": part.text or ""}
    if part.url is not None and not part.url.startswith("data:"):
        media_type = part.media_type or _media_type(part.url, param)
        return {**part.extra, "fileData": {"fileUri": part.url, "mimeType": media_type}}
    if part.url is not None:
        media_type, base64, data = part.url[5:].partition(";base64,")
        if not base64:
            raise InvalidRequest(
                f"'{param}': an image's data: URL must hold base64 data (data:<type>;base64,...)",
                param=param,
            )
    else:
        media_type, data = part.media_type or "", part.data or ""
    return {**part.extra, "inlineData": {"mimeType": media_type, "data": data}}


def _media_type(url: str, param: str) -> str:
    """The media type an image URL's path names by its extension (a query or fragment does
    not hide it); Gemini requires ``fileData.mimeType``, so none is a 400 naming ``param``."""
    media_type = mimetypes.guess_type(urlsplit(url).path)[0]
    if media_type is None:
        raise InvalidRequest(
            f"'{param}': Gemini needs the media type of an image given by URL, and this URL's "
            "path has no extension that tells it; send the image as a base64 data: URL, or by "
            "a URL whose path ends in its extension (.png, .jpg, .webp, ...)",
            param=param,
        )
    return media_type


def answer_from_wire(
    parts: list[dict[str, Any]], param: str, answer: str = ""
) -> tuple[str | list[ContentPart], list[ToolCall]]:
    """An answer's parts as content and calls: the text alone when no part is a thought or
    carries a signature (the usual answer), else the parts in order with reasoning parts
    for the thoughts and signatures (see above) and each call's place among them
    (``answer``: the answer's key, for its calls' ids)."""
    reasoned = any(part.get("thought") or "thoughtSignature" in part for part in parts)
    content: list[ContentPart] = []
    calls: list[ToolCall] = []
    for index, part in enumerate(parts):
        signature = part.get("thoughtSignature") if reasoned else None
        if isinstance(signature, str) and signature:
            part = {k: v for k, v in part.items() if k != "thoughtSignature"}
            _sign(content, signature_from_wire(signature))
        if "functionCall" in part:
            call = function_call_from_wire(part, len(calls), f"{param}[{index}]", answer)
            call.position = len(content) if reasoned else None
            calls.append(call)
        elif isinstance(part.get("text"), str) and part.get("thought"):
            _think(content, part["text"])
        elif isinstance(part.get("text"), str) and part["text"]:
            content.append(TextPart(part["text"]))
    if not reasoned:
        return "".join(p.text for p in content if isinstance(p, TextPart)), calls
    return content, calls


def _sign(content: list[ContentPart], signature: str) -> None:
    """A signature for the part that follows, joined to the summary just before, if any."""
    last = content[-1] if content else None
    if isinstance(last, ReasoningPart) and last.signature is None:
        last.signature = signature
    else:
        content.append(ReasoningPart(signature=signature))


def _think(content: list[ContentPart], text: str) -> None:
    last = content[-1] if content else None
    if isinstance(last, ReasoningPart) and last.signature is None:
        last.text += text
    else:
        content.append(ReasoningPart(text))


def signature_from_wire(signature: str) -> str:
    """A ``thoughtSignature`` as a canonical reasoning signature."""
    return GEMINI_SIGNATURE_PREFIX + signature


def gemini_signature(part: ContentPart) -> str | None:
    """The ``thoughtSignature`` a part carries (a reasoning part signed by Gemini), if any."""
    if isinstance(part, ReasoningPart) and part.signer == "gemini" and part.signature:
        return part.signature[len(GEMINI_SIGNATURE_PREFIX) :]
    return None


def assistant_parts(
    message: Message, param: str, *, foreign: bool, thoughts: bool = False
) -> list[dict[str, Any]]:
    """A model turn's parts: its content with its function calls where they stood
    (``ToolCall.position``), each Gemini signature on the part after it (see above), and
    (``thoughts``: in an answer) the thought summaries as ``thought`` parts."""
    content = message.content
    calls = function_calls_to_wire(message.tool_calls or [], param, foreign=False)
    if not isinstance(content, list):
        items: list[ContentPart | dict[str, Any]] = []
        if content:
            items.append(TextPart(content))
        items.extend(calls)
    else:
        items = list(content)
        for index, (call, part) in enumerate(zip(message.tool_calls or (), calls, strict=True)):
            at = len(items) if call.position is None else min(call.position + index, len(items))
            items.insert(at, part)
    parts: list[dict[str, Any]] = []
    signature: str | None = None
    for index, item in enumerate(items):
        if isinstance(item, ReasoningPart):
            signature = gemini_signature(item) or signature
            if thoughts and item.text:
                parts.append({"text": item.text, "thought": True})
            continue
        if isinstance(item, dict):
            part = item
        elif isinstance(item, TextPart) and not item.text and not item.extra and not signature:
            continue  # Google refuses an empty text part
        else:
            part = _part_to_wire(item, f"{param}.content[{index}]")
        if signature is not None:
            part = {**part, "thoughtSignature": signature}
            signature = None
        parts.append(part)
    if signature is not None and parts and "thoughtSignature" not in parts[-1]:
        # Signed after its last part (a stream's closing empty part): the last part was.
        parts[-1] = {**parts[-1], "thoughtSignature": signature}
    first_call = next((part for part in parts if "functionCall" in part), None)
    if foreign and first_call is not None:
        first_call.setdefault("thoughtSignature", FOREIGN_THOUGHT_SIGNATURE)
    return parts


def function_calls_to_wire(
    calls: list[ToolCall], param: str, *, foreign: bool
) -> list[dict[str, Any]]:
    """``functionCall`` parts; the first of a foreign turn gets the placeholder signature."""
    parts = []
    for index, call in enumerate(calls):
        part: dict[str, Any] = {k: v for k, v in call.extra.items() if k != "functionCall"}
        args = arguments_object(call.arguments, f"{param}.tool_calls[{index}].function.arguments")
        part["functionCall"] = {**call.extra.get("functionCall", {}), "name": call.name}
        part["functionCall"]["args"] = args
        if foreign and index == 0:
            part.setdefault("thoughtSignature", FOREIGN_THOUGHT_SIGNATURE)
        parts.append(part)
    return parts


def function_response_to_wire(
    message: Message, name: str, param: str, *, result_uris: bool = True
) -> dict[str, Any]:
    """A ``functionResponse`` part: the result's text as its ``response`` (a JSON object as
    is, other text as ``output``), and its images and PDFs as its ``parts`` (Gemini 3's
    multimodal function responses; ``param``: the message's path, for errors;
    ``result_uris``: whether the API takes media by URI there, see ``_result_content``)."""
    content = message.content
    media: list[dict[str, Any]] = []
    if isinstance(content, list):
        text, media = _result_content(content, f"{param}.content", result_uris)
    else:
        text = content or ""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    response = value if isinstance(value, dict) else {"output": text}
    result = {**message.extra.get("functionResponse", {}), "name": name, "response": response}
    if media:
        result["parts"] = media
    part = {k: v for k, v in message.extra.items() if k != "functionResponse"}
    part["functionResponse"] = result
    return part


def _result_content(
    content: list[ContentPart], param: str, result_uris: bool
) -> tuple[str, list[dict[str, Any]]]:
    """A tool result's text (a plain-text document's too, as in a user turn) and its
    images and PDFs as ``FunctionResponsePart``s: ``inlineData``, or (an image URL)
    ``fileData``, which only Vertex AI's ``FunctionResponsePart`` has (the Gemini API's holds
    inline data only, so there a URL is a 400 naming the part). A part's other fields (a
    client's hints) have no place in a ``FunctionResponsePart``, which takes nothing else;
    a part of any other kind is a 400 naming it. Gemini takes the result as one string:
    several text parts are one a line, not run together (``["a", "b"]`` is not ``"ab"``)."""
    texts: list[str] = []
    media: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        at = f"{param}[{index}]"
        if isinstance(part, TextPart):
            texts.append(part.text)
            continue
        if not isinstance(part, (ImagePart, DocumentPart)):
            raise InvalidRequest(
                f"'{at}': a tool result can hold only text, images and PDFs for Gemini models",
                param=at,
            )
        wire = _part_to_wire(part, at)
        if "inlineData" in wire:
            media.append({"inlineData": wire["inlineData"]})
        elif "fileData" not in wire:
            texts.append(wire["text"])  # a plain-text document
        elif result_uris:
            media.append({"fileData": wire["fileData"]})
        else:
            raise InvalidRequest(
                f"'{at}': the Gemini API takes an image in a tool result only as base64 data "
                "(its function responses hold no file URIs); send it as a data: URL, or serve "
                "the model from a vertex_ai deployment, which takes image URLs there",
                param=at,
            )
    return "\n".join(texts), media


def arguments_object(text: str, param: str) -> dict[str, Any]:
    """Tool-call arguments (JSON text) as the object ``args`` needs; a 400 naming ``param``."""
    if not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{param}' must be a JSON object", param=param)
    return value
