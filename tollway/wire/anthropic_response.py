"""Anthropic Messages responses, usage, stop reasons and errors, in both directions.

Usage: Anthropic's ``input_tokens`` leaves out the tokens read from and written to the prompt
cache; canonical ``Usage.input_tokens`` includes them. So canonical input is
``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``, with the two cache
counts kept as ``cached_input_tokens`` and ``cache_write_tokens``, and the reverse on the way
out; ``cache_creation.ephemeral_1h_input_tokens`` (writes kept an hour, billed higher) is
``cache_write_1h_tokens``. ``output_tokens_details.thinking_tokens`` is ``reasoning_tokens``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import msgspec
import orjson
import pydantic_core

from tollway.core.errors import (
    InvalidRequest,
    UpstreamError,
    UpstreamErrorBody,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from tollway.core.types import ChatResponse, Choice, FinishReason, Message, ReasoningPart, Usage
from tollway.pricing.tools import anthropic_calls
from tollway.wire.anthropic_content import assistant_blocks, assistant_from_wire
from tollway.wire.anthropic_search import with_searches
from tollway.wire.crossing import anthropic_stop_reason_of, response_for, without_parts

WIRE_FORMAT = "anthropic"

_FINISH_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
    "model_context_window_exceeded": "length",
}
_STOP_REASONS: dict[FinishReason | None, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "error": "end_turn",
    None: "end_turn",
}
_ERROR_STATUSES = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_USAGE_KEYS = frozenset(
    {"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"}
)
_MESSAGE_KEYS = frozenset(
    {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
)


def finish_from_wire(stop_reason: Any) -> tuple[FinishReason | None, dict[str, Any]]:
    """The finish reason, and a choice ``extra`` keeping a stop reason it cannot say exactly."""
    if stop_reason is None:
        return None, {}
    finish = _FINISH_REASONS.get(str(stop_reason), "stop")
    exact = stop_reason in ("end_turn", "stop_sequence") or _STOP_REASONS[finish] == stop_reason
    return finish, {} if exact else {"stop_reason": stop_reason}


def stop_reason_to_wire(
    finish: FinishReason | None,
    stop_sequence: str | None,
    extra: dict[str, Any],
    called: bool = False,
) -> str:
    """Anthropic's ``stop_reason`` for a canonical finish (``extra`` may hold the exact one);
    ``called``: another format's answer that ends in tool calls."""
    if "stop_reason" in extra:
        return str(extra["stop_reason"])
    if finish == "stop" and stop_sequence is not None:
        return "stop_sequence"
    if finish == "stop" and called:
        # OpenAI ends a call that a named tool_choice forced with "stop" (some compatible
        # servers any call); Anthropic's turn that ends in a tool call is tool_use.
        return "tool_use"
    return _STOP_REASONS.get(finish, "end_turn")  # an upstream may send reasons of its own


def usage_from_wire(raw: Any) -> Usage | None:
    """Canonical usage from an Anthropic ``usage`` object (cache counts folded into input)."""
    if not isinstance(raw, dict):
        return None
    cache_read = int(raw.get("cache_read_input_tokens") or 0)
    cache_write = int(raw.get("cache_creation_input_tokens") or 0)
    details = raw.get("output_tokens_details")
    thinking = details.get("thinking_tokens") if isinstance(details, dict) else None
    # The split of the writes by time to live (kept in ``extra`` for Anthropic clients).
    split = raw.get("cache_creation")
    long_writes = split.get("ephemeral_1h_input_tokens") if isinstance(split, dict) else None
    return Usage(
        input_tokens=int(raw.get("input_tokens") or 0) + cache_read + cache_write,
        output_tokens=int(raw.get("output_tokens") or 0),
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=int(thinking or 0),
        extra={k: v for k, v in raw.items() if k not in _USAGE_KEYS},
        cache_write_1h_tokens=int(long_writes or 0),
        tool_calls=anthropic_calls(raw),
    )


def usage_to_wire(usage: Usage) -> dict[str, Any]:
    """An Anthropic ``usage`` object; details the gateway does not model are kept."""
    uncached = usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens
    out: dict[str, Any] = {
        **usage.extra,
        "input_tokens": max(uncached, 0),
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
        "output_tokens": usage.output_tokens,
    }
    if usage.cache_write_1h_tokens and "cache_creation" not in out:
        # Another family's writes (Claude on Bedrock's) for an hour: split by time to live as
        # Anthropic says them (five-minute writes alone it may leave unsplit).
        hour = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
        out["cache_creation"] = {
            "ephemeral_5m_input_tokens": usage.cache_write_tokens - hour,
            "ephemeral_1h_input_tokens": hour,
        }
    if usage.reasoning_tokens or "output_tokens_details" in out:
        details = dict(out.get("output_tokens_details") or {})
        details["thinking_tokens"] = usage.reasoning_tokens
        out["output_tokens_details"] = details
    return out


def usage_from_answer(raw: Any) -> ChatResponse:
    """``response_from_wire`` without the content (``choices`` left empty) or extras: for an
    answer the client is sent as it came (``ChatRequest.answer_as_is``), which needs only its
    usage. Checked as strictly: a body without a content array is still an error. An answer
    without usage is parsed whole: its content is what its cost is estimated from."""
    if not isinstance(raw, dict) or not isinstance(raw.get("content"), list):
        raise _without_content(raw)
    try:
        usage = usage_from_wire(raw.get("usage"))
    except (TypeError, ValueError) as exc:
        raise UpstreamProtocolError(f"upstream usage is malformed: {exc}") from None
    if usage is None:  # the answer itself is then what its cost is estimated from
        return response_from_wire(raw)
    get = raw.get
    return ChatResponse(
        str(get("id") or ""), str(get("model") or ""), int(time.time()), [], usage, {}, WIRE_FORMAT
    )


class _Answer(msgspec.Struct):
    id: str = ""
    model: str = ""
    content: list[msgspec.Raw] | None = None
    usage: dict[str, Any] | None = None


_ANSWER = msgspec.json.Decoder(_Answer)
"""Reads of an answer the fields ``usage_from_answer`` takes: the content blocks are checked
to be JSON and skipped, not made into objects; the usage object is read whole (its extras
and server tool counts are kept as ``usage_from_wire`` keeps them)."""


def usage_from_answer_bytes(payload: bytes) -> ChatResponse:
    """``usage_from_answer`` of an answer's bytes, for an answer the client is sent as it came:
    the same response and usage, read without parsing the content. An answer whose fields are
    not of the usual types (a ``null`` id, a usage that is not an object) is parsed whole, as
    before. Raises ``ValueError`` (``msgspec.DecodeError``) for bytes that are not JSON."""
    try:
        answer = _ANSWER.decode(payload)
    except msgspec.ValidationError:
        return usage_from_answer(orjson.loads(payload))
    if answer.content is None or answer.usage is None:
        # No content: the 502 usage_from_answer says; no usage: estimated from the content.
        return usage_from_answer(orjson.loads(payload))
    try:
        usage = usage_from_wire(answer.usage)
    except (TypeError, ValueError) as exc:
        raise UpstreamProtocolError(f"upstream usage is malformed: {exc}") from None
    assert usage is not None  # an object
    return ChatResponse(answer.id, answer.model, int(time.time()), [], usage, {}, WIRE_FORMAT)


def _without_content(raw: Any) -> UpstreamError:
    """Why an answer has no content: Anthropic's error object sent with a 200 (a proxy or a
    compatible server passing on an overload, ``{"type": "error", "error": {...}}``: its words
    and the status its type means, as in a stream), else an answer of the wrong shape."""
    if is_error_event(raw):
        return stream_error(raw, "upstream answered 200 with an error")
    return UpstreamProtocolError("upstream answered without a 'content' array")


def response_from_wire(raw: Any) -> ChatResponse:
    """Canonical response from an upstream Messages body."""
    if not isinstance(raw, dict) or not isinstance(raw.get("content"), list):
        raise _without_content(raw)
    try:
        message = with_searches(assistant_from_wire(raw["content"], "content"))
        usage = usage_from_wire(raw.get("usage"))
    except InvalidRequest as exc:
        raise UpstreamProtocolError(f"upstream content is malformed: {exc.message}") from None
    except (TypeError, ValueError) as exc:
        raise UpstreamProtocolError(f"upstream usage is malformed: {exc}") from None
    finish, choice_extra = finish_from_wire(raw.get("stop_reason"))
    stop_sequence = raw.get("stop_sequence")
    return ChatResponse(
        id=str(raw.get("id") or ""),
        model=str(raw.get("model") or ""),
        created=int(time.time()),  # Anthropic messages carry no timestamp
        choices=[
            Choice(
                index=0,
                message=message,
                finish_reason=finish,
                stop_sequence=None if stop_sequence is None else str(stop_sequence),
                extra=choice_extra,
            )
        ],
        usage=usage,
        extra={k: v for k, v in raw.items() if k not in _MESSAGE_KEYS},
        wire_format=WIRE_FORMAT,
    )


def response_to_wire(
    response: ChatResponse, thinking: bool = False, *, omitted: bool = False
) -> dict[str, Any]:
    """A Messages body for the client, from the first choice of ``response``.

    Reasoning another format's answer holds is a ``thinking`` block (``redacted_thinking``
    when encrypted) only for a client that asked for ``thinking``: Anthropic shows none
    otherwise. Reasoning no provider signed (an OpenAI-compatible server's) has an empty
    ``signature``, and is not sent back to any provider when the client replays it; with
    ``omitted`` (the client's ``display: "omitted"``) its text is left out too, an empty
    block as Claude's omitted thinking is (signed providers were asked to omit it)."""
    foreign = response.wire_format != WIRE_FORMAT
    given = response.choices[0].extra if response.choices else {}
    shared = anthropic_stop_reason_of(given, response.wire_format)  # before extras go
    response = response_for(response, WIRE_FORMAT)
    choice = response.choices[0] if response.choices else None
    message = choice.message if choice is not None else Message(role="assistant", content=None)
    if foreign and not thinking:
        message = without_parts(message, lambda part: False)
    elif foreign and omitted:
        message = _unsigned_text_omitted(message)
    if choice is not None and choice.finish_reason == "length" and message.tool_calls:
        message = _cut_calls_closed(message)
    try:
        content = assistant_blocks(message, "choices[0].message")
    except InvalidRequest as exc:
        # Tool-call arguments the upstream model wrote are not a JSON object.
        raise UpstreamProtocolError(
            f"upstream answer cannot be translated: {exc.message}"
        ) from None
    stop_sequence = None if choice is None else choice.stop_sequence
    return {
        "id": response.id,
        "type": "message",
        "role": "assistant",
        "model": response.model,
        "content": content,
        "stop_reason": shared
        or stop_reason_to_wire(
            None if choice is None else choice.finish_reason,
            stop_sequence,
            {} if choice is None else choice.extra,
            called=bool(message.tool_calls) and response.wire_format != WIRE_FORMAT,
        ),
        "stop_sequence": stop_sequence,
        "usage": usage_to_wire(response.usage or Usage()),
        **response.extra,
    }


def _unsigned_text_omitted(message: Message) -> Message:
    """``message`` with the text of its unsigned reasoning left out (the block kept)."""
    content = message.content
    if not isinstance(content, list):
        return message
    omitted = [
        replace(part, text="") if isinstance(part, ReasoningPart) and part.signer is None else part
        for part in content
    ]
    return replace(message, content=omitted)


def _cut_calls_closed(message: Message) -> Message:
    """``message`` with each call the output limit cut mid-way (its arguments not yet a JSON
    object: OpenAI's answer ends ``length`` with the text written so far) given the values it
    wrote whole. Claude ends such an answer ``max_tokens`` and keeps the cut ``tool_use``
    block, whose ``input`` is an object; a client is to ask again with more room, not run the
    call. Streamed, the same fragments went through and the SDKs read them as partial JSON
    (the Python SDK with jiter's partial mode, which this is): both answers hold one input."""
    calls = [
        call if _whole(call.arguments) else replace(call, arguments=_values_written(call.arguments))
        for call in message.tool_calls or ()
    ]
    return replace(message, tool_calls=calls)


def _whole(arguments: str) -> bool:
    try:
        return isinstance(orjson.loads(arguments), dict)
    except orjson.JSONDecodeError:
        return False


def _values_written(arguments: str) -> str:
    """The complete values of cut JSON object text, as an object (a value cut mid-way left
    out, a list cut mid-way kept to its complete items); ``{}`` when it is no object."""
    try:
        values = pydantic_core.from_json(arguments, allow_partial=True)
    except ValueError:
        return "{}"
    return orjson.dumps(values).decode() if isinstance(values, dict) else "{}"


def error_from_wire(raw: Any) -> UpstreamErrorBody:
    """An Anthropic error body: its message, and its type as the error's ``kind``.

    Anthropic's type names are neither OpenAI's types nor its codes: the gateway derives each
    dialect's type (and OpenAI's code) from the status, so OpenAI clients of an Anthropic
    deployment read OpenAI's names.
    """
    if isinstance(raw, dict):
        error = raw.get("error")
        if isinstance(error, dict):
            kind = error.get("type")
            message = error.get("message") or str(error)
            return UpstreamErrorBody(str(message), kind=None if kind is None else str(kind))
        if isinstance(error, str):
            return UpstreamErrorBody(error)
    return UpstreamErrorBody(str(raw)[:500])


def is_error_event(raw: Any) -> bool:
    """Whether ``raw`` (an event or a whole answer) is an error object: Anthropic's own
    (``type: error``), or one without a type as a proxy in front of it writes
    (``{"error": {...}}``)."""
    if not isinstance(raw, dict):
        return False
    kind = raw.get("type")
    return kind == "error" or (kind is None and bool(raw.get("error")))


def stream_error(raw: Any, said: str = "upstream stream failed") -> UpstreamError:
    """The failure an upstream ``error`` stream event reports (or, with ``said`` in other
    words, a whole answer of 200 that is such an error object): the status its type means,
    else a status a proxy's error gives as its ``code`` (``429``), else a 500."""
    body = error_from_wire(raw)
    status = _ERROR_STATUSES.get(body.kind or "") or _status_given(raw) or 500
    return UpstreamStatusError(status, f"{said}: {body.message}", kind=body.kind)


def _status_given(raw: Any) -> int | None:
    """An HTTP error status an error object's ``code`` names (OpenRouter's ``429``), if any."""
    error = raw.get("error") if isinstance(raw, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    return code if isinstance(code, int) and 400 <= code <= 599 else None
