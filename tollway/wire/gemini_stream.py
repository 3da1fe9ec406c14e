"""Gemini streams: upstream ``streamGenerateContent?alt=sse`` events to chunks, and back.

A Gemini stream is a run of ``GenerateContentResponse`` objects with no terminal event: the
body simply ends, and the last object carries ``finishReason`` and the final usage.

Upstream (``StreamReader``): the first event of each candidate gives its role chunk; text parts
become content; thought parts (summaries) become reasoning, and a part's ``thoughtSignature``
the signature of a reasoning delta that comes before the part's own content (as
``gemini_content`` places it in a whole answer); each ``functionCall`` part, which Gemini
sends whole, becomes one complete tool-call fragment numbered by its order among the
candidate's calls; ``finishReason`` gives the finish chunk, unless it says the output is unusable
(``MALFORMED_FUNCTION_CALL``, ...), which raises that failure. Usage comes in every event; the
latest is kept (and told on each chunk as ``usage_so_far``, for a stream cut before its end)
and, once the body ends, ``last`` gives the usage-only chunk; the Google Search queries a
candidate's ``groundingMetadata`` says it ran are that usage's ``web_search`` calls from the
event that says so on, and the queries and the web sources it cites are told on the chunk of
the event that tells them (``gemini_grounding.GroundingTracker``, which is why each
candidate's text is kept). A stream whose body ends before every candidate finished was cut short
(``done`` is false) and is a failure. A candidate's finish is told once, however many of its
events repeat ``finishReason``.

Client (``StreamWriter``): content chunks become events at once; tool-call fragments are held
until the end, since Gemini sends every call whole, and ``finish`` gives the last event with
the calls, the finish reasons and the usage.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from tollway.core.errors import InvalidRequest, UpstreamProtocolError
from tollway.core.types import (
    ChatChunk,
    ChunkChoice,
    FinishReason,
    ReasoningDelta,
    Role,
    ToolCallDelta,
    UrlCitation,
    Usage,
)
from tollway.pricing.tools import WEB_SEARCH, grounding_queries
from tollway.wire.crossing import chunk_for
from tollway.wire.gemini_content import (
    answer_key,
    arguments_object,
    function_call_from_wire,
    parts_from_wire,
    signature_from_wire,
)
from tollway.wire.gemini_grounding import GroundingTracker
from tollway.wire.gemini_logprobs import logprobs_from_wire
from tollway.wire.gemini_response import (
    WIRE_FORMAT,
    finish_from_wire,
    finish_to_wire,
    prompt_blocked,
    stream_error,
    unusable,
    usage_from_wire,
    usage_to_wire,
)


class StreamReader:
    """Turns one upstream Gemini event stream into canonical chunks, event by event."""

    def __init__(self, candidates: int = 1) -> None:
        self._expected = max(candidates, 1)
        self._id = ""
        self._model = ""
        self._created = int(time.time())
        self._usage: Usage | None = None
        self._calls: dict[int, int] = {}  # calls so far, by candidate index
        self._answers: dict[int, str] = {}  # each candidate's key in its calls' ids
        self._started: set[int] = set()
        self._finished: set[int] = set()
        self._searches: dict[int, int] | None = None  # Google Search queries, by candidate
        self._grounding: dict[int, GroundingTracker] = {}  # each candidate's, once grounded
        self._texts: dict[int, list[str]] = {}  # each candidate's answer text so far

    def _key(self, candidate: int) -> str:
        """The key of the answer's ``candidate``, from the stream's ``responseId`` (made once:
        every call of the candidate has it; ``gemini_content.answer_key``)."""
        key = self._answers.get(candidate)
        if key is None:
            key = self._answers[candidate] = answer_key(self._id, candidate)
        return key

    @property
    def done(self) -> bool:
        """Whether every candidate has finished (the stream may end now)."""
        return len(self._finished) >= self._expected

    def feed(self, data: bytes) -> ChatChunk | None:
        """The chunk one event stands for, if any; raises on an ``error`` event."""
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("upstream sent an invalid stream event") from None
        if not isinstance(event, dict):
            raise UpstreamProtocolError("upstream stream event is not a JSON object")
        if "error" in event and "candidates" not in event:
            raise stream_error(event)
        try:
            return self._event(event)
        except InvalidRequest as exc:
            message = f"upstream stream event is malformed: {exc.message}"
            raise UpstreamProtocolError(message) from None
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise UpstreamProtocolError(f"upstream stream event is malformed: {exc!r}") from None

    def last(self) -> ChatChunk:
        """The usage-only chunk that closes the stream once the body has ended."""
        chunk = ChatChunk(self._id, self._model, self._created, [], wire_format=WIRE_FORMAT)
        chunk.usage = self._usage or Usage()
        return chunk

    def _event(self, event: dict[str, Any]) -> ChatChunk | None:
        self._id = str(event.get("responseId") or self._id)
        self._model = str(event.get("modelVersion") or self._model)
        usage = usage_from_wire(event.get("usageMetadata"))
        candidates = event.get("candidates") or []
        if usage is not None:
            self._usage = usage
            if self._searches and any(self._searches.values()):
                usage.tool_calls = {WEB_SEARCH: sum(self._searches.values())}
        choices = [self._candidate(c, i) for i, c in enumerate(candidates)]
        if not candidates and prompt_blocked(event):
            # The prompt itself was blocked: no candidate will ever come, and each one asked
            # for ends with content_filter. (Feedback without a ``blockReason``, beside the
            # usage of an event that closes a finished answer, is only the prompt's safety
            # ratings.)
            self._finished.update(range(self._expected))
            choices = [
                ChunkChoice(index=index, role="assistant", finish_reason="content_filter")
                for index in range(self._expected)
            ]
        kept = [choice for choice in choices if choice is not None]
        if not kept:
            return None
        chunk = ChatChunk(self._id, self._model, self._created, kept, wire_format=WIRE_FORMAT)
        chunk.usage_so_far = self._usage  # the tokens so far, this chunk's included
        return chunk

    def _candidate(self, raw: dict[str, Any], position: int) -> ChunkChoice | None:
        failure = unusable(raw.get("finishReason"))
        if failure is not None:
            raise failure
        index = int(raw.get("index") or 0)
        grounding = raw.get("groundingMetadata")
        if grounding is not None:
            self._grounded(index, grounding_queries(raw))
        param = f"candidates[{position}].content.parts"
        parts = parts_from_wire((raw.get("content") or {}).get("parts") or [], param)
        texts: list[str] = []
        thoughts: list[str] = []
        signature: str | None = None
        calls: list[ToolCallDelta] = []
        for number, part in enumerate(parts):
            if isinstance(part.get("thoughtSignature"), str) and part["thoughtSignature"]:
                part = dict(part)
                signature = signature_from_wire(part.pop("thoughtSignature"))
            if "functionCall" in part:
                ordinal = self._calls.get(index, 0)
                self._calls[index] = ordinal + 1
                key = self._key(index)
                call = function_call_from_wire(part, ordinal, f"{param}[{number}]", key)
                calls.append(ToolCallDelta(ordinal, call.id, call.name, call.arguments))
            elif isinstance(part.get("text"), str) and part.get("thought"):
                thoughts.append(part["text"])
            elif isinstance(part.get("text"), str):
                texts.append(part["text"])
        self._texts.setdefault(index, []).extend(texts)
        queries: list[str] = []
        cited: list[UrlCitation] = []
        if grounding is not None:
            tracker = self._grounding.setdefault(index, GroundingTracker())
            whole = "".join(self._texts[index])
            self._texts[index] = [whole]
            queries, cited = tracker.grounded(grounding, whole)
        reasoning = None
        if thoughts or signature is not None:
            reasoning = ReasoningDelta("".join(thoughts), signature=signature)
        finish, extra = finish_from_wire(raw.get("finishReason"), self._calls.get(index, 0) > 0)
        if finish is not None:
            if index in self._finished:
                # Told once: Gemini has sent ``STOP`` on more than one event of a candidate
                # (on each, at times), and a second finish makes an OpenAI client's stream
                # read as ending twice.
                finish, extra = None, {}
            self._finished.add(index)
        role: Role | None = None if index in self._started else "assistant"
        self._started.add(index)
        content = "".join(texts) or None
        told = bool(queries or cited or calls or reasoning)
        if role is None and content is None and finish is None and not told:
            return None
        return ChunkChoice(
            index=index,
            role=role,
            content=content,
            tool_calls=calls or None,
            finish_reason=finish,
            extra=extra,
            reasoning=reasoning,
            logprobs=logprobs_from_wire(raw.get("logprobsResult")),
            web_searches=queries or None,
            url_citations=cited or None,
        )

    def _grounded(self, index: int, queries: int) -> None:
        """Candidate ``index`` says it ran ``queries`` Google Search queries (each event
        that tells it repeats the candidate's whole list): charged from now on, in the
        usage kept, which is told on every later chunk."""
        searches = self._searches = self._searches or {}
        searches[index] = max(searches.get(index, 0), queries)
        total = sum(searches.values())
        if total and self._usage is not None:
            self._usage.tool_calls = {WEB_SEARCH: total}


class StreamWriter:
    """Turns canonical chunks from any upstream into ``GenerateContentResponse`` events."""

    def __init__(self) -> None:
        self._id = ""
        self._model = ""
        self._calls: dict[int, dict[int, ToolCallDelta]] = {}
        self._finishes: dict[int, tuple[FinishReason | None, dict[str, Any]]] = {}
        self._usage: Usage | None = None

    def feed(self, chunk: ChatChunk) -> list[dict[str, Any]]:
        """The events ``chunk`` stands for now; may be none."""
        chunk = chunk_for(chunk, WIRE_FORMAT)
        self._id, self._model = chunk.id, chunk.model
        if chunk.usage is not None:
            self._usage = chunk.usage
        candidates = []
        for choice in chunk.choices:
            for call in choice.tool_calls or ():
                self._hold(choice.index, call)
            if choice.finish_reason is not None:
                self._finishes[choice.index] = (choice.finish_reason, choice.extra)
            if choice.content:
                content = {"role": "model", "parts": [{"text": choice.content}]}
                candidates.append({"content": content, "index": choice.index})
        return [self._event(candidates)] if candidates else []

    def finish(self) -> dict[str, Any]:
        """The last event: the held function calls, every finish reason and the usage."""
        candidates = []
        for index in sorted(set(self._calls) | set(self._finishes)) or [0]:
            held = self._calls.get(index, {})
            parts: list[dict[str, Any]] = []
            for ordinal in sorted(held):
                call = held[ordinal]
                try:
                    args = arguments_object(call.arguments, "tool_calls.function.arguments")
                except InvalidRequest as exc:
                    raise UpstreamProtocolError(
                        f"upstream answer cannot be translated: {exc.message}"
                    ) from None
                parts.append({"functionCall": {"name": call.name or "", "args": args}})
            finish, extra = self._finishes.get(index, (None, {}))
            candidates.append(
                {
                    "content": {"role": "model", "parts": parts or [{"text": ""}]},
                    "finishReason": finish_to_wire(finish, extra),
                    "index": index,
                }
            )
        event = self._event(candidates)
        if self._usage is not None:
            event["usageMetadata"] = usage_to_wire(self._usage)
        return event

    def _hold(self, index: int, call: ToolCallDelta) -> None:
        calls = self._calls.setdefault(index, {})
        held = calls.get(call.index)
        if held is None:
            calls[call.index] = ToolCallDelta(call.index, call.id, call.name, call.arguments)
        else:
            held.arguments += call.arguments
            held.name = held.name or call.name

    def _event(self, candidates: list[dict[str, Any]]) -> dict[str, Any]:
        return {"candidates": candidates, "modelVersion": self._model, "responseId": self._id}
