"""What every simulated API call goes through before and after its dialect's own logic.

``admit`` reads and records the request, enforces the API key and applies faults and latency
knobs; ``send_stream`` writes a server-sent-event stream honouring time per token and
``stop-after`` (``error-after``, ``hang-after``); ``delay`` sleeps for a non-streaming reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tollway.simulator import eventstream
from tollway.simulator.errors import (
    Dialect,
    error_response,
    google_error_response,
    overload_event,
    overload_status,
    reason,
)
from tollway.simulator.faults import close_connection, echoed_credentials, reset_connection
from tollway.simulator.settings import SimulatorSettings
from tollway.simulator.state import SimulatorState

HANG_SECONDS = 3600.0
KEEPALIVE_SECONDS = 0.1
"""How often a ``keepalive`` stream sends its comment."""
_KEEPALIVE = b": keep-alive\n\n"
DEFAULT_RETRY_AFTER = "1"
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}

# An SSE stream as (bytes, is_token): token parts are paced by tpot and counted by stop-after.
StreamParts = list[tuple[bytes, bool]]
Authorizer = Callable[[web.BaseRequest, SimulatorSettings, str], Awaitable[web.Response | None]]
"""A dialect's own credential check (request, settings, request id): a refusal, or None."""


@dataclass(slots=True)
class Call:
    """An admitted request: its JSON body and the latency knobs in force for it."""

    body: dict[str, Any]
    request_id: str
    ttft: float
    tpot: float
    output_tokens: int
    stop_after: int | None
    omit_usage: bool = False
    """``x-sim-usage: omit``: an OpenAI answer without its ``usage``, complete or streamed
    (whatever ``stream_options`` asks), as some OpenAI-compatible servers send it."""
    interleave_tools: bool = False
    """``x-sim-tool-calls: interleave``: an OpenAI stream of parallel tool calls sends their
    fragments in turn (every call's header, then one fragment of each), as some
    OpenAI-compatible servers do."""
    unindexed_tools: bool = False
    """``x-sim-tool-calls: unindexed``: an OpenAI stream's tool-call deltas leave out their
    ``index`` (a new call is told by its id), as Gemini's OpenAI-compatible API and some
    OpenAI-compatible servers send them."""
    finish_reason: str | None = None
    """``x-sim-finish-reason``: the reason a Gemini or Bedrock answer ends with, in that API's
    own words (``MALFORMED_FUNCTION_CALL``, ``malformed_tool_use``), instead of its own."""
    refusal: str | None = None
    """``x-sim-refusal``: the words an OpenAI or Anthropic answer declines in (OpenAI's
    ``refusal``; Anthropic's text with ``stop_reason: "refusal"``)."""
    reasoning_field: str | None = None
    """``x-sim-reasoning``: the field an OpenAI-format answer says its reasoning in, as
    OpenAI-compatible servers do (``reasoning_content``: DeepSeek, vLLM; ``reasoning``: Groq,
    OpenRouter)."""
    sign_last_text: bool = False
    """``x-sim-signature: last-text``: a streamed Gemini answer without calls carries its
    ``thoughtSignature`` on its last text piece rather than on an empty part after it (Gemini
    sends both)."""
    stream_error: bytes | None = None
    """``error-after``: the event that ends the stream once ``stop_after`` tokens are sent
    (the API's overload error, or an OpenAI-format stream's ``x-sim-stream-error``), instead
    of a dropped connection."""
    searches: int = 1
    """``x-sim-searches``: how many web searches a model that searches makes (Responses
    ``web_search_call`` items, Anthropic ``server_tool_use`` blocks), within the request's
    own bound (``max_tool_calls``, ``max_uses``)."""
    silence: asyncio.Event | None = None
    """``hang-after``: the stream falls silent once ``stop_after`` tokens are sent, its
    connection open, until this is set (the simulator stopping) or the caller leaves."""
    keep_alive: bytes | None = None
    """``keepalive``, ``keepalive-after``: what the stream sends every ``KEEPALIVE_SECONDS``
    while it is silent (an SSE comment; nothing in a binary framing)."""
    headless: bool = False
    """``keepalive``: not even the stream's head is sent, only keep-alives."""
    events: str | None = None
    """``x-sim-events``: how a Bedrock stream's last events differ from Bedrock's own order
    (``metadata-first``: ``metadata`` before ``messageStop``; ``no-stop``: no
    ``messageStop``; ``no-metadata``: no ``metadata``)."""
    cached_tokens: int = 0
    """``x-sim-cached-tokens``: prompt tokens to report as read from the prompt cache."""
    cache_write_tokens: int = 0
    """``x-sim-cache-write-tokens``: prompt tokens to report as written to the cache."""


def _has_key(request: web.BaseRequest, key: str) -> bool:
    headers = request.headers
    auth = headers.get("Authorization")
    if auth is not None and auth.startswith("Bearer ") and auth[7:].strip() == key:
        return True
    return headers.get("api-key") == key or headers.get("x-api-key") == key


def _auth_error(dialect: Dialect, request_id: str) -> web.Response:
    if dialect is Dialect.ANTHROPIC:
        message = "invalid x-api-key"
    elif dialect is Dialect.AZURE:
        message = (
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
            "provide a valid key for an active subscription and use a correct regional API "
            "endpoint for your resource."
        )
    else:
        message = "Incorrect API key provided. You can find your API key in your account."
    return error_response(dialect, 401, message, request_id=request_id)


def _knob(request: web.BaseRequest, name: str, default: float) -> float:
    raw = request.headers.get(name)
    if raw is None:
        return default
    value = float(raw)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite non-negative number")
    return value


async def _parse_body(request: web.BaseRequest) -> tuple[Any, bool]:
    if not request.body_exists:
        return None, False
    raw = await request.read()
    if not raw:
        return None, False
    try:
        return orjson.loads(raw), False
    except orjson.JSONDecodeError:
        return None, True


async def admit(
    request: web.BaseRequest,
    state: SimulatorState,
    dialect: Dialect,
    *,
    streaming: bool | None = None,
    authorize: Authorizer | None = None,
) -> Call | web.StreamResponse:
    """Record, authenticate and fault-inject a request; a response means "answer with this".

    ``streaming``: whether it asks for a stream, for APIs that say so by path rather than by a
    ``stream`` field; ``authorize``: a check replacing the API key one.
    """
    body, malformed = await _parse_body(request)
    state.record(request, body)
    settings = state.settings
    request_id = state.new_id("req_")
    if authorize is not None:
        denied = await authorize(request, settings, request_id)
        if denied is not None:
            return denied
    elif settings.api_key is not None and not _has_key(request, settings.api_key):
        return _auth_error(dialect, request_id)
    if dialect is Dialect.ANTHROPIC and "anthropic-version" not in request.headers:
        message = "anthropic-version: header is required"
        return error_response(dialect, 400, message, request_id=request_id)
    try:
        fault = state.pick_fault(request.headers.get("x-sim-fault"))
        ttft = _knob(request, "x-sim-ttft-ms", settings.ttft_ms) / 1000.0
        tpot = _knob(request, "x-sim-tpot-ms", settings.tpot_ms) / 1000.0
        output_tokens = int(_knob(request, "x-sim-output-tokens", settings.output_tokens))
        omit_usage = _usage_knob(request.headers.get("x-sim-usage"))
        tool_calls = _tool_calls_knob(request.headers.get("x-sim-tool-calls"))
        finish_reason = _finish_reason_knob(request.headers.get("x-sim-finish-reason"))
        refusal = _refusal_knob(request.headers.get("x-sim-refusal"))
        reasoning_field = _reasoning_knob(request.headers.get("x-sim-reasoning"))
        sign_last_text = _signature_knob(request.headers.get("x-sim-signature"))
        own_error = _stream_error_knob(request.headers.get("x-sim-stream-error"), dialect)
        searches = int(_knob(request, "x-sim-searches", 1))
        events = _events_knob(request.headers.get("x-sim-events"))
        cached = int(_knob(request, "x-sim-cached-tokens", settings.cached_tokens))
        cache_writes = int(_knob(request, "x-sim-cache-write-tokens", settings.cache_write_tokens))
    except ValueError as exc:
        return error_response(dialect, 400, f"simulator: {exc}", request_id=request_id)
    stop_after = None
    stream_error = None
    silence = None
    keep_alive = None
    headless = False
    if fault is not None:
        if fault.kind == "status":
            return _status_fault(request, dialect, fault.value, request_id)
        streams = _streaming(body) if streaming is None else streaming
        if fault.kind == "echo" or (fault.kind == "echo-after" and not streams):
            status = fault.value if fault.kind == "echo" else 500
            message = echoed_credentials(request)
            return error_response(dialect, status, message, request_id=request_id)
        if fault.kind == "reset" or (fault.kind == "stop-after" and not streams):
            return reset_connection(request)
        if fault.kind == "error-after" and not streams:
            return _status_fault(request, dialect, overload_status(dialect), request_id)
        if fault.kind == "hang" or (fault.kind in _SILENT_AFTER and not streams):
            return await _hang(request, state)
        stop_after = fault.value
        if fault.kind in ("keepalive", "keepalive-after"):
            silence = state.stopping
            keep_alive = None if dialect is Dialect.BEDROCK else _KEEPALIVE
            headless = fault.kind == "keepalive"
        elif fault.kind == "error-after":
            stream_error = own_error or overload_event(dialect, request_id)
        elif fault.kind == "hang-after":
            silence = state.stopping
        elif fault.kind == "echo-after":
            stream_error = overload_event(dialect, request_id, echoed_credentials(request))
    if request.method == "GET":
        body = {}
    elif malformed or not isinstance(body, dict):
        return _bad_body(dialect, request_id, malformed)
    output_tokens = max(output_tokens, 1)
    return Call(
        body,
        request_id,
        ttft,
        tpot,
        output_tokens,
        stop_after,
        omit_usage,
        interleave_tools=tool_calls == "interleave",
        unindexed_tools=tool_calls == "unindexed",
        finish_reason=finish_reason,
        refusal=refusal,
        reasoning_field=reasoning_field,
        sign_last_text=sign_last_text,
        stream_error=stream_error,
        silence=silence,
        searches=searches,
        keep_alive=keep_alive,
        headless=headless,
        events=events,
        cached_tokens=cached,
        cache_write_tokens=cache_writes,
    )


_SILENT_AFTER = ("hang-after", "keepalive", "keepalive-after")
"""Faults of streams that fall silent: a request for an answer in one piece hangs."""


_OPENAI_FORMATS = (Dialect.OPENAI, Dialect.AZURE, Dialect.MISTRAL)


def _stream_error_knob(value: str | None, dialect: Dialect) -> bytes | None:
    """The ``data:`` event ``x-sim-stream-error`` asks an OpenAI-format stream to end with
    (its JSON sent as it is: OpenAI's shape, or a compatible server's own), or the exception
    message a Bedrock stream ends with (``{"exception": "throttlingException", "message":
    ...}``); other APIs end theirs with their own overload error, whatever it says."""
    if value is None or (dialect not in _OPENAI_FORMATS and dialect is not Dialect.BEDROCK):
        return None
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ValueError("x-sim-stream-error must be a JSON object") from None
    if not isinstance(event, dict):
        raise ValueError("x-sim-stream-error must be a JSON object")
    if dialect is Dialect.BEDROCK:
        kind, message = event.get("exception"), event.get("message", "simulated exception")
        if not isinstance(kind, str) or not kind or not isinstance(message, str):
            raise ValueError("x-sim-stream-error needs 'exception' (and 'message') as text")
        return eventstream.exception(kind, message)
    return b"data: " + orjson.dumps(event) + b"\n\n"


EVENT_ORDERS = ("metadata-first", "no-stop", "no-metadata")
"""What ``x-sim-events`` may ask of a Bedrock stream's last events."""


def _events_knob(value: str | None) -> str | None:
    """How ``x-sim-events`` asks a Bedrock stream to end, if not as Bedrock ends it."""
    if value is None:
        return None
    order = value.strip().lower()
    if order not in EVENT_ORDERS:
        raise ValueError(f"x-sim-events must be one of {', '.join(EVENT_ORDERS)}, not {value!r}")
    return order


def _refusal_knob(value: str | None) -> str | None:
    """The words ``x-sim-refusal`` asks an answer to decline in."""
    if value is None:
        return None
    if not value.strip():
        raise ValueError("x-sim-refusal must hold the words of the refusal")
    return value.strip()


def _signature_knob(value: str | None) -> bool:
    """Whether ``x-sim-signature`` asks to sign a Gemini stream's last text piece."""
    if value is None:
        return False
    if value.strip().lower() != "last-text":
        raise ValueError(f"x-sim-signature must be 'last-text', not {value!r}")
    return True


def _reasoning_knob(value: str | None) -> str | None:
    """The field ``x-sim-reasoning`` asks an OpenAI-format answer to reason in."""
    if value is None:
        return None
    field = value.strip().lower()
    if field not in ("reasoning_content", "reasoning"):
        message = f"x-sim-reasoning must be 'reasoning_content' or 'reasoning', not {value!r}"
        raise ValueError(message)
    return field


def _usage_knob(value: str | None) -> bool:
    """Whether ``x-sim-usage`` asks for an answer without usage."""
    if value is None:
        return False
    if value.strip().lower() != "omit":
        raise ValueError(f"x-sim-usage must be 'omit', not {value!r}")
    return True


def _tool_calls_knob(value: str | None) -> str | None:
    """How ``x-sim-tool-calls`` asks for tool calls to be streamed: ``interleave`` (parallel
    calls' fragments in turn), ``unindexed`` (deltas without ``index``) or as usual."""
    if value is None:
        return None
    mode = value.strip().lower()
    if mode not in ("interleave", "unindexed"):
        raise ValueError(f"x-sim-tool-calls must be 'interleave' or 'unindexed', not {value!r}")
    return mode


def _finish_reason_knob(value: str | None) -> str | None:
    """The finish reason ``x-sim-finish-reason`` asks for (a word such as ``OTHER``)."""
    if value is None:
        return None
    reason = value.strip()
    if not reason.replace("_", "").isalnum():
        raise ValueError(f"x-sim-finish-reason must be one word, not {value!r}")
    return reason


def _streaming(body: Any) -> bool:
    return isinstance(body, dict) and body.get("stream") is True


def _bad_body(dialect: Dialect, request_id: str, malformed: bool) -> web.Response:
    if malformed and dialect is Dialect.ANTHROPIC:
        message = "There was an error parsing the body of your request: invalid JSON."
    elif malformed:
        message = (
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)"
        )
    else:
        message = "The request body must be a JSON object."
    return error_response(dialect, 400, message, request_id=request_id)


def _status_fault(
    request: web.BaseRequest, dialect: Dialect, status: int, request_id: str
) -> web.Response:
    headers: dict[str, str] = {}
    retry_after = request.headers.get("x-sim-retry-after")
    if retry_after is not None or status == 429:
        headers["retry-after"] = retry_after or DEFAULT_RETRY_AFTER
    message = f"{reason(status)} (simulated fault)"
    if dialect in (Dialect.GEMINI, Dialect.VERTEX) and headers:
        # Google says how long to wait in the body (google.rpc.RetryInfo), not in a header.
        delay = f"{headers.pop('retry-after')}s"
        return google_error_response(dialect, status, message, request_id, retry_delay=delay)
    retry_after_ms = request.headers.get("x-sim-retry-after-ms")
    if retry_after_ms is not None:  # OpenAI's and Azure's finer header (alone, or beside it)
        headers["retry-after-ms"] = retry_after_ms
    # A Bedrock error's exception name (``x-amzn-errortype``), or a Google error's ``status``,
    # may be asked for by name, as both answer several with one status (Bedrock's 400:
    # ValidationException, ServiceQuota...; Google's 400: INVALID_ARGUMENT, FAILED_PRECONDITION).
    named = (Dialect.BEDROCK, Dialect.GEMINI, Dialect.VERTEX)
    code = request.headers.get("x-sim-error-type") if dialect in named else None
    return error_response(
        dialect, status, message, request_id=request_id, code=code, headers=headers
    )


async def _hang(request: web.BaseRequest, state: SimulatorState) -> web.Response:
    # Client disconnects cancel this (the runner enables handler cancellation); a stopping
    # simulator sets the event so shutdown never waits on a hung request.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(state.stopping.wait(), HANG_SECONDS)
    return reset_connection(request)


async def delay(call: Call, tokens: int) -> None:
    """Sleep for a non-streaming reply: time to first token plus time per output token."""
    seconds = call.ttft + tokens * call.tpot
    if seconds > 0:
        await asyncio.sleep(seconds)


async def send_stream(
    request: web.BaseRequest, call: Call, parts: StreamParts, headers: dict[str, str]
) -> web.StreamResponse:
    """Write an SSE stream, pacing tokens by tpot and cutting it short for stop-after (or
    ending it with an error event for error-after)."""
    if call.ttft > 0:
        await asyncio.sleep(call.ttft)
    response = web.StreamResponse(headers=headers)
    try:
        await response.prepare(request)
        if call.tpot <= 0 and call.stop_after is None:
            # Headers, body and terminating chunk leave in a single write: the fast path.
            await response.write_eof(b"".join(data for data, _ in parts))
        else:
            await _paced(request, response, call, parts)
    except ConnectionResetError:
        pass  # the client went away mid-stream; nothing left to tell it
    return response


async def _silent(response: web.StreamResponse, call: Call, silence: asyncio.Event) -> None:
    """Send nothing of the answer until ``silence`` is set or the caller leaves (which cancels
    this handler), but for the keep-alives ``call`` asks for."""
    if call.keep_alive is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(silence.wait(), HANG_SECONDS)
        return
    loop = asyncio.get_running_loop()
    ends = loop.time() + HANG_SECONDS
    while not silence.is_set() and loop.time() < ends:
        await response.write(call.keep_alive)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(silence.wait(), KEEPALIVE_SECONDS)


async def _paced(
    request: web.BaseRequest, response: web.StreamResponse, call: Call, parts: StreamParts
) -> None:
    pending: list[bytes] = []
    tokens = 0
    for data, is_token in parts:
        if is_token:
            if call.stop_after is not None and tokens >= call.stop_after:
                if call.stream_error is not None:
                    await response.write_eof(b"".join(pending) + call.stream_error)
                    return
                if not call.headless:
                    await response.write(b"".join(pending))
                if call.silence is not None:
                    await _silent(response, call, call.silence)
                close_connection(request)
                return
            if tokens and call.tpot > 0:
                await response.write(b"".join(pending))
                pending.clear()
                await asyncio.sleep(call.tpot)
            tokens += 1
        pending.append(data)
    await response.write_eof(b"".join(pending))
