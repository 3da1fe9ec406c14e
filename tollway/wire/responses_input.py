"""The ``input`` of a Responses API request: its items as canonical messages.

Message items (a string or content parts: text, images by URL or data URL, files sent inline
as ``file_data``) become messages, ``function_call`` items join the assistant turn before them
as tool calls, ``function_call_output`` items become tool messages (their ``output`` text, or
text, image and file parts: Claude reads them all, an OpenAI chat deployment's codec refuses
what is not text); a reasoning item that carries Claude's signed thinking
(``wire/responses_reasoning.py``) starts the assistant turn after it, one that carries
Gemini's thought signatures (``wire/responses_thought_signatures.py``) joins the assistant
turn it follows or starts the one after it, each signature put before the part it was on once
the turn is read, and other reasoning items are dropped. An item only a Responses upstream
can read (a built-in tool's ``web_search_call``, ``mcp_call``, ...; an ``item_reference``
to an item the upstream stored; any type newer than this parser) has no canonical form: it is
named
(``ResponsesOnly``) for the router instead; a ``web_search_call`` also lets through the
families that search themselves, which are sent the conversation without it.
Images and files stored on OpenAI (``file_id``) are read by OpenAI alone (no family is sent a
file it would have to fetch from OpenAI's storage): the first such part is named
(``ResponsesOnly``) as such an item is. A file by ``file_url`` is a document by URL
(``DocumentPart.url``), which OpenAI's Responses API and Claude on Anthropic's API fetch
(``FETCHES_FILES``: Claude reads PDFs so); it is named too, for the router to send it to
those alone (Bedrock, Gemini and Chat Completions fetch no file by URL).
Where each message came from is noted (``Origins``), so that an error a later step words in
Chat Completions terms (``messages[2].content``) can name the client's own field
(``wire/responses_paths.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

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
    ResponsesOnly,
    Role,
    TextPart,
    ToolCall,
)
from tollway.wire.fields import json_object, optional, required
from tollway.wire.responses_reasoning import unseal
from tollway.wire.responses_thought_signatures import marked, placed
from tollway.wire.responses_thought_signatures import unseal as unseal_signatures
from tollway.wire.responses_web_search import TRANSLATED_FOR

KEEPS_NONE = (
    "the gateway keeps no response state: elsewhere, send the whole conversation as 'input'"
)
"""Why a field or item that continues state stored at the upstream needs a Responses upstream."""
_ROLES = frozenset({"user", "assistant", "system", "developer"})
_TEXT_PARTS = frozenset({"input_text", "output_text"})
FETCHES_FILES = frozenset({"anthropic"})
"""The provider families besides OpenAI's Responses API that fetch a file by URL: Anthropic's
API (a PDF, as a ``document`` with a ``url`` source)."""
_BY_URL = (
    "by 'file_url', which OpenAI's Responses API and Claude on Anthropic's API fetch (a PDF) "
    "and Chat Completions, bedrock and gemini deployments cannot (there, send it inline as "
    "'file_data')"
)


@dataclass(slots=True)
class Origin:
    """Where one canonical message came from in a Responses request."""

    path: str
    """The field or item: ``instructions``, ``input`` (a string) or ``input[3]``."""
    content: str | None = None
    """The item's field its content came from (``content``, a tool result's ``output``);
    ``None`` when the content is the field at ``path`` itself, or the item has none."""
    calls: list[str] = field(default_factory=list)
    """The ``function_call`` items that are its tool calls, in order."""


Origins = list[Origin]
"""The origin of each canonical message, by its index."""


def messages_from_input(
    raw: Any,
    instructions: str | None,
    origins: Origins | None = None,
    *,
    stored: bool = False,
    templated: bool = False,
) -> tuple[list[Message], ResponsesOnly | None]:
    """The messages of ``input``, and its first item only a Responses upstream can read;
    where each message came from is appended to ``origins``. ``stored``: the request
    continues state the upstream stored (``previous_response_id``), whose calls a
    ``function_call_output`` may answer; ``templated``: a stored prompt template is the
    prompt, so ``input`` may be absent."""
    origins = [] if origins is None else origins
    messages = [Message(role="system", content=instructions)] if instructions else []
    if instructions:
        origins.append(Origin("instructions"))
    if isinstance(raw, str):
        messages.append(Message(role="user", content=raw))
        origins.append(Origin("input"))
        return messages, None
    if raw is None and templated:
        return messages, None
    if raw is None:
        raise InvalidRequest("'input' is a required property", param="input")
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest(
            "'input' must be a string or a non-empty array of items", param="input"
        )
    first: ResponsesOnly | None = None
    called: set[str] | None = None if stored else set()
    for index, item in enumerate(raw):
        param = f"input[{index}]"
        fields = json_object(item, param)
        own = _add_item(messages, fields, param, origins)
        if called is not None:
            called = _check_answers(called, fields, param, own)
        first = narrowest(first, own)
    messages[:] = [placed(message) for message in messages]
    return messages, first


def narrowest(*found: ResponsesOnly | None) -> ResponsesOnly | None:
    """The first field that the fewest other families translate (none: a Responses upstream
    alone), which leaves the fewest deployments able to serve the request (``None``: none
    found)."""
    given = [only for only in found if only is not None]
    return min(given, key=lambda only: len(only.translated_for), default=None)


def _check_answers(
    called: set[str], item: JSON, param: str, own: ResponsesOnly | None
) -> set[str] | None:
    """The call ids of the ``function_call`` items so far, ``item``'s added; a
    ``function_call_output`` that answers none is refused as OpenAI refuses it (Claude and
    Bedrock deployments were sent it, and one answered as if no call were missing). After an
    item the upstream reads alone (an ``item_reference``), the calls are no longer all known:
    ``None``."""
    if own is not None and not own.translated_for:
        return None
    kind = item.get("type")
    if kind == "function_call":
        called.add(item["call_id"])
    elif kind == "function_call_output" and item["call_id"] not in called:
        raise InvalidRequest(
            f"No tool call found for function call output with call_id {item['call_id']} "
            f"('{param}.call_id').",
            param=f"{param}.call_id",
        )
    return called


def _add_item(
    messages: list[Message], item: JSON, param: str, origins: Origins
) -> ResponsesOnly | None:
    """Adds ``item`` to ``messages`` (and its origin to ``origins``); an item only a
    Responses upstream can read is named instead (it has no canonical form)."""
    kind = item.get("type", "message" if "role" in item else None)
    if kind == "message":
        message, own = _message_from_wire(item, param)
        last = messages[-1] if messages else None
        if message.role == "assistant" and last is not None and _only_reasoning(last):
            # The reasoning items before it are its turn's thinking, which comes first.
            assert isinstance(last.content, list)
            if message.content:
                last.content.append(TextPart(cast(str, message.content)))
            origins[-1] = Origin(param)
        else:
            messages.append(message)
            origins.append(Origin(param, "content"))
        return own
    elif kind == "function_call":
        _add_function_call(messages, item, param, origins)
    elif kind == "function_call_output":
        output, own = _function_output_from_wire(item, param)
        messages.append(output)
        origins.append(Origin(param, "output"))
        return own
    elif kind == "reasoning":
        _add_reasoning(messages, item, param, origins)
    elif kind == "item_reference":
        why = f"'{param}' is an item_reference to an item stored by the upstream"
        return ResponsesOnly(param, f"{why} ({KEEPS_NONE})")
    elif kind == "web_search_call":
        # An earlier search, sent back with the answer it led to: the answer's message says
        # what it found, so a family that searches itself (TRANSLATED_FOR) is sent the
        # conversation without it, as nothing it could read (its results are OpenAI's).
        why = f"'{param}.type' 'web_search_call' is an item of OpenAI's Responses API"
        return ResponsesOnly(
            f"{param}.type", f"{why}, not a message or a function call", TRANSLATED_FOR
        )
    elif isinstance(kind, str):
        # The items of built-in tools (web_search_call, mcp_call, ...) and of kinds newer
        # than this parser: a Responses upstream reads them, or answers its own 400.
        why = f"'{param}.type' {kind!r} is an item of OpenAI's Responses API"
        return ResponsesOnly(f"{param}.type", f"{why}, not a message or a function call")
    elif kind is None:
        raise InvalidRequest(
            f"'{param}.type' None is not supported; send message, function_call and "
            "function_call_output items",
            param=f"{param}.type",
        )
    return None


def _message_from_wire(item: JSON, param: str) -> tuple[Message, ResponsesOnly | None]:
    """A message item, and its first part only a Responses upstream can read."""
    role = required(item, "role", str, f"{param}.role")
    if role not in _ROLES:
        raise InvalidRequest(
            f"'{param}.role' must be one of {', '.join(sorted(_ROLES))}, not {role!r}",
            param=f"{param}.role",
        )
    content = item.get("content")
    if isinstance(content, str):
        return Message(role=cast(Role, role), content=content), None
    if not isinstance(content, list):
        raise InvalidRequest(
            f"'{param}.content' must be a string or an array of content parts",
            param=f"{param}.content",
        )
    parts, own = _parts_from_wire(content, f"{param}.content")
    if role == "assistant":
        # Chat Completions takes assistant history as text; an image there has no meaning.
        if own is not None or not all(isinstance(part, TextPart) for part in parts):
            raise InvalidRequest(
                f"'{param}.content' of an assistant message may only hold text",
                param=f"{param}.content",
            )
        text = "".join(cast(TextPart, p).text for p in parts)
        return Message(role="assistant", content=text), None
    return Message(role=cast(Role, role), content=parts), own


def _parts_from_wire(raw: list[Any], param: str) -> tuple[list[ContentPart], ResponsesOnly | None]:
    """Content parts, without those only a Responses upstream can read (the narrowest named):
    such a request goes to no other deployment, so its canonical form only needs the rest. A
    file by URL is both: a part for Claude, named for the router."""
    parts: list[ContentPart] = []
    first: ResponsesOnly | None = None
    for index, raw_part in enumerate(raw):
        part_param = f"{param}[{index}]"
        part = _part_from_wire(raw_part, part_param)
        if isinstance(part, ResponsesOnly):
            first = narrowest(first, part)
            continue
        if isinstance(part, DocumentPart) and part.url is not None:
            why = f"'{part_param}' is a file {_BY_URL}"
            first = narrowest(first, ResponsesOnly(part_param, why, FETCHES_FILES))
        parts.append(part)
    return parts, first


def _part_from_wire(raw: Any, param: str) -> ContentPart | ResponsesOnly:
    part = json_object(raw, param)
    kind = required(part, "type", str, f"{param}.type")
    if kind in _TEXT_PARTS:
        return TextPart(required(part, "text", str, f"{param}.text"))
    if kind == "refusal":
        return TextPart(required(part, "refusal", str, f"{param}.refusal"))
    if kind == "input_image":
        return _image_from_wire(part, param)
    if kind == "input_file":
        return _file_from_wire(part, param)
    raise InvalidRequest(
        f"'{param}.type' {kind!r} is not supported; send input_text, input_image, input_file "
        "or (in assistant messages) output_text parts",
        param=f"{param}.type",
    )


def _image_from_wire(part: JSON, param: str) -> ImagePart | ResponsesOnly:
    if part.get("file_id") is not None:
        why = (
            f"'{param}.file_id' is an image stored on OpenAI, which only OpenAI reads "
            "(elsewhere, send it as 'image_url': a URL or a data: URL)"
        )
        return ResponsesOnly(f"{param}.file_id", why)
    url = required(part, "image_url", str, f"{param}.image_url")
    detail = optional(part, "detail", str, f"{param}.detail")
    if url.startswith("data:") and ";base64," in url:
        media_type, _, data = url[5:].partition(";base64,")
        return ImagePart(data=data, media_type=media_type, detail=detail)
    return ImagePart(url=url, detail=detail)


def _file_from_wire(part: JSON, param: str) -> DocumentPart | OpaquePart | ResponsesOnly:
    data = optional(part, "file_data", str, f"{param}.file_data")
    filename = optional(part, "filename", str, f"{param}.filename")
    if data is None:
        if part.get("file_id") is not None:
            why = (
                f"'{param}' is a file stored on OpenAI, which only OpenAI reads (elsewhere, "
                "send it inline as 'file_data')"
            )
            return ResponsesOnly(param, why)
        url = optional(part, "file_url", str, f"{param}.file_url")
        if url is not None:  # a PDF as far as Claude goes: it fetches no other kind of file
            return DocumentPart(PDF, url=url, name=filename)
        raise InvalidRequest(
            f"'{param}' is a file without its content: send it as 'file_data', 'file_id' or "
            "'file_url'",
            param=param,
        )
    pdf = "data:" + PDF + ";base64,"
    if data.startswith(pdf):  # a PDF: any family reads it (a document)
        return DocumentPart(PDF, data=data[len(pdf) :], name=filename)
    file: JSON = {"file_data": data}
    if filename is not None:
        file["filename"] = filename
    # In Chat Completions terms, which is what the request is tagged with.
    return OpaquePart(type="file", data={"type": "file", "file": file})


def _add_function_call(messages: list[Message], item: JSON, param: str, origins: Origins) -> None:
    call = ToolCall(
        id=required(item, "call_id", str, f"{param}.call_id"),
        name=required(item, "name", str, f"{param}.name"),
        arguments=optional(item, "arguments", str, f"{param}.arguments") or "",
    )
    last = messages[-1] if messages else None
    # Calls right after an assistant turn belong to it, as Chat Completions expects. Added in
    # place: copying the list for each call made a long run of calls quadratic, a request
    # that held the event loop for minutes.
    if last is not None and last.role == "assistant":
        if last.tool_calls is None:
            last.tool_calls = []
        last.tool_calls.append(call)
        origins[-1].calls.append(param)
    else:
        messages.append(Message(role="assistant", content=None, tool_calls=[call]))
        origins.append(Origin(param, calls=[param]))


def _add_reasoning(messages: list[Message], item: JSON, param: str, origins: Origins) -> None:
    """Claude's signed thinking a reasoning item carries, at the start of the assistant turn
    it precedes; Gemini's signatures, in the assistant turn it follows (streamed, a text's
    signature comes after it) or the one it starts; any other reasoning is dropped (no
    provider could verify it)."""
    sealed, where = item.get("encrypted_content"), f"{param}.encrypted_content"
    signed = unseal_signatures(sealed, where)
    last = messages[-1] if messages else None
    if signed and last is not None and last.role == "assistant":
        content = last.content
        kept = list(content) if isinstance(content, list) else [TextPart(content or "")]
        last.content = [part for part in kept if not _empty(part)] + [marked(s) for s in signed]
        return
    parts = [marked(each) for each in signed] or unseal(sealed, where)
    if not parts:
        return
    if last is not None and _only_reasoning(last):
        assert isinstance(last.content, list)
        last.content.extend(parts)
    else:
        messages.append(Message(role="assistant", content=list[ContentPart](parts)))
        origins.append(Origin(param))


def _empty(part: ContentPart) -> bool:
    return isinstance(part, TextPart) and not part.text


def _only_reasoning(message: Message) -> bool:
    """Whether ``message`` is an assistant turn of reasoning items alone (so far)."""
    content = message.content
    return (
        message.role == "assistant"
        and not message.tool_calls
        and isinstance(content, list)
        and all(isinstance(part, ReasoningPart) for part in content)
    )


def _function_output_from_wire(item: JSON, param: str) -> tuple[Message, ResponsesOnly | None]:
    """A tool result, and its first part only a Responses upstream can read."""
    call_id = required(item, "call_id", str, f"{param}.call_id")
    output = item.get("output")
    if isinstance(output, list):
        # Text, images and files, as in a message: Claude reads them all in a tool result;
        # a family that takes only text there refuses the part by name (its codec).
        parts, own = _parts_from_wire(output, f"{param}.output")
        return Message(role="tool", content=parts, tool_call_id=call_id), own
    if not isinstance(output, str):
        raise InvalidRequest(
            f"'{param}.output' must be a string or an array of input_text, input_image and "
            "input_file parts",
            param=f"{param}.output",
        )
    return Message(role="tool", content=output, tool_call_id=call_id), None
