"""Canonical chunks as the Responses API's typed event stream (``stream: true``).

The events, each with ``type`` and a ``sequence_number`` counting from 0:
``response.created`` and ``response.in_progress`` (status ``in_progress``, no output), then
per output item, one at a time as the real API sends them:

- text: ``response.output_item.added`` (a ``message``), ``response.content_part.added``,
  ``response.output_text.delta``..., ``response.output_text.done``,
  ``response.content_part.done``, ``response.output_item.done`` (an OpenAI-format chunk's log
  probabilities, when asked, in each delta's ``logprobs``, and all of them in the done events);
- an OpenAI upstream's refusal: the same with a ``refusal`` part and
  ``response.refusal.delta``... / ``response.refusal.done``;
- reasoning (an OpenAI-compatible server's ``reasoning_content`` / ``reasoning``, Claude's
  thinking, Gemini's thought summaries, Bedrock's reasoning text): a ``reasoning`` item the
  same way, with a ``reasoning_text`` part and ``response.reasoning_text.delta``... /
  ``response.reasoning_text.done``, so a long reasoning phase streams as it goes (the
  Responses API has no keep-alive event: its stream is kept alive by the reasoning it shows);
  when the client asked for a summary (``reasoning.summary``), the text is the item's summary
  instead, as OpenAI's reasoning models stream it: ``response.output_item.added``,
  ``response.reasoning_summary_part.added``, ``response.reasoning_summary_text.delta``...,
  ``response.reasoning_summary_text.done``, ``response.reasoning_summary_part.done``,
  ``response.output_item.done`` (one ``summary_text`` part, ``summary_index`` 0); Claude's
  signed thinking is the done item's ``encrypted_content`` (``responses_reasoning``);
- Gemini's thought signatures (``responses_thought_signatures``): one that signs the part
  that follows (a call, the text) is sealed in the reasoning item open before that part, or,
  none being open, in a reasoning item of its own (``response.output_item.added``,
  ``response.output_item.done``) just before the part; the text's, which comes once the text
  has streamed, in one just after the message; one left at the end, in one at the end;
- a web search another family ran (Claude's, Gemini's grounding): ``response.output_item.added``
  (a ``web_search_call``), ``response.web_search_call.in_progress``, ``.searching``,
  ``.completed``, ``response.output_item.done``; a web source the text cites is
  ``response.output_text.annotation.added`` (a ``url_citation``) once the cited text is sent.
  Claude tells its searches before the text; Gemini tells its queries when the text has
  streamed, often on its last object: those searches are items after the message (closed
  once its citations are told), as the stream cannot go back;
- each tool call: ``response.output_item.added`` (a ``function_call``),
  ``response.function_call_arguments.delta``..., ``response.function_call_arguments.done``,
  ``response.output_item.done``; calls an OpenAI-format upstream interleaves are sent one
  item after the other (``held_calls``);

and last ``response.completed`` (or ``response.incomplete`` after a ``length`` finish, its last
item, text or call, being ``incomplete`` too) with the whole response, output and usage
included. A failure after the first byte is an ``error`` event and ``response.failed`` (the
items completed so far and the error in the response), and the stream ends there. Frames
are ``event: <type>\\ndata: <json>\\n\\n``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import MappingProxyType

import orjson

from tollway.core.errors import GatewayError, UpstreamProtocolError
from tollway.core.types import (
    JSON,
    ChatChunk,
    FinishReason,
    ReasoningDelta,
    ReasoningPart,
    ToolCallDelta,
    Usage,
)
from tollway.wire.crossing import is_preamble, reasoning_of, refusal_of
from tollway.wire.held_calls import HeldCall, hold, may_interleave, release
from tollway.wire.responses_reasoning import carried, seal, signed_delta
from tollway.wire.responses_response import (
    asks_summary,
    function_call_item,
    logprobs_of,
    message_item,
    new_id,
    output_text,
    reasoning_id,
    reasoning_item,
    reasoning_text,
    refusal_part,
    response_object,
    status_for,
    summary_text,
    url_citation,
    web_search_item,
)
from tollway.wire.responses_thought_signatures import CALL, END, TEXT, Signed, is_geminis
from tollway.wire.responses_thought_signatures import seal as seal_signatures

_TEXT, _REFUSAL, _REASONING = "output_text", "refusal", "reasoning_text"
_SUMMARY = "reasoning_summary_text"
"""The reasoning as its summary, for a client that asked for one."""
_OF_REASONING = (_REASONING, _SUMMARY)


@dataclass(frozen=True, slots=True)
class _PartEvents:
    """The events that open, extend and close one kind of part, and the field that places it."""

    added: str
    delta: str
    done: str
    part_done: str
    index: str


_CONTENT_EVENTS = {
    kind: _PartEvents(
        "response.content_part.added",
        f"response.{kind}.delta",
        f"response.{kind}.done",
        "response.content_part.done",
        "content_index",
    )
    for kind in (_TEXT, _REFUSAL, _REASONING)
}
_EVENTS = MappingProxyType(
    {
        **_CONTENT_EVENTS,
        _SUMMARY: _PartEvents(
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "summary_index",
        ),
    }
)


@dataclass(slots=True)
class _OpenItem:
    """The output item being streamed: its place, its opening shape, what it has so far."""

    output_index: int
    item: JSON
    part: str | None = None
    """A message's one content part, ``output_text`` or ``refusal``, or a reasoning item's,
    ``reasoning_text`` (or its one summary part); ``None``: a function call."""
    pieces: list[str] = field(default_factory=list)
    signed: list[ReasoningPart] = field(default_factory=list)
    """A reasoning item's blocks of Claude's signed thinking, to seal in it."""
    signed_upto: int = 0
    """How many of ``pieces`` the blocks in ``signed`` hold."""
    gemini: list[Signed] = field(default_factory=list)
    """A reasoning item's Gemini signatures, to seal in it."""
    logprobs: list[JSON] = field(default_factory=list)
    """An ``output_text`` part's log probabilities so far (when asked)."""
    annotations: list[JSON] = field(default_factory=list)
    """An ``output_text`` part's annotations so far (the web sources its text cites)."""


class StreamWriter:
    """Turns the canonical chunks of one answer into the Responses event stream."""

    def __init__(self, echo: JSON) -> None:
        self._echo = echo
        self._reasoning_part = _SUMMARY if asks_summary(echo) else _REASONING
        self._id = new_id("resp")
        self._sequence = 0
        self._model = ""
        self._created_at = 0
        self._started = False
        self._output: list[JSON] = []
        self._open: _OpenItem | None = None
        self._item_of_tool: dict[int, int] = {}
        self._interleavable = True
        self._held: dict[int, HeldCall] = {}
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None
        self._answered = False
        """A message or function call item was opened (reasoning alone is no answer)."""
        self._unplaced: list[str] = []
        """Gemini signatures of the part that follows, which has not begun."""
        self._text_signed: list[str] = []
        """Gemini signatures of the open message's text, for an item after it."""

    @property
    def usage_seen(self) -> bool:
        """Whether a chunk carried usage (the upstream reported it)."""
        return self._usage is not None

    def usage_from(self, usage: Usage) -> None:
        """Report ``usage`` at the end (the gateway's own count of an upstream's silence)."""
        self._usage = usage

    def feed(self, chunk: ChatChunk) -> bytes:
        """The events ``chunk`` stands for (``response.created`` first); may be empty."""
        out: list[bytes] = []
        if not self._started:
            if is_preamble(chunk):
                return b""  # the response takes its model from the answer's first chunk
            self._interleavable = may_interleave(chunk.wire_format)
            self._start(chunk.model, chunk.created, out)
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0:  # the Responses API has one alternative
                continue
            reasoning = reasoning_of(choice.extra, chunk.wire_format)
            if reasoning is None and choice.reasoning is not None:
                reasoning = choice.reasoning.text or None
            if reasoning is not None:
                self._text(reasoning, self._reasoning_part, out)
            signs = signed_delta(choice, chunk.wire_format)
            if signs is not None:
                self._sign(signs, out, calls=bool(choice.tool_calls))
            # A search before the answer's text, or told with or after it (Gemini's grounding):
            # then after the text and its citations, which need the message still open.
            searches = choice.web_searches or ()
            texting = self._open is not None and self._open.part == _TEXT
            for query in () if texting else searches:
                self._web_search(query, out)
            if choice.content:
                logprobs = logprobs_of(choice.choice_extra, chunk.wire_format, choice.logprobs)
                self._text(choice.content, _TEXT, out, logprobs)
            for citation in choice.url_citations or ():
                self._annotate(url_citation(citation), out)
            for query in searches if texting else ():
                self._web_search(query, out)
            refusal = refusal_of(choice.extra, chunk.wire_format)
            if refusal is not None:
                self._text(refusal, _REFUSAL, out)
            for call in choice.tool_calls or ():
                self._tool_call(call, out)
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason
        return b"".join(out)

    def finish(self) -> bytes:
        """The closing events: the open item's, then ``response.completed`` / ``.incomplete``."""
        out: list[bytes] = []
        if not self._started:
            self._start("", 0, out)
        if not self._answered:
            self._place(TEXT, None, out)
            self._close(out, "completed")  # the reasoning, if any, before it
            self._open_message(_TEXT, out)  # an empty answer is still one (empty) message
        status, incomplete = status_for(self._finish)
        self._close(out, status)
        if self._unplaced:  # signed after the answer's last part
            signed = [Signed(signature, END) for signature in self._unplaced]
            self._unplaced = []
            self._signatures_item(signed, out)
        snapshot = self._snapshot(status, self._output, incomplete)
        out.append(self._event(f"response.{status}", {"response": snapshot}))
        return b"".join(out)

    def error(self, exc: GatewayError) -> bytes:
        """The events that end a stream which failed after its first byte: ``error``, then
        ``response.failed`` with what was generated so far and the error, so a client that
        waits for the final response learns it failed instead of seeing the stream stop."""
        out: list[bytes] = []
        if not self._started:
            self._start("", 0, out)
        code = exc.code or exc.openai_type
        out.append(self._event("error", {"code": code, "message": exc.message, "param": exc.param}))
        # Only the items that were complete: the one cut off is not closed as if it were.
        snapshot = self._snapshot("failed", self._output, None)
        snapshot["error"] = {"code": _failed_code(exc.status), "message": exc.message}
        out.append(self._event("response.failed", {"response": snapshot}))
        return b"".join(out)

    def _start(self, model: str, created: int, out: list[bytes]) -> None:
        self._started = True
        self._model = model
        self._created_at = created or int(time.time())
        snapshot = self._snapshot("in_progress", [], None)
        out.append(self._event("response.created", {"response": snapshot}))
        out.append(self._event("response.in_progress", {"response": snapshot}))

    def _snapshot(self, status: str, output: list[JSON], incomplete: JSON | None) -> JSON:
        usage = self._usage if status != "in_progress" else None
        return response_object(
            self._id,
            self._model,
            self._created_at,
            self._echo,
            status=status,
            output=output,
            usage=usage,
            incomplete_details=incomplete,
        )

    def _text(
        self, delta: str, part: str, out: list[bytes], logprobs: list[JSON] | None = None
    ) -> None:
        """A piece of the answer's text or of its refusal, each a message's one part, or of
        its reasoning, a reasoning item's."""
        if self._open is None or self._open.part != part:
            if part == _TEXT:
                self._place(TEXT, None, out)
            self._close(out, "completed")
            self._open_message(part, out)
        assert self._open is not None
        self._open.pieces.append(delta)
        events = _EVENTS[part]
        fields = {**self._where(self._open), events.index: 0, "delta": delta}
        if part == _TEXT:
            fields["logprobs"] = logprobs or []
            self._open.logprobs += fields["logprobs"]
        out.append(self._event(events.delta, fields))

    def _web_search(self, query: str, out: list[bytes]) -> None:
        """A search another family ran (Claude's, Gemini's: results only it reads): a whole
        ``web_search_call`` item, its stages one after the other, as OpenAI streams one."""
        self._close(out, "completed")
        opened = self._open_item(web_search_item(new_id("ws"), query, "in_progress"), out)
        self._open = None
        where = self._where(opened)
        for stage in ("in_progress", "searching", "completed"):
            out.append(self._event(f"response.web_search_call.{stage}", dict(where)))
        done = web_search_item(opened.item["id"], query, "completed")
        self._output.append(done)
        item_done = {"output_index": opened.output_index, "item": done}
        out.append(self._event("response.output_item.done", item_done))

    def _annotate(self, annotation: JSON, out: list[bytes]) -> None:
        """An annotation of the answer's text (a web source it cites); its indexes count in
        the whole text, which is one ``output_text`` part."""
        opened = self._open
        if opened is None or opened.part != _TEXT:
            return  # the cited text is in no open part: nothing to place it in
        fields = {
            **self._where(opened),
            "content_index": 0,
            "annotation_index": len(opened.annotations),
            "annotation": annotation,
        }
        opened.annotations.append(annotation)
        out.append(self._event("response.output_text.annotation.added", fields))

    def _sign(self, delta: ReasoningDelta, out: list[bytes], *, calls: bool) -> None:
        """Claude's signature on the reasoning text so far, or its encrypted thinking: a
        block the reasoning item carries back (``wire/responses_reasoning.py``); Gemini's
        signature of a part of its answer (``calls``: the chunk brings calls, the first of
        which it signs; else, the message open, its text; else the part that follows)."""
        if is_geminis(delta.signature):
            assert delta.signature is not None
            texting = not calls and self._open is not None and self._open.part == _TEXT
            (self._text_signed if texting else self._unplaced).append(delta.signature)
            return
        block = ReasoningPart(signature=delta.signature, redacted=delta.redacted)
        if not carried([block]):
            return
        opened = self._open
        if opened is None or opened.part not in _OF_REASONING:
            if delta.redacted is None:
                return  # a signature with no reasoning text before it signs nothing shown
            self._close(out, "completed")
            self._open_message(self._reasoning_part, out)
            opened = self._open
            assert opened is not None
        if delta.redacted is None:
            block.text = "".join(opened.pieces[opened.signed_upto :])
            opened.signed_upto = len(opened.pieces)
        opened.signed.append(block)

    def _place(self, part: str, call_id: str | None, out: list[bytes]) -> None:
        """The Gemini signatures waiting for the part about to begin (``part``: a call, with
        its id, or the text), sealed in the reasoning item open before it, else in an item of
        their own."""
        if not self._unplaced:
            return
        signed = [Signed(signature, part, call_id) for signature in self._unplaced]
        self._unplaced = []
        opened = self._open
        if opened is not None and opened.part in _OF_REASONING:
            opened.gemini += signed
            return
        self._close(out, "completed")
        self._signatures_item(signed, out)

    def _signatures_item(self, signed: list[Signed], out: list[bytes]) -> None:
        """A whole reasoning item that carries ``signed`` alone: no text to stream."""
        item_id = reasoning_id()
        added = reasoning_item(item_id, [], "in_progress", summarised=True)
        opened = self._open_item(added, out)
        self._open = None
        done = reasoning_item(item_id, [], "completed", summarised=True)
        done["encrypted_content"] = seal_signatures(signed)
        self._output.append(done)
        item_done = {"output_index": opened.output_index, "item": done}
        out.append(self._event("response.output_item.done", item_done))

    def _open_message(self, part: str, out: list[bytes]) -> None:
        if part in _OF_REASONING:
            summarised = part == _SUMMARY
            empty = reasoning_item(reasoning_id(), [], "in_progress", summarised=summarised)
            opened = self._open_item(empty, out)
        else:
            self._answered = True
            opened = self._open_item(message_item(new_id("msg"), [], "in_progress"), out)
        opened.part = part
        events = _EVENTS[part]
        added = {**self._where(opened), events.index: 0, "part": _part(part, "")}
        out.append(self._event(events.added, added))

    def _tool_call(self, call: ToolCallDelta, out: list[bytes]) -> None:
        index = self._item_of_tool.get(call.index)
        if index is None:
            opened = self._open
            calling = opened is not None and opened.part is None
            if call.index in self._held or (calling and self._interleavable):
                # Another call is being streamed and may not be complete: this one waits.
                hold(self._held, call)
                return
            call_id = call.id or new_id("call")
            self._place(CALL, call_id, out)
            self._close(out, "completed")
            self._open_call(call.index, call_id, call.name, out)
        elif self._open is None or self._open.output_index != index:
            # Its item was done when other content followed it, and items cannot reopen.
            raise UpstreamProtocolError("upstream sent more of a tool call after other content")
        if call.arguments:
            assert self._open is not None
            self._open.pieces.append(call.arguments)
            fields = {**self._where(self._open), "delta": call.arguments}
            out.append(self._event("response.function_call_arguments.delta", fields))

    def _open_call(
        self, index: int, call_id: str | None, name: str | None, out: list[bytes]
    ) -> _OpenItem:
        self._answered = True
        call_id = call_id or new_id("call")
        item = function_call_item(new_id("fc"), call_id, name or "", "", "in_progress")
        opened = self._open_item(item, out)
        self._item_of_tool[index] = opened.output_index
        return opened

    def _release_held(self, out: list[bytes], status: str) -> None:
        """Each held tool call as a whole item, in index order; the last closed as ``status``."""
        calls = release(self._held)
        for call in calls:
            opened = self._open_call(call.index, call.id, call.name, out)
            if call.fragments:
                arguments = call.arguments
                opened.pieces.append(arguments)
                fields = {**self._where(opened), "delta": arguments}
                out.append(self._event("response.function_call_arguments.delta", fields))
            self._close(out, status if call is calls[-1] else "completed")

    def _open_item(self, item: JSON, out: list[bytes]) -> _OpenItem:
        self._open = _OpenItem(output_index=len(self._output), item=item)
        added = {"output_index": self._open.output_index, "item": item}
        out.append(self._event("response.output_item.added", added))
        return self._open

    def _close(self, out: list[bytes], status: str) -> None:
        """Close the open item as ``status`` (``incomplete`` when a length finish cut it off),
        then send the calls held behind it, the last of them taking ``status`` instead."""
        opened = self._open
        if opened is None:
            return
        self._open = None
        last_status = status
        if self._held:  # the calls held behind this one follow it: the last of them ends
            status = "completed"
        where = self._where(opened)
        text = "".join(opened.pieces)
        item = opened.item
        if opened.part is not None:
            part = _part(opened.part, text)
            if opened.part == _TEXT:
                part["logprobs"] = opened.logprobs
                part["annotations"] = opened.annotations
            events = _EVENTS[opened.part]
            key = "refusal" if opened.part == _REFUSAL else "text"
            text_done = {**where, events.index: 0, key: text}
            if opened.part == _TEXT:
                text_done["logprobs"] = opened.logprobs
            out.append(self._event(events.done, text_done))
            part_done = {**where, events.index: 0, "part": part}
            out.append(self._event(events.part_done, part_done))
            if opened.part in _OF_REASONING:
                summarised = opened.part == _SUMMARY
                done = reasoning_item(item["id"], [text], status, summarised=summarised)
                sealed = seal(opened.signed) or seal_signatures(opened.gemini)
                if sealed is not None:
                    done["encrypted_content"] = sealed
            else:
                done = message_item(item["id"], [part], status)
        else:
            done = function_call_item(item["id"], item["call_id"], item["name"], text, status)
            arguments_done = {**where, "name": item["name"], "arguments": text}
            out.append(self._event("response.function_call_arguments.done", arguments_done))
        self._output.append(done)
        item_done = {"output_index": opened.output_index, "item": done}
        out.append(self._event("response.output_item.done", item_done))
        if opened.part == _TEXT and self._text_signed:  # the text's, after it
            signed = [Signed(signature, TEXT) for signature in self._text_signed]
            self._text_signed = []
            self._signatures_item(signed, out)
        if self._held:  # the open call has ended, so the calls held behind it can go
            self._release_held(out, last_status)

    @staticmethod
    def _where(opened: _OpenItem) -> JSON:
        return {"item_id": opened.item["id"], "output_index": opened.output_index}

    def _event(self, kind: str, fields: JSON) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _failed_code(status: int) -> str:
    """The code of a failed response's ``error`` for a failure of ``status``: one of the API's
    own (``ResponseError.code``; the ``error`` event before it has the gateway's): a rate limit
    is ``rate_limit_exceeded``, another 4xx the request's fault (a provider's refusal of its
    input after the answer began: Bedrock's ``validationException``) ``invalid_prompt``, as
    OpenAI says of a request it cannot serve, and the rest ``server_error``."""
    if status == 429:
        return "rate_limit_exceeded"
    return "invalid_prompt" if 400 <= status < 500 else "server_error"


def _part(kind: str, text: str) -> JSON:
    """A content part of ``kind`` holding ``text``."""
    if kind == _TEXT:
        return output_text(text)
    if kind == _SUMMARY:
        return summary_text(text)
    return refusal_part(text) if kind == _REFUSAL else reasoning_text(text)
