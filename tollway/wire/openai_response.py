"""OpenAI Chat Completions responses, stream chunks, usage and errors, in both directions."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import orjson

from tollway.core.errors import UpstreamError, UpstreamErrorBody, UpstreamProtocolError
from tollway.core.types import (
    ChatChunk,
    ChatResponse,
    Choice,
    ChunkChoice,
    Message,
    Role,
    TextPart,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    UrlCitation,
    Usage,
)
from tollway.wire.crossing import chunk_for, response_for
from tollway.wire.thought_signatures import gemini_signature, signatures_of_calls, signed_call

WIRE_FORMAT = "openai"
_RESPONSE_KEYS = frozenset({"id", "model", "created", "choices", "usage", "object"})
_CHOICE_KEYS = frozenset({"index", "message", "finish_reason"})
_MESSAGE_KEYS = frozenset({"role", "content", "tool_calls"})
_CALL_KEYS = frozenset({"id", "type", "function"})
# OpenAI's error types and codes are lower-case words (rate_limit_exceeded, server_error);
# Azure's own gateway says the status ("429") or a name (DeploymentNotFound), vLLM a class
# name (BadRequestError) and a number: those are the upstream's kind, not OpenAI's words.
_OPENAI_WORD = re.compile(r"[a-z][a-z0-9_.]*")


def usage_from_wire(raw: Any) -> Usage | None:
    """Canonical usage from an OpenAI ``usage`` object (cached and reasoning details too)."""
    if not isinstance(raw, dict):
        return None
    # The extras are the object less its three counts: a copy and three pops cost a third of
    # a comprehension over every key (this runs for every answer that has usage).
    extra = raw.copy()
    pop = extra.pop
    prompt_tokens = pop("prompt_tokens", None)
    completion_tokens = pop("completion_tokens", None)
    pop("total_tokens", None)
    prompt_details = extra.get("prompt_tokens_details")
    completion_details = extra.get("completion_tokens_details")
    try:
        # Positional, in field order: input, output, cached input, cache write, reasoning,
        # extra.
        return Usage(
            int(prompt_tokens or 0),
            int(completion_tokens or 0),
            int(prompt_details.get("cached_tokens") or 0)
            if prompt_details
            # DeepSeek (before it also sent the details) and some proxies say cache hits only
            # so: billed at the full input rate otherwise.
            else int(extra.get("prompt_cache_hit_tokens") or 0),
            # OpenAI's writes (GPT-5.6 on), billed above plain input: lost, they were billed
            # as input.
            int(prompt_details.get("cache_write_tokens") or 0) if prompt_details else 0,
            int(completion_details.get("reasoning_tokens") or 0) if completion_details else 0,
            extra,
        )
    except (TypeError, ValueError, AttributeError) as exc:  # the upstream's fault: a 502
        raise UpstreamProtocolError(f"upstream usage is malformed: {exc}") from None


def usage_to_wire(usage: Usage) -> dict[str, Any]:
    """An OpenAI ``usage`` object; details the gateway does not model are kept."""
    out: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        **usage.extra,
    }
    if usage.cached_input_tokens or usage.cache_write_tokens or "prompt_tokens_details" in out:
        details = dict(out.get("prompt_tokens_details") or {})
        details["cached_tokens"] = usage.cached_input_tokens
        if usage.cache_write_tokens:
            # OpenAI's own name for them, which langchain-openai reads as ``cache_creation``:
            # Anthropic's and Bedrock's writes, billed above the input rate, were not told.
            details["cache_write_tokens"] = usage.cache_write_tokens
        out["prompt_tokens_details"] = details
    if usage.reasoning_tokens or "completion_tokens_details" in out:
        details = dict(out.get("completion_tokens_details") or {})
        details["reasoning_tokens"] = usage.reasoning_tokens
        out["completion_tokens_details"] = details
    return out


def _created(value: Any) -> int:
    """An answer's ``created``; anything but a number is the upstream's protocol error."""
    if type(value) is int:
        return value
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):
        raise UpstreamProtocolError(
            f"upstream 'created' is not a number: {str(value)[:64]!r}"
        ) from None


def _without_choices(raw: Any) -> UpstreamError:
    """Why an answer has no choices: an error object the upstream sent with its 200 (OpenRouter
    and some compatible servers do, ``{"error": {...}}``: its words and the status it names,
    as in a stream), else an answer of the wrong shape."""
    # Imported here: that module reads error bodies with this one's error_from_wire.
    from tollway.wire.openai_stream_errors import is_error_event, stream_error

    if isinstance(raw, dict) and is_error_event(raw):
        return stream_error(raw, "upstream answered 200 with an error")
    return UpstreamProtocolError("upstream answered without a 'choices' array")


def response_from_wire(raw: Any) -> ChatResponse:
    """Canonical response from an upstream Chat Completions body."""
    if not isinstance(raw, dict) or not isinstance(raw.get("choices"), list):
        raise _without_choices(raw)
    try:
        choices = [_choice_from_wire(c) for c in raw["choices"]]
    except (KeyError, TypeError, AttributeError) as exc:
        raise UpstreamProtocolError(f"upstream choice is malformed: {exc}") from None
    get = raw.get
    # Positional, in field order: id, model, created, choices, usage, extra, wire format.
    return ChatResponse(
        str(get("id") or ""),
        str(get("model") or ""),
        _created(get("created")),
        choices,
        usage_from_wire(get("usage")),
        {k: v for k, v in raw.items() if k not in _RESPONSE_KEYS},
        WIRE_FORMAT,
    )


def usage_from_answer(raw: Any) -> ChatResponse:
    """``response_from_wire`` without the choices (left empty) or extras: for an answer the
    client is sent as it came (``ChatRequest.answer_as_is``), which needs only its usage. An
    answer without usage is parsed whole: its content is what its cost is estimated from."""
    if not isinstance(raw, dict) or not isinstance(raw.get("choices"), list):
        raise _without_choices(raw)
    get = raw.get
    usage = usage_from_wire(get("usage"))
    if usage is None:  # the answer itself is then what its cost is estimated from
        return response_from_wire(raw)
    return ChatResponse(
        str(get("id") or ""),
        str(get("model") or ""),
        _created(get("created")),
        [],
        usage,
        {},
        WIRE_FORMAT,
    )


class _InputDetails(msgspec.Struct):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class _OutputDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_details: _InputDetails | None = None
    completion_tokens_details: _OutputDetails | None = None
    prompt_cache_hit_tokens: int = 0


class _Answer(msgspec.Struct):
    id: str = ""
    model: str = ""
    created: int = 0
    choices: list[msgspec.Raw] | None = None
    usage: _Usage | None = None


_ANSWER = msgspec.json.Decoder(_Answer)
"""Reads of an answer only the fields ``usage_from_answer`` takes; the rest is checked to be
JSON and skipped, not made into objects (about half the instructions of a whole parse)."""


def usage_from_answer_bytes(payload: bytes) -> ChatResponse:
    """``usage_from_answer`` of an answer's bytes, for an answer the client is sent as it came:
    the same response and usage, read without parsing the choices. An answer whose fields are
    not of the usual types (``null`` counts, a numeric string) is parsed whole, as before.
    Raises ``ValueError`` (``msgspec.DecodeError``) for bytes that are not JSON."""
    try:
        answer = _ANSWER.decode(payload)
    except msgspec.ValidationError:
        return usage_from_answer(orjson.loads(payload))
    usage = answer.usage
    if answer.choices is None or usage is None:
        # No choices: the 502 usage_from_answer says; no usage: estimated from the content.
        return usage_from_answer(orjson.loads(payload))
    prompt, output = usage.prompt_tokens_details, usage.completion_tokens_details
    # Positional, in field order: id, model, created, choices, usage, extra, wire format.
    return ChatResponse(
        answer.id,
        answer.model,
        answer.created,
        [],
        Usage(
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.prompt_cache_hit_tokens if prompt is None else prompt.cached_tokens,
            0 if prompt is None else prompt.cache_write_tokens,
            0 if output is None else output.reasoning_tokens,
        ),
        {},
        WIRE_FORMAT,
    )


def response_to_wire(response: ChatResponse) -> dict[str, Any]:
    """A Chat Completions body for the client."""
    response = response_for(response, WIRE_FORMAT)
    out: dict[str, Any] = {
        "id": response.id,
        "object": "chat.completion",
        "created": response.created,
        "model": response.model,
        "choices": [_choice_to_wire(c) for c in response.choices],
    }
    if response.usage is not None:
        out["usage"] = usage_to_wire(response.usage)
    out.update(response.extra)
    return out


def _choice_from_wire(raw: dict[str, Any]) -> Choice:
    message = raw["message"]
    get = message.get
    calls = get("tool_calls")
    role: Role = get("role") or "assistant"
    content = get("content")
    if content is not None and not isinstance(content, (str, list)):
        raise TypeError("the message's content is neither text nor parts")
    # Positional, in field order (Message: role, content, name, tool calls, tool call id,
    # extra; Choice: index, message, finish reason, stop sequence, extra).
    wire_message = Message(
        role,
        content,
        None,
        None
        if not calls
        else [
            ToolCall(
                call["id"],
                call["function"]["name"],
                _arguments(call["function"].get("arguments")),
                {k: v for k, v in call.items() if k not in _CALL_KEYS},
            )
            for call in calls
        ],
        None,
        {k: v for k, v in message.items() if k not in _MESSAGE_KEYS},
    )
    return Choice(
        int(raw.get("index") or 0),
        wire_message,
        raw.get("finish_reason"),
        None,
        {k: v for k, v in raw.items() if k not in _CHOICE_KEYS},
    )


def _arguments(raw: Any) -> str:
    """A tool call's arguments: JSON text, as the format has them (never a parsed object)."""
    if raw is None or isinstance(raw, str):
        return raw or ""
    raise TypeError("a tool call's arguments are not a string")


def _choice_to_wire(choice: Choice) -> dict[str, Any]:
    message = choice.message
    wire_message: dict[str, Any] = {
        "role": message.role,
        "content": _content_to_wire(message),
    }
    if message.tool_calls:
        wire_message["tool_calls"] = [
            {
                **call.extra,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
        if isinstance(message.content, list):  # reasoning may sign the calls (Gemini's)
            _sign_calls(wire_message["tool_calls"], signatures_of_calls(message))
    if message.citations:  # another provider's grounding (an OpenAI upstream's is in extra)
        wire_message["annotations"] = [_annotation(c) for c in message.citations]
    wire_message.update(message.extra)
    out: dict[str, Any] = {
        "index": choice.index,
        "message": wire_message,
        "finish_reason": choice.finish_reason,
    }
    out["logprobs"] = None if choice.logprobs is None else logprobs_to_wire(choice.logprobs)
    out.update(choice.extra)
    return out


def logprobs_to_wire(tokens: list[TokenLogprob]) -> dict[str, Any]:
    """Another provider's log probabilities (Gemini's) as a choice's ``logprobs``."""
    return {"content": [_token_to_wire(token) for token in tokens], "refusal": None}


def _token_to_wire(token: TokenLogprob) -> dict[str, Any]:
    return {
        **_scored_to_wire(token),
        "top_logprobs": [_scored_to_wire(alternative) for alternative in token.top],
    }


def _scored_to_wire(token: TokenLogprob) -> dict[str, Any]:
    return {"token": token.token, "logprob": token.logprob, "bytes": list(token.token.encode())}


def _content_to_wire(message: Message) -> str | None:
    """The message's text as OpenAI writes it: an answer that only calls tools, or only
    refuses, has none (``null``), also when reasoning (Claude's thinking, Gemini's thoughts)
    came before."""
    if not isinstance(message.content, list):
        return message.content
    if (message.tool_calls or message.extra.get("refusal")) and not any(
        isinstance(part, TextPart) for part in message.content
    ):
        return None
    return message.text()


def _sign_calls(calls: list[dict[str, Any]], signatures: list[str | None]) -> None:
    for index, signature in enumerate(signatures):
        if signature is not None:
            calls[index] = signed_call(calls[index], signature)


def _annotation(citation: UrlCitation) -> dict[str, Any]:
    return {
        "type": "url_citation",
        "url_citation": {
            "url": citation.url,
            "title": citation.title,
            "start_index": citation.start,
            "end_index": citation.end,
        },
    }


_CHUNK_KEYS = frozenset({"id", "model", "created", "choices", "usage", "object"})
_DELTA_KEYS = frozenset({"role", "content", "tool_calls"})
_CHUNK_CHOICE_KEYS = frozenset({"index", "delta", "finish_reason"})
_CALL_DELTA_KEYS = frozenset({"index", "id", "type", "function"})


class ToolCallSlots:
    """Where each tool call of one stream goes when its server leaves out the deltas'
    ``index`` (Gemini's OpenAI-compatible API, some OpenAI-compatible servers).

    Per choice, a delta whose id differs from the last call's starts the next call, and a
    delta without one (or repeating it) continues the last; read as index 0, every parallel
    call would be merged into the first, its arguments one invalid JSON text.
    """

    __slots__ = ("_last", "placed")

    def __init__(self) -> None:
        self._last: dict[int, tuple[int, str | None]] = {}
        self.placed = False
        """A delta had no ``index``: the stream's events are not the OpenAI shape as sent."""

    def place(self, choice: int, call_id: str | None) -> int:
        """The index of the call a delta without one (with ``call_id``, if any) belongs to."""
        self.placed = True
        last = self._last.get(choice)
        if last is not None and (call_id is None or call_id == last[1]):
            return last[0]
        index = 0 if last is None else last[0] + 1
        self._last[choice] = (index, call_id)
        return index


def chunk_from_wire(raw: Any, slots: ToolCallSlots | None = None) -> ChatChunk:
    """Canonical chunk from one upstream ``chat.completion.chunk`` event; ``slots`` places
    the tool-call deltas a server sends without their ``index`` (else each is index 0).

    This runs for every streamed token, so it reads fields directly rather than through the
    validating helpers; anything malformed still ends as an ``UpstreamProtocolError``.
    """
    try:
        choices = [_chunk_choice_from_wire(c, slots) for c in raw["choices"]]
        usage = raw.get("usage")
        return ChatChunk(
            id=raw.get("id") or "",
            model=raw.get("model") or "",
            created=raw.get("created") or 0,
            choices=choices,
            usage=usage_from_wire(usage) if usage else None,
            extra={k: v for k, v in raw.items() if k not in _CHUNK_KEYS},
            wire_format=WIRE_FORMAT,
        )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise UpstreamProtocolError(f"upstream stream event is malformed: {exc!r}") from None


def _chunk_choice_from_wire(raw: dict[str, Any], slots: ToolCallSlots | None) -> ChunkChoice:
    delta = raw.get("delta") or {}
    calls = delta.get("tool_calls")
    content = delta.get("content")
    if content is not None and not isinstance(content, str):
        raise TypeError(f"delta.content is a {type(content).__name__}, not text")
    index = raw.get("index") or 0
    return ChunkChoice(
        index=index,
        role=delta.get("role"),
        content=content,
        tool_calls=None
        if not calls
        else [_tool_delta_from_wire(call, index, slots) for call in calls],
        finish_reason=raw.get("finish_reason"),
        extra={k: v for k, v in delta.items() if k not in _DELTA_KEYS},
        choice_extra=_choice_extra(raw),
    )


def _choice_extra(raw: dict[str, Any]) -> dict[str, Any] | None:
    """A stream choice's fields beside index, delta and finish reason (``logprobs`` when not
    null, Azure's ``content_filter_results``); ``None`` for the usual choice, which has none."""
    if len(raw) == 4 and raw.get("logprobs", 0) is None:  # index, delta, finish, null logprobs
        return None
    extra = {k: v for k, v in raw.items() if k not in _CHUNK_CHOICE_KEYS}
    if extra.get("logprobs", 0) is None:
        del extra["logprobs"]  # written as null anyway
    return extra or None


def _tool_delta_from_wire(
    call: dict[str, Any], choice: int, slots: ToolCallSlots | None
) -> ToolCallDelta:
    function = call.get("function") or {}
    arguments = function.get("arguments") or ""
    if not isinstance(arguments, str):  # JSON text: an object would be a fragment of nothing
        raise TypeError(f"function.arguments is a {type(arguments).__name__}, not text")
    index = call.get("index")
    if index is None and slots is not None:
        index = slots.place(choice, call.get("id"))
    extra = None
    if not call.keys() <= _CALL_DELTA_KEYS:  # an upstream's own field (Gemini's signature)
        extra = {k: v for k, v in call.items() if k not in _CALL_DELTA_KEYS}
    return ToolCallDelta(
        index=int(index or 0),
        id=call.get("id"),
        name=function.get("name"),
        arguments=arguments,
        extra=extra,
    )


def chunk_to_wire(chunk: ChatChunk, *, include_usage: bool) -> dict[str, Any]:
    """A ``chat.completion.chunk`` event for the client."""
    chunk = chunk_for(chunk, WIRE_FORMAT)
    out: dict[str, Any] = {
        "id": chunk.id,
        "object": "chat.completion.chunk",
        "created": chunk.created,
        "model": chunk.model,
        "choices": [_chunk_choice_to_wire(c) for c in chunk.choices],
    }
    out.update(chunk.extra)
    if include_usage:
        out["usage"] = None if chunk.usage is None else usage_to_wire(chunk.usage)
    return out


def _chunk_choice_to_wire(choice: ChunkChoice) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if choice.role is not None:
        delta["role"] = choice.role
    if choice.content is not None:
        delta["content"] = choice.content
    if choice.tool_calls:
        delta["tool_calls"] = [_tool_delta_to_wire(call) for call in choice.tool_calls]
        # Gemini signs the first call of a step: the chunk that brings it has the signature.
        reasoning = choice.reasoning
        signature = None if reasoning is None else gemini_signature(reasoning.signature)
        if signature is not None:
            delta["tool_calls"][0] = signed_call(delta["tool_calls"][0], signature)
    delta.update(choice.extra)
    logprobs = None if choice.logprobs is None else logprobs_to_wire(choice.logprobs)
    out: dict[str, Any] = {"index": choice.index, "delta": delta, "logprobs": logprobs}
    out["finish_reason"] = choice.finish_reason
    if choice.choice_extra:
        out.update(choice.choice_extra)
    return out


def _tool_delta_to_wire(call: ToolCallDelta) -> dict[str, Any]:
    out: dict[str, Any] = {"index": call.index}
    function: dict[str, Any] = {"arguments": call.arguments}
    if call.id is not None:
        out["id"] = call.id
        out["type"] = "function"
    if call.name is not None:
        function["name"] = call.name
    out["function"] = function
    if call.extra:
        out.update(call.extra)
    return out


def error_from_wire(raw: Any) -> UpstreamErrorBody:
    """An OpenAI-style error body, tolerant of others: its type, code and param are OpenAI's
    vocabulary, passed on to OpenAI clients as they are; a type or code in other words (an
    HTTP status, a class name) is only the error's ``kind``. Azure's ``innererror`` (which
    content filter caught a prompt, at what severity) is kept for OpenAI clients too."""
    if isinstance(raw, dict):
        error = raw.get("error", raw)
        if isinstance(error, dict):
            detail = error.get("detail")
            if isinstance(detail, list) and "message" not in error:
                return _validation_errors(detail)
            message = error.get("message") or detail or str(error)
            error_type = _str_or_none(error.get("type"))
            code = _str_or_none(error.get("code"))
            param = _str_or_none(error.get("param"))
            kind = code or error_type
            inner = error.get("innererror")
            return UpstreamErrorBody(
                str(message),
                _openai_word(error_type),
                _openai_word(code),
                param,
                kind,
                details={"innererror": inner} if isinstance(inner, dict) else None,
            )
        if isinstance(error, str):
            return UpstreamErrorBody(error)
    return UpstreamErrorBody(str(raw)[:500])


# FastAPI's request validation (vLLM's and SGLang's routes before their own handlers, most
# self-hosted servers): a 422 whose ``detail`` lists pydantic errors, each locating the field
# from ``body``: ``{"loc": ["body", "messages", 0, "content"], "msg": "Field required"}``.
_VALIDATION_ROOTS = frozenset({"body", "query", "path", "header"})


def _validation_errors(detail: list[Any]) -> UpstreamErrorBody:
    """FastAPI's validation errors in words (``messages[0].content: Field required``), not the
    list's Python repr, with the first one's field as the ``param``."""
    said: list[str] = []
    first: str | None = None
    for item in detail:
        if not isinstance(item, dict):
            said.append(str(item))
            continue
        loc = item.get("loc")
        steps = list(loc) if isinstance(loc, list) else []
        if steps and steps[0] in _VALIDATION_ROOTS:
            steps = steps[1:]
        # The gateway's own way of naming a field: messages[0].content.
        path = "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in steps)
        field = path.lstrip(".") or None
        first = first or field
        text = str(item.get("msg") or item.get("type") or "invalid")
        said.append(f"{field}: {text}" if field else text)
    return UpstreamErrorBody("; ".join(said) or "invalid request", param=first)


def _openai_word(value: str | None) -> str | None:
    return value if value is not None and _OPENAI_WORD.fullmatch(value) else None


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
