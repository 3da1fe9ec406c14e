"""Bedrock Converse responses, usage, stop reasons and errors, in both directions.

Usage: with prompt caching, Bedrock's ``inputTokens`` counts only the tokens neither read
from nor written to the cache (AWS prompt-caching docs: total input = ``inputTokens`` +
``cacheReadInputTokens`` + ``cacheWriteInputTokens``), as Anthropic's ``input_tokens`` does.
Canonical ``Usage.input_tokens`` includes them, so it is that sum, with the two cache counts
kept as ``cached_input_tokens`` and ``cache_write_tokens``; the reverse on the way out.

A Converse answer carries neither an id nor the model: the id is made here and the model is
the one the request was addressed to.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from tollway.core.errors import (
    InvalidModelOutput,
    InvalidRequest,
    UpstreamError,
    UpstreamErrorBody,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from tollway.core.types import ChatResponse, Choice, FinishReason, Message, Usage
from tollway.wire.bedrock_content import assistant_blocks, assistant_from_wire
from tollway.wire.crossing import response_for

WIRE_FORMAT = "bedrock"

_FINISH_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
    "malformed_model_output": "error",
    "malformed_tool_use": "error",
    "model_context_window_exceeded": "length",
}
_STOP_REASONS: dict[FinishReason | None, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "content_filtered",
    "error": "malformed_model_output",
    None: "end_turn",
}
_UNUSABLE = {
    "malformed_model_output": "the model's output is invalid",
    "malformed_tool_use": "the tool use the model generated is invalid",
}
EXCEPTION_STATUSES = {
    "ValidationException": 400,
    "ServiceQuotaExceededException": 429,  # answered as a 400: below, ``quota_exceeded``
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ModelStreamErrorException": 424,
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}
"""HTTP status of each Bedrock exception (botocore's service model, but for the account's
quota, which is the gateway's and not the request's fault); stream events name them in lower
camel case (``throttlingException``)."""
QUOTA_EXCEEDED = "ServiceQuotaExceededException"
_USAGE_KEYS = frozenset(
    {"inputTokens", "outputTokens", "totalTokens", "cacheReadInputTokens", "cacheWriteInputTokens"}
)
_RESPONSE_KEYS = frozenset({"output", "stopReason", "usage"})


def finish_from_wire(stop_reason: Any) -> tuple[FinishReason | None, dict[str, Any]]:
    """The finish reason, and a choice ``extra`` keeping a stop reason it cannot say exactly."""
    if stop_reason is None:
        return None, {}
    finish = _FINISH_REASONS.get(str(stop_reason), "stop")
    # "stop_sequence" is kept too: Converse does not say which sequence, so it cannot be
    # told from the canonical finish by its ``stop_sequence``.
    exact = _STOP_REASONS[finish] == stop_reason
    return finish, {} if exact else {"stopReason": stop_reason}


def stop_sequence_from_wire(fields: Any) -> str | None:
    """The stop sequence Claude says it stopped at (``additionalModelResponseFields``, when
    the request asked for ``/stop_sequence``), or ``None``."""
    sequence = fields.get("stop_sequence") if isinstance(fields, dict) else None
    return sequence if isinstance(sequence, str) else None


def unusable(stop_reason: Any) -> InvalidModelOutput | None:
    """The failure a ``stopReason`` stands for, if it says that the model's output is
    unusable (``malformed_model_output``, ``malformed_tool_use``): not a finish any client
    API can state (OpenAI's has no such finish reason, and an ``end_turn`` would read as a
    finished answer), but a failed attempt the router may retry or fail over."""
    meaning = _UNUSABLE.get(stop_reason) if isinstance(stop_reason, str) else None
    return None if meaning is None else InvalidModelOutput("Bedrock", stop_reason, meaning)


def stop_reason_to_wire(
    finish: FinishReason | None, stop_sequence: str | None, extra: dict[str, Any]
) -> str:
    """Bedrock's ``stopReason`` for a canonical finish (``extra`` may hold the exact one)."""
    if "stopReason" in extra:
        return str(extra["stopReason"])
    if finish == "stop" and stop_sequence is not None:
        return "stop_sequence"
    return _STOP_REASONS.get(finish, "end_turn")


def usage_from_wire(raw: Any) -> Usage | None:
    """Canonical usage from a Converse ``usage`` object (cache counts folded into input)."""
    if not isinstance(raw, dict):
        return None
    cache_read = int(raw.get("cacheReadInputTokens") or 0)
    cache_write = int(raw.get("cacheWriteInputTokens") or 0)
    return Usage(
        input_tokens=int(raw.get("inputTokens") or 0) + cache_read + cache_write,
        output_tokens=int(raw.get("outputTokens") or 0),
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
        extra={k: v for k, v in raw.items() if k not in _USAGE_KEYS},
        cache_write_1h_tokens=_hour_writes(raw.get("cacheDetails")),
    )


def _hour_writes(details: Any) -> int:
    """Of the cache writes, those made for an hour (``cacheDetails``: the writes by time to
    live, which Claude on Bedrock bills at twice the input rate, not the 1.25x of five
    minutes; the list itself is kept in ``extra``, as it came)."""
    if not isinstance(details, list):
        return 0
    return sum(
        int(detail.get("inputTokens") or 0)
        for detail in details
        if isinstance(detail, dict) and detail.get("ttl") == "1h"
    )


def usage_to_wire(usage: Usage) -> dict[str, Any]:
    """A Converse ``usage`` object; cache counts only when there are some, as Bedrock does."""
    uncached = usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens
    out: dict[str, Any] = {
        **usage.extra,
        "inputTokens": max(uncached, 0),
        "outputTokens": usage.output_tokens,
        "totalTokens": usage.total_tokens,
    }
    if usage.cached_input_tokens:
        out["cacheReadInputTokens"] = usage.cached_input_tokens
    if usage.cache_write_tokens:
        out["cacheWriteInputTokens"] = usage.cache_write_tokens
    return out


def response_from_wire(raw: Any, model: str) -> ChatResponse:
    """Canonical response from a Converse body answering a request to ``model``."""
    output = raw.get("output") if isinstance(raw, dict) else None
    message = output.get("message") if isinstance(output, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise UpstreamProtocolError("upstream answered without 'output.message.content'")
    try:
        answer = assistant_from_wire(message["content"], "output.message.content")
        usage = usage_from_wire(raw.get("usage"))
    except InvalidRequest as exc:
        raise UpstreamProtocolError(f"upstream content is malformed: {exc.message}") from None
    except (TypeError, ValueError) as exc:
        raise UpstreamProtocolError(f"upstream usage is malformed: {exc}") from None
    failure = unusable(raw.get("stopReason"))
    if failure is not None:
        raise failure
    finish, choice_extra = finish_from_wire(raw.get("stopReason"))
    return ChatResponse(
        id=new_id(),
        model=model,
        created=int(time.time()),
        choices=[
            Choice(
                index=0,
                message=answer,
                finish_reason=finish,
                stop_sequence=stop_sequence_from_wire(raw.get("additionalModelResponseFields")),
                extra=choice_extra,
            )
        ],
        usage=usage,
        extra={k: v for k, v in raw.items() if k not in _RESPONSE_KEYS},
        wire_format=WIRE_FORMAT,
    )


def new_id() -> str:
    """An id for an answer (Converse answers have none)."""
    return f"bedrock-{uuid.uuid4().hex}"


def response_to_wire(response: ChatResponse) -> dict[str, Any]:
    """A Converse body from the first choice of ``response``."""
    response = response_for(response, WIRE_FORMAT)
    choice = response.choices[0] if response.choices else None
    message = choice.message if choice is not None else Message(role="assistant", content=None)
    try:
        content = assistant_blocks(message, "choices[0].message")
    except InvalidRequest as exc:
        raise UpstreamProtocolError(
            f"upstream answer cannot be translated: {exc.message}"
        ) from None
    stop_reason = stop_reason_to_wire(
        None if choice is None else choice.finish_reason,
        None if choice is None else choice.stop_sequence,
        {} if choice is None else choice.extra,
    )
    return {
        **response.extra,
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": usage_to_wire(response.usage or Usage()),
    }


def error_from_wire(raw: Any) -> UpstreamErrorBody:
    """A Bedrock error body (``{"message": ...}``): its message, and the exception's name
    (``ThrottlingException``) as the kind."""
    if isinstance(raw, dict):
        message = raw.get("message") or raw.get("Message")
        nested = raw.get("error")
        if not message and isinstance(nested, dict):  # a proxy's OpenAI-shaped error
            message = nested.get("message")
        # Else its JSON, bounded: not Python's repr of it, nor all of a large body.
        message = message or orjson.dumps(raw).decode()[:500]
        kind = raw.get("__type")
        name = str(kind).rsplit("#", 1)[-1].split(":", 1)[0] if kind else None
        return UpstreamErrorBody(str(message), kind=name)
    return UpstreamErrorBody(str(raw)[:500])


def quota_exceeded(error: UpstreamStatusError) -> UpstreamStatusError | None:
    """The rate limit ``error`` is when it is Bedrock's ``ServiceQuotaExceededException``.

    Bedrock answers it with a 400, but it says the gateway's AWS account used up a quota ("You
    can resubmit your request later", AWS's API reference), not that the client's request is
    invalid: passed on as a 400, the client was told to change a request that was fine, and no
    other deployment (another account or region) was tried. As a 429 the deployment rests and
    the next candidate serves, as for ``ThrottlingException``."""
    if error.kind != QUOTA_EXCEEDED or error.upstream_status == 429:
        return None
    return UpstreamStatusError(
        429, error.message, retry_after=error.retry_after, kind=error.kind, detail=error.detail
    )


def exception_error(kind: str, message: str) -> UpstreamError:
    """The failure an exception event (``:exception-type`` ``kind``) of a stream reports."""
    name = kind[:1].upper() + kind[1:]
    status = EXCEPTION_STATUSES.get(name, 500)
    return UpstreamStatusError(status, f"upstream stream failed: {message}", kind=name)
