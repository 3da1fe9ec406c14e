"""Anthropic Messages streams: upstream events to canonical chunks, and chunks to events.

Upstream (``StreamReader``): ``message_start`` gives the role chunk; text deltas become
content; each ``tool_use`` block becomes the tool call numbered by its order among the tool
calls, with id and name on its first fragment and ``partial_json`` as argument fragments
(``{}`` at its ``content_block_stop`` when none had any text: a call without arguments);
``message_delta`` gives the finish reason; ``message_stop`` gives a last, usage-only chunk
with the usage of ``message_start`` and ``message_delta`` combined (each of those two says
what it knows so far in ``usage_so_far``, for a stream cut before ``message_stop``). Blocks
the gateway does not model (thinking, ...) travel in the chunk's ``extra`` so an Anthropic
client gets them back, and so do each text block's start (Anthropic splits text around
citations: every block stays its own), ``message_delta``'s other fields (``container``,
``stop_details``), and the pings after the first (which the client's own first
``content_block_start`` is followed by).

Client (``StreamWriter``): chunks from any upstream become ``message_start``, then per block
``content_block_start`` / ``content_block_delta``s / ``content_block_stop`` (a text block,
then one ``tool_use`` block per tool call, each closed before the next opens), with a
``ping`` after the first ``content_block_start`` as Anthropic sends it, then
``message_delta`` (stop reason, cumulative usage) and ``message_stop``. Tool calls an
OpenAI-format upstream interleaves are sent one block after the other (``held_calls``).
``message_start`` states the input usage an Anthropic upstream gave at its start; for another
family's stream, which says its usage only at its end, the input tokens it counted so far
(Gemini's running ``usageMetadata``), else the gateway's own estimate (``input_estimate``):
older Anthropic SDKs and many tools read the input tokens from ``message_start`` alone, and
the upstream's count follows in ``message_delta``. Another format's quote of a document (a
chunk with ``citations``: Bedrock's) is a text block of its own, its ``citations_delta``s
before its text.

Another format's reasoning (Bedrock's ``reasoningContent``, an OpenAI-compatible server's
``reasoning_content`` / ``reasoning``) becomes ``thinking`` blocks (``thinking_delta``s,
then the ``signature_delta`` of a signed block; ``redacted_thinking`` whole) for a client
that asked for ``thinking``; otherwise it is not shown, and while it lasts a ``ping`` every
``KEEPALIVE_SECONDS`` keeps the connection (and proxies' and SDKs' read timeouts) from
judging the stream dead. A signature alone that comes while a text block is open (Gemini
signs an answer on its last part, streamed after the text) does not cut the text in two: it
is sent as a thinking block of its own, empty but signed so the client can send it back, once
the text block ends. An OpenAI-format upstream's ``refusal`` is the answer's text, and the
stream then ends with ``stop_reason: "refusal"``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from tollway.core.errors import UpstreamProtocolError
from tollway.core.types import (
    JSON,
    ChatChunk,
    ChunkChoice,
    DocumentCitation,
    FinishReason,
    ReasoningDelta,
    ToolCallDelta,
    Usage,
)
from tollway.wire.anthropic_content import citation_to_wire
from tollway.wire.anthropic_response import (
    WIRE_FORMAT,
    finish_from_wire,
    is_error_event,
    stop_reason_to_wire,
    stream_error,
    usage_from_wire,
    usage_to_wire,
)
from tollway.wire.anthropic_search import SearchTracker
from tollway.wire.crossing import (
    anthropic_stop_reason_of,
    chunk_for,
    is_preamble,
    reasoning_of,
    refusal_of,
)
from tollway.wire.held_calls import HeldCall, hold, may_interleave, release

_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
_PING = b'event: ping\ndata: {"type":"ping"}\n\n'
_DELTA_KEYS = ("stop_reason", "stop_sequence")
_OPENAI = "openai"
KEEPALIVE_SECONDS = 2.0
"""While reasoning the client is not shown goes on, at most this long between ``ping``s."""
_TOOL_USE_KEYS = ("type", "id", "name", "input")


class StreamReader:
    """Turns one upstream Messages event stream into canonical chunks, event by event."""

    def __init__(self) -> None:
        self.done = False
        self._id = ""
        self._model = ""
        self._created = int(time.time())
        self._usage: dict[str, Any] = {}
        self._tool_of_block: dict[int, int] = {}
        self._unargued: set[int] = set()
        """Blocks of tool calls no argument has come for yet."""
        self._pings = 0
        self._searches = SearchTracker()

    def feed(self, data: bytes) -> ChatChunk | None:
        """The chunk one event's ``data`` stands for, if any; raises on an ``error`` event."""
        try:
            event = orjson.loads(data)
            if is_error_event(event):
                # Also one without a ``type`` (a proxy's ``{"error": {...}}``): the upstream's
                # words, not a KeyError.
                raise stream_error(event)
            return self._event(event)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("upstream sent an invalid stream event") from None
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise UpstreamProtocolError(f"upstream stream event is malformed: {exc!r}") from None

    def _event(self, event: dict[str, Any]) -> ChatChunk | None:
        kind = event["type"]
        if kind == "message_start":
            message = event["message"]
            self._id, self._model = str(message["id"]), str(message["model"])
            self._usage = dict(message.get("usage") or {})
            first = self._chunk(ChunkChoice(index=0, role="assistant"))
            # What ``message_start`` says of the input, for an Anthropic client's own
            # ``message_start`` (an extra: another format's client never sees it, and the
            # request's usage stays unknown until the stream says it in full).
            first.extra["message_usage"] = dict(self._usage)
            # Input and cache tokens are exact from here: a stream cut later is estimated
            # from them (pricing/metering.py).
            first.usage_so_far = usage_from_wire(self._usage)
            return first
        if kind == "content_block_start":
            block = event["content_block"]
            self._searches.block_started(int(event["index"]), block)
            if block["type"] == "text":
                self._searches.offset += len(block["text"])
            return self._block_start(int(event["index"]), block)
        if kind == "content_block_delta":
            delta = event["delta"]
            self._searches.delta(int(event["index"]), delta)
            if delta["type"] == "text_delta":
                self._searches.offset += len(delta["text"])
            return self._block_delta(int(event["index"]), delta)
        if kind == "message_delta":
            usage = event.get("usage") or {}
            self._usage.update({k: v for k, v in usage.items() if v is not None})
            delta = event.get("delta") or {}
            finish, extra = finish_from_wire(delta.get("stop_reason"))
            stop_sequence = delta.get("stop_sequence")
            # The rest (container, stop_details, ...) is for an Anthropic client's message_delta.
            if rest := {k: v for k, v in delta.items() if k not in _DELTA_KEYS}:
                extra = {**extra, "message_delta": rest}
            chunk = self._chunk(
                ChunkChoice(index=0, finish_reason=finish, stop_sequence=stop_sequence, extra=extra)
            )
            chunk.usage_so_far = usage_from_wire(self._usage)  # cumulative, before message_stop
            return chunk
        if kind == "message_stop":
            self.done = True
            last = ChatChunk(self._id, self._model, self._created, [], wire_format=WIRE_FORMAT)
            last.usage = usage_from_wire(self._usage)
            return last
        if kind == "ping":
            # The first follows the first content_block_start, as the client's own does
            # (StreamWriter); later ones keep the client's connection alive while nothing
            # else comes.
            self._pings += 1
            alive = ChunkChoice(index=0, extra={"ping": True})
            return self._chunk(alive) if self._pings > 1 else None
        if kind == "content_block_stop":
            query, cited = self._searches.block_stopped(int(event["index"]))
            if query is not None or cited:
                # Said apart, for the formats that have words for them (Responses' items).
                said = ChunkChoice(
                    index=0,
                    web_searches=None if query is None else [query],
                    url_citations=cited or None,
                )
                return self._chunk(said)
            return self._block_stop(int(event["index"]))
        return None  # event types newer than this code

    def _block_start(self, index: int, block: dict[str, Any]) -> ChatChunk | None:
        kind = block["type"]
        if kind == "text":
            # Each text block stays its own for an Anthropic client: Anthropic splits an
            # answer's text around its citations, and a citations_delta is its block's.
            text = block["text"]
            start = {**block, "text": ""} if text else block
            choice = ChunkChoice(index=0, content=text or None, extra={"content_block": start})
            return self._chunk(choice)
        if kind != "tool_use":
            return self._chunk(ChunkChoice(index=0, extra={"content_block": block}))
        ordinal = len(self._tool_of_block)
        self._tool_of_block[index] = ordinal
        given = block.get("input")
        if not given:
            self._unargued.add(index)
        call = ToolCallDelta(
            index=ordinal,
            id=str(block["id"]),
            name=str(block["name"]),
            arguments=orjson.dumps(given).decode() if given else "",
        )
        # Its other fields (``caller``: the tool that made the call) for an Anthropic client.
        rest = {k: v for k, v in block.items() if k not in _TOOL_USE_KEYS}
        extra = {"tool_use": rest} if rest else {}
        return self._chunk(ChunkChoice(index=0, tool_calls=[call], extra=extra))

    def _block_delta(self, index: int, delta: dict[str, Any]) -> ChatChunk | None:
        kind = delta["type"]
        if kind == "text_delta":
            return self._chunk(ChunkChoice(index=0, content=str(delta["text"])))
        if kind != "input_json_delta" or index not in self._tool_of_block:
            # Deltas of blocks not modelled (thinking, server tools' input) travel as they are.
            return self._chunk(ChunkChoice(index=0, extra={"delta": delta}))
        fragment = str(delta.get("partial_json") or "")
        if not fragment:
            return None
        self._unargued.discard(index)
        call = ToolCallDelta(index=self._tool_of_block[index], arguments=fragment)
        return self._chunk(ChunkChoice(index=0, tool_calls=[call]))

    def _block_stop(self, index: int) -> ChatChunk | None:
        """A call's empty object as its arguments, when none came: Anthropic streams a call
        without arguments as ``input: {}`` and one empty ``partial_json``, and OpenAI's
        clients parse the arguments as JSON."""
        if index not in self._unargued:
            return None
        self._unargued.discard(index)
        call = ToolCallDelta(index=self._tool_of_block[index], arguments="{}")
        return self._chunk(ChunkChoice(index=0, tool_calls=[call]))

    def _chunk(self, choice: ChunkChoice) -> ChatChunk:
        return ChatChunk(self._id, self._model, self._created, [choice], wire_format=WIRE_FORMAT)


def event(name: str, payload: dict[str, Any]) -> bytes:
    """One server-sent event with its ``event:`` line, as Anthropic's clients require."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class StreamWriter:
    """Turns canonical chunks from any upstream into Anthropic's event sequence;
    ``thinking``: the client asked for thinking, so another format's reasoning is shown;
    ``omitted``: with its text left out (``display: "omitted"``: an OpenAI-compatible
    server's reasoning is one empty, unsigned thinking block, as Claude omits its own);
    ``input_estimate``: the request's input tokens as the gateway counts them, asked only
    for another family's stream that has not said them by its first chunk."""

    def __init__(
        self,
        thinking: bool = False,
        input_estimate: Callable[[], int] | None = None,
        *,
        omitted: bool = False,
    ) -> None:
        self._thinking = thinking
        self._omitted = thinking and omitted
        self._input_estimate = input_estimate
        self._pinged = False
        """The ``ping`` Anthropic sends after the first ``content_block_start`` is sent."""
        self._openai = False
        """The answer is an OpenAI-format upstream's (reasoning and refusal in extras)."""
        self._origin: str | None = None
        """The answer's wire format (whose extras may say its stop reason exactly)."""
        self._refused = False
        self._last_ping = 0.0
        self._started = False
        self._open: int | None = None
        self._open_kind = ""
        self._blocks = 0
        self._block_of_tool: dict[int, int] = {}
        self._interleavable = True
        self._foreign = True
        """The answer is another format's (whose stop reasons say less than Anthropic's)."""
        self._held: dict[int, HeldCall] = {}
        self._signature: str | None = None
        """A signature that came while a text block was open (Gemini signs an answer on its
        last part), sent once that block ends."""
        self._finish: FinishReason | None = None
        self._stop_sequence: str | None = None
        self._stop_extra: dict[str, Any] = {}
        self._usage: Usage | None = None

    def feed(self, chunk: ChatChunk) -> bytes:
        """The events ``chunk`` stands for (``message_start`` first); may be empty."""
        out: list[bytes] = []
        if not self._started:
            if is_preamble(chunk):
                return b""  # message_start takes its id and model from the answer's chunk
            self._started = True
            # Read before chunk_for, which drops another format's tag.
            self._interleavable = may_interleave(chunk.wire_format)
            self._foreign = chunk.wire_format != WIRE_FORMAT
            self._openai = chunk.wire_format == _OPENAI
            self._origin = chunk.wire_format
            plain = chunk_for(chunk, WIRE_FORMAT)
            out.append(self._message_start(plain))
            self._last_ping = time.monotonic()
        else:
            plain = chunk_for(chunk, WIRE_FORMAT)
        if plain.usage is not None:
            self._usage = plain.usage
        for choice, given in zip(plain.choices, chunk.choices, strict=True):
            if choice.index == 0:  # Anthropic has one alternative
                if self._openai and given.extra:
                    self._openai_fields(given.extra, out)
                self._choice(choice, out)
                if given.finish_reason is not None and self._foreign:
                    shared = anthropic_stop_reason_of(given.extra, self._origin)
                    if shared is not None:  # Bedrock's exact words, which Anthropic shares
                        self._stop_extra = {**self._stop_extra, "stop_reason": shared}
        return b"".join(out)

    def finish(self, counted: Usage | None = None) -> bytes:
        """The closing events: the open block's stop, ``message_delta``, ``message_stop``.

        ``counted`` (the gateway's own count) is the usage when no chunk carried any.
        """
        out: list[bytes] = []
        if not self._started:  # the upstream's stream named no answer
            self._started = True
            out.append(self._message_start(ChatChunk("", "", 0, [])))
        self._close(out)
        called = self._foreign and bool(self._block_of_tool)
        finish = self._finish
        if self._refused and finish in (None, "stop"):
            finish = "content_filter"  # Anthropic's "refusal"
        stop_reason = stop_reason_to_wire(finish, self._stop_sequence, self._stop_extra, called)
        delta = {
            **self._stop_extra.get("message_delta", {}),
            "stop_reason": stop_reason,
            "stop_sequence": self._stop_sequence,
        }
        usage = usage_to_wire(self._usage or counted or Usage())
        out.append(
            event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        )
        out.append(_MESSAGE_STOP)
        return b"".join(out)

    def _message_start(self, chunk: ChatChunk) -> bytes:
        usage = chunk.extra.get("message_usage")
        if usage is None:
            usage = usage_to_wire(chunk.usage or self._opening_usage(chunk))
        message: dict[str, Any] = {
            "id": chunk.id,
            "type": "message",
            "role": "assistant",
            "model": chunk.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return event("message_start", {"type": "message_start", "message": message})

    def _opening_usage(self, chunk: ChatChunk) -> Usage:
        """The input usage another family's stream has not yet said in full: what it counted
        so far, else the gateway's estimate (``message_delta`` says the upstream's later)."""
        so_far = chunk.usage_so_far
        if so_far is not None and so_far.input_tokens:
            return Usage(
                input_tokens=so_far.input_tokens,
                cached_input_tokens=so_far.cached_input_tokens,
                cache_write_tokens=so_far.cache_write_tokens,
            )
        if self._input_estimate is None:
            return Usage()
        return Usage(input_tokens=self._input_estimate())

    def _openai_fields(self, extra: JSON, out: list[bytes]) -> None:
        """An OpenAI-format delta's reasoning and refusal (in its extras), said as Anthropic
        says them."""
        reasoning = reasoning_of(extra, _OPENAI)
        if reasoning is not None and self._omitted:
            # Shown as Claude's omitted thinking: the block, without its text (and unsigned).
            self._thinking_block(out)
            self._keep_alive(out)
        elif reasoning is not None:
            self._reasoning(ReasoningDelta(reasoning), out)
        refusal = refusal_of(extra, _OPENAI)
        if refusal is not None:
            self._refused = True
            self._text(refusal, out)

    def _keep_alive(self, out: list[bytes]) -> None:
        """A ``ping`` while reasoning the client is not shown goes on (at most one every
        ``KEEPALIVE_SECONDS``)."""
        now = time.monotonic()
        if now - self._last_ping >= KEEPALIVE_SECONDS:
            self._last_ping = now
            out.append(_PING)

    def _reasoning(self, delta: ReasoningDelta, out: list[bytes]) -> None:
        if not self._thinking:
            self._keep_alive(out)
            return
        if delta.redacted is not None:
            block = {"type": "redacted_thinking", "data": delta.redacted}
            self._open_block("redacted", block, out)
        if delta.text:
            self._thinking_block(out)
            out.append(self._delta({"type": "thinking_delta", "thinking": delta.text}))
        if delta.signature and self._open_kind == "text" and not delta.text:
            # Gemini's signature on an answer's last part: a block of its own after the text,
            # which a thinking block opened now would cut in two.
            self._signature = delta.signature
        elif delta.signature:
            self._thinking_block(out)
            out.append(self._delta({"type": "signature_delta", "signature": delta.signature}))
            self._open_kind = "signed"  # its signature ends it: more reasoning is a new block

    def _thinking_block(self, out: list[bytes]) -> None:
        if self._open_kind != "thinking":
            block = {"type": "thinking", "thinking": "", "signature": ""}
            self._open_block("thinking", block, out)

    def _text(self, text: str, out: list[bytes]) -> None:
        if self._open_kind != "text":
            self._open_block("text", {"type": "text", "text": ""}, out)
        out.append(self._delta({"type": "text_delta", "text": text}))

    def _quote(self, text: str, citations: list[DocumentCitation], out: list[bytes]) -> None:
        """Quoted text as a text block of its own, its citations first, as Anthropic streams
        it (another format's citations come whole with their text: ``ChunkChoice``)."""
        self._open_block("quote", {"type": "text", "text": ""}, out)
        for citation in citations:
            out.append(
                self._delta({"type": "citations_delta", "citation": citation_to_wire(citation)})
            )
        if text:
            out.append(self._delta({"type": "text_delta", "text": text}))
        self._close(out)

    def _choice(self, choice: ChunkChoice, out: list[bytes]) -> None:
        if "ping" in choice.extra:
            out.append(_PING)
        if choice.reasoning is not None:
            self._reasoning(choice.reasoning, out)
        if "content_block" in choice.extra:
            block = choice.extra["content_block"]
            self._open_block("text" if block["type"] == "text" else "other", block, out)
        if "delta" in choice.extra and self._open is not None:
            out.append(self._delta(choice.extra["delta"]))
        if choice.citations:
            self._quote(choice.content or "", choice.citations, out)
        elif choice.content:
            self._text(choice.content, out)
        for call in choice.tool_calls or ():
            self._tool_delta(call, out, choice.extra.get("tool_use"))
        if choice.finish_reason is not None:
            self._finish = choice.finish_reason
            self._stop_sequence = choice.stop_sequence
            self._stop_extra = choice.extra

    def _tool_delta(
        self, call: ToolCallDelta, out: list[bytes], fields: dict[str, Any] | None = None
    ) -> None:
        block = self._block_of_tool.get(call.index)
        if block is None:
            if call.index in self._held or (self._open_kind == "tool" and self._interleavable):
                # Another call is being streamed and may not be complete: this one waits.
                hold(self._held, call)
                return
            self._open_tool(call.index, call.id, call.name, out, fields)
        elif block != self._open:
            # Its block was closed when other content followed it, and blocks cannot reopen.
            raise UpstreamProtocolError("upstream sent more of a tool call after other content")
        if call.arguments:
            out.append(self._delta({"type": "input_json_delta", "partial_json": call.arguments}))

    def _open_tool(
        self,
        index: int,
        call_id: str | None,
        name: str | None,
        out: list[bytes],
        fields: dict[str, Any] | None = None,
    ) -> None:
        tool_use = {
            **(fields or {}),
            "type": "tool_use",
            "id": call_id or f"toolu_{len(self._block_of_tool)}",
            "name": name or "",
            "input": {},
        }
        self._block_of_tool[index] = self._open_block("tool", tool_use, out)

    def _release_held(self, out: list[bytes]) -> None:
        """Each held tool call as a whole block, in index order."""
        for call in release(self._held):
            self._open_tool(call.index, call.id, call.name, out)
            if call.fragments:
                delta = {"type": "input_json_delta", "partial_json": call.arguments}
                out.append(self._delta(delta))
            self._close(out)

    def _open_block(self, kind: str, block: dict[str, Any], out: list[bytes]) -> int:
        self._close(out)
        index = self._blocks
        self._blocks += 1
        self._open, self._open_kind = index, kind
        start = {"type": "content_block_start", "index": index, "content_block": block}
        out.append(event("content_block_start", start))
        if not self._pinged:
            # Where Anthropic's own streams send their first ping.
            self._pinged = True
            out.append(_PING)
        return index

    def _delta(self, delta: dict[str, Any]) -> bytes:
        payload = {"type": "content_block_delta", "index": self._open, "delta": delta}
        return event("content_block_delta", payload)

    def _close(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(
                event("content_block_stop", {"type": "content_block_stop", "index": self._open})
            )
            self._open, self._open_kind = None, ""
            if self._signature is not None:
                signature, self._signature = self._signature, None
                self._thinking_block(out)
                out.append(self._delta({"type": "signature_delta", "signature": signature}))
                self._close(out)
            if self._held:  # the open call has ended, so the calls held behind it can go
                self._release_held(out)
