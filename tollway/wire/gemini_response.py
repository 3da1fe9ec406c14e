"""Gemini answers, usage, finish reasons and errors, in both directions.

Usage: ``promptTokenCount`` already includes the cached tokens (``cachedContentTokenCount``),
as canonical input does. Tokens of built-in tool results (``toolUsePromptTokenCount``) are
billed as input, so they are added to it. Thinking tokens (``thoughtsTokenCount``) are billed
at the output price but are not in ``candidatesTokenCount``; canonical output is the sum of the
two, with the thoughts also counted as ``reasoning_tokens`` (as OpenAI's usage does). The
Google Search queries grounding ran (each candidate's ``groundingMetadata.webSearchQueries``)
are the usage's ``web_search`` calls, which Google bills on top (``pricing/tools.py``); code
execution and URL context cost only their tokens, counted above.

Finish reasons: ``STOP`` is ``stop``, or ``tool_calls`` when the candidate called functions;
``MAX_TOKENS`` is ``length``; the safety, recitation and blocklist family is
``content_filter``; anything else (``OTHER``, ...) is ``stop``, and the choice's ``extra`` keeps
Gemini's reason whenever the canonical one does not say it exactly. The reasons that say the
model's output is unusable (``MALFORMED_FUNCTION_CALL``, ``UNEXPECTED_TOOL_CALL``,
``TOO_MANY_TOOL_CALLS``, ``MISSING_THOUGHT_SIGNATURE``, ``MALFORMED_RESPONSE``: the candidate
then holds no call, often nothing at all) are not finish reasons but failures
(``InvalidModelOutput``, see ``unusable``), as Bedrock's ``malformed_tool_use`` is: read as
``stop``, they were an empty answer that said it was finished.
A grounded candidate's sources and the stretches of text they support (``groundingMetadata``)
are the message's ``citations``, and the queries it ran its ``web_searches`` (a Responses
client's ``web_search_call`` items; ``gemini_grounding``); the metadata itself stays in the
choice's ``extra`` for a Gemini client.
Thought summaries (``thought: true`` parts) and thought signatures are reasoning parts
before the answer (``gemini_content``); a Gemini client is given them back as they came.
"""

from __future__ import annotations

import math
import time
from typing import Any

from tollway.core.errors import (
    InvalidModelOutput,
    InvalidRequest,
    UpstreamError,
    UpstreamErrorBody,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from tollway.core.types import ChatResponse, Choice, FinishReason, Message, Usage
from tollway.pricing.tools import gemini_calls
from tollway.wire.crossing import response_for
from tollway.wire.gemini_content import (
    answer_from_wire,
    answer_key,
    assistant_parts,
    parts_from_wire,
)
from tollway.wire.gemini_grounding import citations_from_grounding, search_queries
from tollway.wire.gemini_logprobs import logprobs_from_wire

WIRE_FORMAT = "gemini"

_FILTERED = frozenset(
    {
        "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR",
    }
)  # fmt: skip
_UNUSABLE = {
    "MALFORMED_FUNCTION_CALL": "the function call the model generated is invalid",
    "UNEXPECTED_TOOL_CALL": "the model called a tool the request did not offer",
    "TOO_MANY_TOOL_CALLS": "the model called tools too many times in a row",
    "MISSING_THOUGHT_SIGNATURE": "a model turn of the request lacks the thought signature the "
    "model gave it",
    "MALFORMED_RESPONSE": "the response the model generated is malformed",
}
_FINISH_REASONS_OUT: dict[FinishReason | None, str] = {
    "stop": "STOP",
    "length": "MAX_TOKENS",
    "tool_calls": "STOP",
    "content_filter": "SAFETY",
    "error": "OTHER",
    None: "STOP",
}
_MODELLED_USAGE = frozenset(
    {
        "promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount",
        "cachedContentTokenCount", "totalTokenCount",
    }
)  # fmt: skip
_RETRY_INFO = "google.rpc.RetryInfo"
_ERROR_INFO = "google.rpc.ErrorInfo"
_KEY_REFUSALS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})
# The Gemini API's 400 FAILED_PRECONDITION: "Gemini API free tier is not available in your
# country. Please enable billing on your project" (its documented meaning on generateContent):
# the deployment's account cannot be served until it pays, as a 402 says, never the client's
# malformed request; another deployment may still serve.
_UNPAID = "FAILED_PRECONDITION"
_CANDIDATE_KEYS = frozenset({"content", "finishReason", "index"})
_RESPONSE_KEYS = frozenset({"candidates", "usageMetadata", "modelVersion", "responseId"})


def finish_from_wire(reason: Any, called: bool) -> tuple[FinishReason | None, dict[str, Any]]:
    """The finish reason (``called``: the candidate called functions), and a choice ``extra``
    keeping Gemini's reason when the canonical one cannot say it exactly."""
    if reason is None:
        return None, {}
    reason = str(reason)
    finish: FinishReason
    if reason == "MAX_TOKENS":
        finish = "length"
    elif reason in _FILTERED:
        finish = "content_filter"
    else:
        finish = "tool_calls" if called and reason == "STOP" else "stop"
    exact = _FINISH_REASONS_OUT[finish] == reason
    return finish, {} if exact else {"finishReason": reason}


def unusable(reason: Any) -> InvalidModelOutput | None:
    """The failure a candidate's ``finishReason`` stands for, if it says that the model's
    output is unusable."""
    meaning = _UNUSABLE.get(reason) if isinstance(reason, str) else None
    return None if meaning is None else InvalidModelOutput("Gemini", reason, meaning)


def finish_to_wire(finish: FinishReason | None, extra: dict[str, Any]) -> str:
    """Gemini's ``finishReason`` for a canonical finish (``extra`` may hold the exact one)."""
    if "finishReason" in extra:
        return str(extra["finishReason"])
    return _FINISH_REASONS_OUT.get(finish, "STOP")  # an upstream may send reasons of its own


def usage_from_wire(raw: Any) -> Usage | None:
    """Canonical usage from ``usageMetadata`` (thoughts counted as output, see above)."""
    if not isinstance(raw, dict):
        return None
    thoughts = int(raw.get("thoughtsTokenCount") or 0)
    tool_prompt = int(raw.get("toolUsePromptTokenCount") or 0)
    return Usage(
        input_tokens=int(raw.get("promptTokenCount") or 0) + tool_prompt,
        output_tokens=int(raw.get("candidatesTokenCount") or 0) + thoughts,
        cached_input_tokens=int(raw.get("cachedContentTokenCount") or 0),
        reasoning_tokens=thoughts,
        extra={k: v for k, v in raw.items() if k not in _MODELLED_USAGE},
    )


def usage_to_wire(usage: Usage) -> dict[str, Any]:
    """A ``usageMetadata`` object; details the gateway does not model are kept."""
    tool_prompt = int(usage.extra.get("toolUsePromptTokenCount") or 0)
    out: dict[str, Any] = {
        **usage.extra,
        "promptTokenCount": usage.input_tokens - tool_prompt,
        "candidatesTokenCount": usage.output_tokens - usage.reasoning_tokens,
        "totalTokenCount": usage.total_tokens,
    }
    if usage.cached_input_tokens:
        out["cachedContentTokenCount"] = usage.cached_input_tokens
    if usage.reasoning_tokens:
        out["thoughtsTokenCount"] = usage.reasoning_tokens
    return out


def candidate_from_wire(raw: Any, position: int, answer: str = "") -> Choice:
    """One candidate as a choice: its text (thoughts left out) and its function calls
    (``answer``: the answer's key, for their ids)."""
    if not isinstance(raw, dict):
        raise UpstreamProtocolError("upstream candidate is not an object")
    failure = unusable(raw.get("finishReason"))
    if failure is not None:
        raise failure
    content = raw.get("content") or {}
    param = f"candidates[{position}].content.parts"
    parts = parts_from_wire(content.get("parts") or [], param)
    said, calls = answer_from_wire(parts, param, answer)
    finish, extra = finish_from_wire(raw.get("finishReason"), bool(calls))
    extra.update((k, v) for k, v in raw.items() if k not in _CANDIDATE_KEYS)
    grounding = raw.get("groundingMetadata")
    return Choice(
        index=int(raw.get("index") or 0),
        message=Message(
            role="assistant",
            content=None if calls and not said else said,
            tool_calls=calls or None,
            citations=None if grounding is None else citations_from_grounding(grounding, parts),
            web_searches=search_queries(grounding),
        ),
        finish_reason=finish,
        extra=extra,
        logprobs=logprobs_from_wire(raw.get("logprobsResult")),
    )


def response_from_wire(raw: Any, asked: int = 1) -> ChatResponse:
    """Canonical response from an upstream ``GenerateContentResponse``; ``asked``: how many
    candidates the request asked for (a blocked prompt gets that many empty choices)."""
    if not isinstance(raw, dict):
        raise UpstreamProtocolError("upstream answer is not a JSON object")
    if "error" in raw and "candidates" not in raw:
        # Google's error object with a 200 (a proxy in front of Gemini passing on a quota's
        # 429): its words, status and wait, as in a stream, not "no candidates".
        raise stream_error(raw, "upstream answered 200 with an error")
    try:
        response_id = str(raw.get("responseId") or "")
        candidates = raw.get("candidates") or ()
        choices = [
            candidate_from_wire(c, i, answer_key(response_id, i)) for i, c in enumerate(candidates)
        ]
        usage = usage_from_wire(raw.get("usageMetadata"))
        if usage is not None:
            usage.tool_calls = gemini_calls(candidates)
    except InvalidRequest as exc:
        raise UpstreamProtocolError(f"upstream content is malformed: {exc.message}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise UpstreamProtocolError(f"upstream answer is malformed: {exc}") from None
    if not choices:
        choices = blocked_choices(raw, asked)
    return ChatResponse(
        id=str(raw.get("responseId") or ""),
        model=str(raw.get("modelVersion") or ""),
        created=int(time.time()),  # Gemini answers carry no Unix timestamp
        choices=choices,
        usage=usage,
        extra={k: v for k, v in raw.items() if k not in _RESPONSE_KEYS},
        wire_format=WIRE_FORMAT,
    )


def prompt_blocked(raw: dict[str, Any]) -> bool:
    """Whether an answer (or stream event) says the prompt itself was blocked: its
    ``promptFeedback`` has a ``blockReason`` ("If set, the prompt was blocked and no candidates
    are returned"); feedback without one only rates the prompt's safety."""
    feedback = raw.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def blocked_choices(raw: dict[str, Any], asked: int) -> list[Choice]:
    """The empty choices of an answer without candidates, the prompt itself blocked: each of
    the ``asked`` ones ends with ``content_filter``, as one does (a client that asked for
    ``n`` reads ``n`` choices)."""
    if not isinstance(raw.get("promptFeedback"), dict):
        raise UpstreamProtocolError("upstream answered without candidates")
    return [
        Choice(
            index=index,
            message=Message(role="assistant", content=""),
            finish_reason="content_filter",
        )
        for index in range(max(asked, 1))
    ]


def response_to_wire(response: ChatResponse) -> dict[str, Any]:
    """A ``GenerateContentResponse`` for a client of the Gemini API."""
    # Another API's reasoning is not shown: a Gemini client is shown thoughts it asked for.
    own = response.wire_format == WIRE_FORMAT
    response = response_for(response, WIRE_FORMAT)
    out: dict[str, Any] = {
        "candidates": [_candidate_to_wire(choice, own) for choice in response.choices],
    }
    if response.usage is not None:
        out["usageMetadata"] = usage_to_wire(response.usage)
    out["modelVersion"] = response.model
    out["responseId"] = response.id
    out.update(response.extra)
    return out


def _candidate_to_wire(choice: Choice, thoughts: bool) -> dict[str, Any]:
    try:
        parts = assistant_parts(choice.message, "choices", foreign=False, thoughts=thoughts)
    except InvalidRequest as exc:
        # Tool-call arguments the upstream model wrote are not a JSON object.
        reason = f"upstream answer cannot be translated: {exc.message}"
        raise UpstreamProtocolError(reason) from None
    extra = {k: v for k, v in choice.extra.items() if k != "finishReason"}
    return {
        "content": {"role": "model", "parts": parts},
        "finishReason": finish_to_wire(choice.finish_reason, choice.extra),
        "index": choice.index,
        **extra,
    }


def error_from_wire(raw: Any) -> UpstreamErrorBody:
    """A Google error body: its message, and its ``status`` (a gRPC code name) as the kind.

    As for Anthropic, the type and code are left to the gateway, which names them in each
    dialect's terms. A refused API key (``_key_refused``) stands for a 401, and a
    ``FAILED_PRECONDITION`` (billing not set up) for a 402 (``_UNPAID``).
    """
    if isinstance(raw, list) and raw:
        raw = raw[0]  # the JSON-array form of streamGenerateContent wraps errors in a list
    if isinstance(raw, dict):
        error = raw.get("error")
        if isinstance(error, dict):
            status = error.get("status")
            message = error.get("message") or str(error)
            details = error.get("details")
            return UpstreamErrorBody(
                str(message),
                kind=None if status is None else str(status),
                retry_after=_retry_delay(details),
                status=401 if _key_refused(details) else _unpaid(error),
            )
        if isinstance(error, str):
            return UpstreamErrorBody(error)
    return UpstreamErrorBody(str(raw)[:500])


def _key_refused(details: Any) -> bool:
    """Whether a ``google.rpc.ErrorInfo`` detail says the API key was refused: the Gemini
    API answers a wrong or expired key with a 400 ``INVALID_ARGUMENT`` (reason
    ``API_KEY_INVALID``, ``API_KEY_EXPIRED``), which is the deployment's credential failing
    (the gateway's, never the client's), as a 401 is: a 502 for the client, in words that do
    not read as its own key being wrong, and another deployment may still serve."""
    if not isinstance(details, list):
        return False
    return any(
        isinstance(detail, dict)
        and str(detail.get("@type", "")).endswith(_ERROR_INFO)
        and detail.get("reason") in _KEY_REFUSALS
        for detail in details
    )


def _unpaid(error: dict[str, Any]) -> int | None:
    """402 for a 400 ``FAILED_PRECONDITION`` (``_UNPAID``), else no status of its own."""
    return 402 if error.get("code") == 400 and error.get("status") == _UNPAID else None


def _retry_delay(details: Any) -> str | None:
    """The wait a ``google.rpc.RetryInfo`` detail asks for (``"23s"``, ``"0.5s"``), as
    delta-seconds to the millisecond (clients get it whole, rounded up, and in
    ``retry-after-ms``): Google says it there, never in a ``retry-after`` header."""
    if not isinstance(details, list):
        return None
    for detail in details:
        if not isinstance(detail, dict) or not str(detail.get("@type", "")).endswith(_RETRY_INFO):
            continue
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                seconds = float(delay[:-1])
            except ValueError:
                return None
            if math.isfinite(seconds) and seconds >= 0:
                return f"{math.ceil(seconds * 1000) / 1000:.3f}".rstrip("0").rstrip(".")
    return None


def stream_error(raw: Any, said: str = "upstream stream failed") -> UpstreamError:
    """The failure an ``error`` object in the middle of a stream reports (or, with ``said`` in
    other words, a whole answer of 200 that is such an object)."""
    body = error_from_wire(raw)
    error = raw.get("error") if isinstance(raw, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    http_status = body.status or (code if isinstance(code, int) and 400 <= code <= 599 else 500)
    message = f"{said}: {body.message}"
    return UpstreamStatusError(http_status, message, kind=body.kind, retry_after=body.retry_after)
