"""The error events an OpenAI-format stream can end with, classified by what they say.

A server that has answered 200 can only report a later failure inside the stream: a ``data:``
event whose JSON holds an ``error`` (the ``openai`` SDK raises on any such event). Each family
of servers words it its own way:

    OpenAI          ``{"error": {"message", "type", "param", "code"}}`` in OpenAI's words
                    (``service_unavailable_error`` / ``server_is_overloaded``, ``requests`` /
                    ``rate_limit_exceeded``, ``server_error``)
    vLLM, SGLang    the same object, the exception's class name as its ``type`` and the HTTP
                    status as its ``code`` (older vLLM: the object alone, ``"object": "error"``)
    OpenRouter      ``{"error": {"code": <status> or "server_error", "message"}}`` in a chunk
                    whose choice also ends, with ``finish_reason: "error"``
    Groq            OpenAI's words, and ``status_code`` beside them
    TGI             ``{"error": {"message", "http_status_code"}}``; before, the message alone
                    with an ``error_type`` beside it (``overloaded``, ``validation``, ...)
    Azure, LiteLLM  the status as a string ``code`` (``"429"``, ``"503"``)

``stream_error`` turns one into the ``UpstreamStatusError`` an answer with the status it carries
(else the status its words mean) raises, so each client API is told the failure in its own
terms: Anthropic's ``overloaded_error``, ``rate_limit_error``, ``invalid_request_error`` or
``api_error``; the upstream's own type and code for OpenAI's.
"""

from __future__ import annotations

from typing import Any

from tollway.core.errors import UpstreamStatusError
from tollway.wire.openai_response import error_from_wire

# Where servers put the HTTP status an error stands for, most explicit first.
_STATUS_FIELDS = ("status_code", "http_status_code", "code", "status")
# Words (in a type, code or TGI's error_type) that say what the failure is, as fragments of
# a lower-cased word: "overloaded" is in OpenAI's server_is_overloaded, Anthropic's
# overloaded_error, Moonshot's engine_overloaded_error and TGI's overloaded.
_OVERLOADED = ("overloaded", "service_unavailable", "serviceunavailable")
_RATE_LIMITED = ("rate_limit", "ratelimit", "too_many_requests", "insufficient_quota")
_RATE_LIMIT_TYPES = frozenset({"requests", "tokens"})  # OpenAI's types of a 429
_REFUSED = frozenset(
    {"invalid_request_error", "context_length_exceeded", "badrequesterror", "validation"}
)


def is_error_event(raw: dict[str, Any]) -> bool:
    """Whether a stream event reports a failure: it holds an ``error`` (with choices too, as
    OpenRouter sends it), or is an error object itself (older vLLM)."""
    return bool(raw.get("error")) or raw.get("object") == "error"


def stream_error(raw: dict[str, Any], said: str = "upstream stream failed") -> UpstreamStatusError:
    """The failure an error event in the middle of an OpenAI-format stream reports (or, with
    ``said`` in other words, a whole answer of 200 that is such an error object).

    Always worth another candidate while nothing was sent: the upstream had accepted the
    request (its 200 is sent), so even a refusal is about this attempt, e.g. Groq's
    ``tool_use_failed`` for a tool call its model wrote wrong.
    """
    body = error_from_wire(raw)
    fields = raw.get("error", raw)
    if not isinstance(fields, dict):
        fields = {}
    words = [
        value.lower()
        for value in (fields.get("type"), fields.get("code"), raw.get("error_type"))
        if isinstance(value, str)
    ]
    error_type = raw.get("error_type")
    kind = body.kind or (error_type if isinstance(error_type, str) else None)
    failure = UpstreamStatusError(
        _status_given(fields) or _status_meant(words),
        f"{said}: {body.message}",
        error_type=body.type,
        code=body.code,
        param=body.param,
        kind=kind,
        own_type=True,
    )
    failure.retryable = True
    return failure


def _status_given(fields: dict[str, Any]) -> int | None:
    """The HTTP status an error object names, if any (as a number, or digits in a string)."""
    for name in _STATUS_FIELDS:
        value = fields.get(name)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if type(value) is int and 400 <= value <= 599:
            return value
    return None


def _status_meant(words: list[str]) -> int:
    """The HTTP status an error's words mean: an overload, a rate limit, a refused request,
    else a failure of the server's own (500)."""
    if any(fragment in word for word in words for fragment in _OVERLOADED):
        return 503
    if any(fragment in word for word in words for fragment in _RATE_LIMITED):
        return 429
    if any(word in _RATE_LIMIT_TYPES for word in words):
        return 429
    if any(word in _REFUSED for word in words):
        return 400
    return 500
