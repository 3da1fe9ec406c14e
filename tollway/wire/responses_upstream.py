"""OpenAI's Responses API as an upstream: its answers read for accounting, its events relayed.

A Responses client's request routed to a deployment that speaks the Responses API
(``Deployment.responses_api``) is sent as the client wrote it, and the answer goes back as it
came: a ``Response`` object's bytes, or the typed events one by one (``ChatResponse.raw``,
``ChatChunk.raw``). The gateway still reads what it needs from them, tagged with this module's
``WIRE_FORMAT``: the usage (``input_tokens``, ``output_tokens``, their cached, cache-write and
reasoning details), the model, the finish, and, for the stages that read answers and for
estimates when usage is missing, the text, function calls and reasoning summaries. An answer
keeps the ``Response`` object it was read from (``ChatResponse.extra``), so one a stage
changed (its ``raw`` cleared) is written back from it (``changed_response``): the stage's text,
reasoning summaries and call arguments in the upstream's items, every other item (built-in
tool calls such as ``web_search_call``, ...) and field as the upstream sent them. A stream's
chunk keeps its event (``ChatChunk.extra``) so ``EventRelay`` (``responses_relay.py``) can
write it on. An ``error`` or ``response.failed``
event from the upstream is its failure, classified by its code as an error event on a Chat
Completions stream is (a rate limit a 429, an overload a 503:
``wire/openai_stream_errors.py``); an answer that is no
``Response`` object, or a stream that ends before ``response.completed`` (``.incomplete``), is
a protocol error (502).

The client's body goes as it came but for the ``reasoning`` items the gateway sealed
(``sendable``): Claude's signed thinking (``responses_reasoning``) and Gemini's thought
signatures (``responses_thought_signatures``), given to the client by another family earlier
in the conversation (a client that switched model, a failover from Claude). OpenAI cannot read
them and refuses a request that holds one (400 ``invalid_encrypted_content``), nor would take
their summary as reasoning without its own ``encrypted_content``: they are left out, as the
other families leave out OpenAI's. So are the reasoning items the gateway wrote with no seal (a
Gemini thought summary without a signature, Magistral's thinking, an OpenAI-compatible server's
``reasoning_content``): sent back without ``encrypted_content``, a reasoning item stands for
one OpenAI stored, looked up by its id, and the gateway's ids (``GATEWAY_REASONING``) are none
of OpenAI's (its 400 "Item with id 'rs_…' not found. Items are not persisted when `store` is
set to false...").
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from tollway.core.errors import UpstreamError, UpstreamProtocolError
from tollway.core.types import (
    JSON,
    ChatChunk,
    ChatResponse,
    Choice,
    ChunkChoice,
    ContentPart,
    FinishReason,
    Message,
    ReasoningDelta,
    ReasoningPart,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from tollway.pricing.tools import calls_in_output, responses_item_kind
from tollway.wire.openai_stream_errors import is_error_event, stream_error
from tollway.wire.responses_reasoning import PREFIX as CLAUDES_SEAL
from tollway.wire.responses_response import (
    GATEWAY_REASONING,
    message_item,
    new_id,
    output_text,
    usage_to_wire,
)
from tollway.wire.responses_thought_signatures import PREFIX as GEMINIS_SEAL

WIRE_FORMAT = "openai_responses"
"""What an answer or chunk read from a Responses upstream is tagged with: only a Responses
client is sent it, as it came."""

TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete"})
"""The events that end a Responses stream whole, with its ``Response``."""
OPENING_EVENTS = frozenset({"response.created", "response.in_progress", "response.queued"})
"""The events that open one, with its ``Response`` so far."""
_REASONING_DELTAS = frozenset(
    {"response.reasoning_summary_text.delta", "response.reasoning_text.delta"}
)
_ERROR_FIELDS = ("code", "message", "param")
"""An ``error`` event's own fields (beside its ``type``, which names the event)."""
_UPSTREAM = "response"
COMPACT_FIELDS = frozenset(
    {
        "model", "input", "instructions", "previous_response_id", "prompt_cache_key",
        "prompt_cache_retention", "prompt_cache_options", "service_tier",
    }
)  # fmt: skip
"""The fields of a compaction request (``POST /v1/responses/compact``), as the openai SDK's
``ResponseCompactParams`` has them."""
"""The extra in which an answer keeps the ``Response`` object it was read from."""
_INCOMPLETE: dict[str, FinishReason] = {
    "max_output_tokens": "length",
    "content_filter": "content_filter",
}


_SEALS = (CLAUDES_SEAL, GEMINIS_SEAL)
"""How the ``encrypted_content`` the gateway writes starts, whichever family signed it."""


def sendable(body: JSON) -> JSON:
    """A Responses client's ``body`` as a Responses upstream is sent it: without the reasoning
    items the gateway wrote, sealed (only the family that signed them can take them back) or
    not (OpenAI never stored them); ``body`` itself when it holds none."""
    items = body.get("input")
    if not isinstance(items, list) or not any(_written_here(item) for item in items):
        return body
    return {**body, "input": [item for item in items if not _written_here(item)]}


def _written_here(item: Any) -> bool:
    """Whether ``item`` is a reasoning item the gateway wrote: its ``encrypted_content``
    sealed here, or none and an id of the gateway's."""
    if not isinstance(item, dict) or item.get("type") != "reasoning":
        return False
    sealed = item.get("encrypted_content")
    if isinstance(sealed, str) and sealed:
        return sealed.startswith(_SEALS)
    item_id = item.get("id")
    return isinstance(item_id, str) and item_id.startswith(GATEWAY_REASONING)


def usage_from_wire(raw: Any) -> Usage | None:
    """Canonical usage from a Responses ``usage`` object (cached and reasoning details too)."""
    if not isinstance(raw, dict):
        return None
    try:
        input_details = raw.get("input_tokens_details") or {}
        output_details = raw.get("output_tokens_details") or {}
        return Usage(
            input_tokens=int(raw.get("input_tokens") or 0),
            output_tokens=int(raw.get("output_tokens") or 0),
            cached_input_tokens=int(input_details.get("cached_tokens") or 0),
            cache_write_tokens=int(input_details.get("cache_write_tokens") or 0),
            reasoning_tokens=int(output_details.get("reasoning_tokens") or 0),
        )
    except (TypeError, ValueError, AttributeError) as exc:  # the upstream's fault: a 502
        raise UpstreamProtocolError(f"upstream usage is malformed: {exc}") from None


def response_from_wire(raw: Any, *, whole: bool) -> ChatResponse:
    """A ``Response`` object as a canonical answer; only its usage, model and finish unless
    ``whole`` (a stage reads answers) or it states no usage (its content is then what its
    cost is estimated from). An error object answered with a 200 (OpenRouter's, a proxy's)
    is that error, with the status it carries."""
    if isinstance(raw, dict) and "output" not in raw and is_error_event(raw):
        raise stream_error(raw, "upstream answered 200 with an error")
    if not isinstance(raw, dict) or not isinstance(raw.get("output"), list):
        raise UpstreamProtocolError("upstream answered without an 'output' array")
    output = [item for item in raw["output"] if isinstance(item, dict)]
    usage = usage_from_wire(raw.get("usage"))
    if usage is not None:
        # Built-in tools billed per call: the calls are the answer's items, not its usage.
        usage.tool_calls = calls_in_output(output)
    finish = _finish(raw, output)
    # Sent on as it came, an answer with usage needs no more read unless a stage reads it.
    choices = [] if usage is not None and not whole else [Choice(0, _message(output), finish)]
    created = raw.get("created_at")
    return ChatResponse(
        id=str(raw.get("id") or ""),
        model=str(raw.get("model") or ""),
        created=created if isinstance(created, int) else int(time.time()),
        choices=choices,
        usage=usage,
        extra={_UPSTREAM: raw},
        wire_format=WIRE_FORMAT,
    )


def upstream_object(response: ChatResponse) -> JSON:
    """The object a Responses upstream answered ``response`` with, as it came."""
    original: JSON = response.extra[_UPSTREAM]
    return original


def changed_response(response: ChatResponse, usage: Usage | None) -> JSON:
    """The upstream's ``Response`` object with what a stage changed in ``response`` (read
    from it whole): the text of its message items (an annotation of a text that changed is
    dropped: its offsets point into the old one), its reasoning summaries, its function calls,
    each in turn; any other item and field as the upstream sent them. ``usage``: the
    gateway's count, for an upstream that stated none."""
    original: JSON = response.extra[_UPSTREAM]
    choice = response.choices[0] if response.choices else None
    if choice is None:
        return original
    message = choice.message
    content = message.content
    parts = [TextPart(content)] if isinstance(content, str) else list(content or ())
    texts = [part.text for part in parts if isinstance(part, TextPart)]
    summaries = [part.text for part in parts if isinstance(part, ReasoningPart) and part.text]
    calls = list(message.tool_calls or ())
    output: list[JSON] = []
    for item in original["output"]:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            item = {**item, "content": [_said(p, texts) for p in item.get("content") or ()]}
        elif kind == "reasoning":
            summary = [_said(p, summaries, empty=False) for p in item.get("summary") or ()]
            item = {**item, "summary": summary}
        elif kind == "function_call":
            if not calls:
                continue  # the stage took the call out
            call = calls.pop(0)
            item = {**item, "call_id": call.id, "name": call.name, "arguments": call.arguments}
        output.append(item)
    if texts:  # more text than the upstream's items held: a message of its own
        output.append(message_item(new_id("msg"), [output_text("".join(texts))], "completed"))
    changed = {**original, "output": output}
    if original.get("usage") is None and usage is not None:
        changed["usage"] = usage_to_wire(usage)
    return changed


def _said(part: Any, texts: list[str], *, empty: bool = True) -> Any:
    """A content or summary part with the next of ``texts`` (what a stage left of it) in
    place of its own (nothing left: empty); a part ``_message`` read no text from (one of
    another kind; an empty summary, unless ``empty``) as it is."""
    if not isinstance(part, dict):
        return part
    key = "text" if isinstance(part.get("text"), str) else "refusal"
    old = part.get(key)
    if not isinstance(old, str) or not (old or empty):
        return part
    new = texts.pop(0) if texts else ""
    if new == old:
        return part
    changed = {**part, key: new}
    if changed.get("annotations"):
        changed["annotations"] = []
    return changed


def _finish(response: JSON, output: list[JSON]) -> FinishReason:
    if response.get("status") == "incomplete":
        details = response.get("incomplete_details") or {}
        reason = details.get("reason") if isinstance(details, dict) else None
        return _INCOMPLETE.get(str(reason), "stop")
    if any(item.get("type") == "function_call" for item in output):
        return "tool_calls"
    return "stop"


def _message(output: list[JSON]) -> Message:
    """The answer's text, function calls and reasoning summaries as one assistant message."""
    parts: list[ContentPart] = []
    calls: list[ToolCall] = []
    for item in output:
        kind = item.get("type")
        if kind == "reasoning":
            texts = [p.get("text") for p in item.get("summary") or () if isinstance(p, dict)]
            parts.extend(ReasoningPart(text) for text in texts if isinstance(text, str) and text)
        elif kind == "message":
            for part in item.get("content") or ():
                text = part.get("text", part.get("refusal")) if isinstance(part, dict) else None
                if isinstance(text, str):
                    parts.append(TextPart(text))
        elif kind == "function_call":
            call_id, name = str(item.get("call_id") or ""), str(item.get("name") or "")
            arguments = item.get("arguments")
            calls.append(ToolCall(call_id, name, arguments if isinstance(arguments, str) else ""))
    return Message(role="assistant", content=parts, tool_calls=calls or None)


class EventReader:
    """Reads one Responses stream's events into canonical chunks that keep the event."""

    def __init__(self) -> None:
        self.finished = False
        """A ``response.completed`` (or ``.incomplete``) came: the answer is whole."""
        self._id = ""
        self._model = ""
        self._created = 0
        self._tool_calls: dict[str, int] = {}
        """Built-in tool calls billed per call, as their items were done (a stream cut before
        its end is still charged for them)."""

    def chunk(self, raw: bytes) -> ChatChunk:
        """The chunk of one event's JSON (``raw``, sent on as it is); the upstream's failure
        (an ``error`` or ``response.failed`` event) is raised."""
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("upstream sent an invalid stream event") from None
        if isinstance(event, dict) and "type" not in event and is_error_event(event):
            # An error object without an event type: a whole error body answering the stream
            # request (http.py reads it as one event), or a server's bare error event.
            raise stream_error(event)
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise UpstreamProtocolError("upstream stream event is not a typed JSON object")
        kind: str = event["type"]
        usage = None
        choices: list[ChunkChoice] = []
        if kind in OPENING_EVENTS or kind in TERMINAL_EVENTS:
            response = event.get("response")
            if isinstance(response, dict):
                self._remember(response)
                if kind in TERMINAL_EVENTS:
                    self.finished = True
                    usage = usage_from_wire(response.get("usage"))
                    output = [i for i in response.get("output") or () if isinstance(i, dict)]
                    if usage is not None:
                        usage.tool_calls = calls_in_output(output) or self._tool_calls or None
                    choices = [ChunkChoice(0, finish_reason=_finish(response, output))]
        elif kind == "error":
            raise _error_event_failure(event)
        elif kind == "response.failed":
            raise _failed(event.get("response"))
        else:
            choice = _delta(kind, event)
            if choice is not None:
                choices = [choice]
        chunk = ChatChunk(
            self._id, self._model, self._created, choices, usage, event, WIRE_FORMAT, raw
        )
        if kind == "response.output_item.done":
            tool = responses_item_kind(event.get("item"))
            if tool is not None:
                self._tool_calls[tool] = self._tool_calls.get(tool, 0) + 1
                # Reports no tokens: only the calls made so far (pricing/metering.py).
                chunk.usage_so_far = Usage(tool_calls=dict(self._tool_calls))
        return chunk

    def _remember(self, response: JSON) -> None:
        self._id = str(response.get("id") or self._id)
        self._model = str(response.get("model") or self._model)
        created = response.get("created_at")
        if isinstance(created, int):
            self._created = created


def _delta(kind: str, event: JSON) -> ChunkChoice | None:
    """What an event adds to the answer: text, reasoning, a refusal or a function call."""
    delta = event.get("delta")
    if kind == "response.output_text.delta" and isinstance(delta, str):
        return ChunkChoice(0, content=delta)
    if kind in _REASONING_DELTAS and isinstance(delta, str):
        return ChunkChoice(0, reasoning=ReasoningDelta(text=delta))
    if kind == "response.refusal.delta" and isinstance(delta, str):
        return ChunkChoice(0, extra={"refusal": delta})
    index = event.get("output_index")
    if not isinstance(index, int):
        return None
    if kind == "response.function_call_arguments.delta" and isinstance(delta, str):
        return ChunkChoice(0, tool_calls=[ToolCallDelta(index, arguments=delta)])
    item = event.get("item")
    if (
        kind == "response.output_item.added"
        and isinstance(item, dict)
        and item.get("type") == "function_call"
    ):
        call = ToolCallDelta(
            index, str(item.get("call_id") or ""), str(item.get("name") or ""),
            str(item.get("arguments") or ""),
        )  # fmt: skip
        return ChunkChoice(0, tool_calls=[call])
    return None


def _error_event_failure(event: JSON) -> UpstreamError:
    """The failure an ``error`` event reports, classified as a Chat Completions stream's error
    event is (an overload a 503, a rate limit a 429 that rests the deployment, ...). OpenAI
    sends its fields beside the event's own ``type`` (``code``, ``message``, ``param``); some
    servers nest them under ``error``, as an error body."""
    nested = event.get("error")
    fields = nested if isinstance(nested, dict) else {k: event.get(k) for k in _ERROR_FIELDS}
    return stream_error({"error": fields})


def _failed(response: Any) -> UpstreamError:
    """The failure a ``response.failed`` event reports: its response's ``error``
    (``rate_limit_exceeded``, ``server_error``, ...), classified by its code."""
    error = response.get("error") if isinstance(response, dict) else None
    if not isinstance(error, dict):
        return UpstreamProtocolError("upstream response failed")
    return stream_error({"error": error})
