"""Bedrock ConverseStream events to canonical chunks.

Each event-stream message (decoded by ``providers/eventstream.py``) has headers naming its
``:message-type`` and a JSON payload. ``event`` messages, by ``:event-type``:
``messageStart`` gives the role chunk; text deltas become content (text blocks have no
start event); each ``toolUse`` block becomes the tool call numbered by its order among the
tool calls, with id and name from its ``contentBlockStart`` and its ``input`` fragments as
argument fragments (``{}`` at its ``contentBlockStop`` when all were empty: a call without
arguments); ``reasoningContent`` deltas become reasoning: its text as it comes, its
``signature`` and ``redactedContent`` (which may come in pieces, and are whole only together)
at the block's ``contentBlockStop``; ``messageStop`` gives the finish reason and Claude's
``stop_sequence`` when asked for (a ``stopReason`` saying the output is unusable,
``malformed_tool_use``, raises that failure instead); a block with a ``citation`` delta (a
quote of a document) is held to its ``contentBlockStop`` and told as one chunk, its text with
its ``citations`` (``bedrock_citations``); ``metadata`` gives the usage-only chunk that ends
the stream. Bedrock sends ``metadata`` last, but one that comes before
``messageStop`` is held (``held``) until the finish has been told: the answer is complete only
once both came (``done``), and a stream without ``messageStop`` is a failure whatever came.
``exception`` messages (``:exception-type``, e.g. ``throttlingException``) and ``error``
messages (``:error-code``) raise the failure they report. Payloads carry a padding field ``p``
and maybe fields newer than this code; both are ignored.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from typing import Any

import orjson

from tollway.core.errors import UpstreamProtocolError
from tollway.core.types import (
    ChatChunk,
    ChunkChoice,
    DocumentCitation,
    ReasoningDelta,
    ToolCallDelta,
)
from tollway.wire.bedrock_citations import citation_from_wire
from tollway.wire.bedrock_response import (
    WIRE_FORMAT,
    exception_error,
    finish_from_wire,
    new_id,
    stop_sequence_from_wire,
    unusable,
    usage_from_wire,
)


class StreamReader:
    """Turns one ConverseStream's messages into canonical chunks, message by message."""

    def __init__(self, model: str) -> None:
        self.stopped = False
        """``messageStop`` came: the answer is complete."""
        self.done = False
        """``messageStop`` and ``metadata`` both came: nothing more is read."""
        self._held: ChatChunk | None = None
        """The usage-only chunk of a ``metadata`` that came before ``messageStop``."""
        self._id = new_id()
        self._model = model
        self._created = int(time.time())
        self._tool_of_block: dict[int, int] = {}
        self._unargued: set[int] = set()
        """Blocks of tool calls no argument fragment has come for yet."""
        self._signatures: dict[int, list[str]] = {}
        self._redacted: dict[int, list[str]] = {}
        self._quotes: dict[int, tuple[list[str], list[DocumentCitation]]] = {}
        """Blocks a ``citation`` came for: their text so far and their citations."""

    def feed(self, headers: Mapping[str, Any], payload: bytes) -> ChatChunk | None:
        """The chunk one message stands for, if any; raises on exception and error messages."""
        kind = headers.get(":message-type")
        if kind == "exception":
            raise exception_error(str(headers.get(":exception-type")), _message(payload))
        if kind == "error":
            message = str(headers.get(":error-message") or "unknown error")
            raise exception_error(str(headers.get(":error-code")), message)
        try:
            return self._event(str(headers.get(":event-type")), orjson.loads(payload))
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("upstream sent an invalid stream event") from None
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise UpstreamProtocolError(f"upstream stream event is malformed: {exc!r}") from None

    def _event(self, kind: str, event: dict[str, Any]) -> ChatChunk | None:
        if kind == "messageStart":
            return self._chunk(ChunkChoice(index=0, role="assistant"))
        if kind == "contentBlockStart":
            return self._block_start(int(event["contentBlockIndex"]), event["start"])
        if kind == "contentBlockDelta":
            return self._block_delta(int(event["contentBlockIndex"]), event["delta"])
        if kind == "contentBlockStop":
            return self._block_stop(int(event["contentBlockIndex"]))
        if kind == "messageStop":
            failure = unusable(event["stopReason"])
            if failure is not None:
                raise failure
            self.stopped = True
            self.done = self._held is not None
            finish, extra = finish_from_wire(event["stopReason"])
            stop_sequence = stop_sequence_from_wire(event.get("additionalModelResponseFields"))
            choice = ChunkChoice(
                index=0, finish_reason=finish, stop_sequence=stop_sequence, extra=extra
            )
            return self._chunk(choice)
        if kind == "metadata":
            last = ChatChunk(self._id, self._model, self._created, [], wire_format=WIRE_FORMAT)
            last.usage = usage_from_wire(event["usage"])
            if not self.stopped:
                self._held = last  # the finish comes first, as clients expect usage last
                return None
            self.done = True
            return last
        return None  # event types newer than this code

    def held(self) -> ChatChunk | None:
        """The usage-only chunk of a ``metadata`` that came before ``messageStop``, once."""
        held, self._held = self._held, None
        return held

    def _block_start(self, index: int, start: dict[str, Any]) -> ChatChunk | None:
        use = start.get("toolUse")
        if use is None:
            return None  # tool results and images of server tools: nothing to tell
        ordinal = len(self._tool_of_block)
        self._tool_of_block[index] = ordinal
        self._unargued.add(index)
        call = ToolCallDelta(index=ordinal, id=str(use["toolUseId"]), name=str(use["name"]))
        return self._chunk(ChunkChoice(index=0, tool_calls=[call]))

    def _block_delta(self, index: int, delta: dict[str, Any]) -> ChatChunk | None:
        if "citation" in delta:
            quote = self._quotes.setdefault(index, ([], []))
            citation = citation_from_wire(delta["citation"])
            if citation is not None:
                quote[1].append(citation)
            return None
        if "text" in delta:
            text = str(delta["text"])
            if index in self._quotes:
                self._quotes[index][0].append(text)
                return None
            return self._chunk(ChunkChoice(index=0, content=text)) if text else None
        use = delta.get("toolUse")
        if use is None:
            reasoning = delta.get("reasoningContent")
            return None if reasoning is None else self._reasoning(index, reasoning)
        fragment = str(use.get("input") or "")
        if not fragment:
            return None
        self._unargued.discard(index)
        call = ToolCallDelta(index=self._tool_of_block[index], arguments=fragment)
        return self._chunk(ChunkChoice(index=0, tool_calls=[call]))

    def _reasoning(self, index: int, delta: dict[str, Any]) -> ChatChunk | None:
        if "signature" in delta:
            self._signatures.setdefault(index, []).append(str(delta["signature"]))
        if "redactedContent" in delta:
            self._redacted.setdefault(index, []).append(str(delta["redactedContent"]))
        text = delta.get("text")
        if not text:
            return None
        return self._chunk(ChunkChoice(index=0, reasoning=ReasoningDelta(text=str(text))))

    def _block_stop(self, index: int) -> ChatChunk | None:
        """A reasoning block's signature or encrypted reasoning, whole at its end; a call's
        empty object as its arguments, when none came (Bedrock streams a call without
        arguments as one empty fragment, and OpenAI's clients parse them as JSON)."""
        quote = self._quotes.pop(index, None)
        if quote is not None:
            text, citations = "".join(quote[0]), quote[1] or None
            return self._chunk(ChunkChoice(index=0, content=text or None, citations=citations))
        if index in self._unargued:
            self._unargued.discard(index)
            call = ToolCallDelta(index=self._tool_of_block[index], arguments="{}")
            return self._chunk(ChunkChoice(index=0, tool_calls=[call]))
        signature = self._signatures.pop(index, None)
        redacted = self._redacted.pop(index, None)
        if signature is None and redacted is None:
            return None
        delta = ReasoningDelta(
            signature="".join(signature) if signature else None,
            redacted=None if redacted is None else _joined_base64(redacted),
        )
        return self._chunk(ChunkChoice(index=0, reasoning=delta))

    def _chunk(self, choice: ChunkChoice) -> ChatChunk:
        return ChatChunk(self._id, self._model, self._created, [choice], wire_format=WIRE_FORMAT)


def _joined_base64(pieces: list[str]) -> str:
    """Binary data sent in pieces, each base64 as JSON carries a blob, as one base64 text."""
    if len(pieces) == 1:
        return pieces[0]
    try:
        return base64.b64encode(b"".join(base64.b64decode(p) for p in pieces)).decode()
    except (binascii.Error, ValueError):
        raise UpstreamProtocolError("upstream sent redacted reasoning that is not base64") from None


def _message(payload: bytes) -> str:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload.decode("utf-8", "replace")[:500]
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(body)[:500]
