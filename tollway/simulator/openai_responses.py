"""OpenAI's Responses API (``POST /v1/responses``): ``Response`` objects and the typed event stream.

Shapes follow the openai-python types under ``openai/types/responses``. ``input`` (a string, or
message, ``function_call`` and ``function_call_output`` items; reasoning items are passed over,
but one whose ``encrypted_content`` the simulator did not seal, or one without any whose
``id`` is of no item a stored response answered, is refused as OpenAI refuses it:
``simulator/responses_reasoning.py``) and ``instructions`` are the prompt, counted as chat
messages are; flat ``function`` tools, ``tool_choice``, ``text.format`` and
``max_output_tokens`` steer the answer as their Chat Completions counterparts do. A reasoning
model (a name starting with ``o`` and a digit, or ``gpt-5``) always reasons, counted in
``output_tokens_details.reasoning_tokens``: its ``reasoning`` item shows a summary only when
``reasoning.summary`` asks (``summary_text``), and carries ``encrypted_content`` only when
``include`` asks (``reasoning.encrypted_content``); another model refuses ``reasoning.effort``
and ``reasoning.summary`` as OpenAI does (400 ``unsupported_parameter``). A top-level field the
API does not know is its 400 ``unknown_parameter``. ``x-sim-refusal`` answers a ``refusal``
part; ``x-sim-usage: omit`` answers ``usage: null``. A web search tool is answered with a
``web_search_call`` item before the answer, and ``previous_response_id`` continues a response
stored here (``simulator/responses_tools.py``). A ``compaction`` item in ``input`` (made by
``/v1/responses/compact``, ``simulator/responses_compact.py``) counts ``COMPACTED_TOKENS``.

Streamed, the events come in OpenAI's order, each with its ``sequence_number``:
``response.created``, ``response.in_progress``, then item by item
``response.output_item.added``, the part's ``.added``, its deltas (one a token), its
``.done``s and ``response.output_item.done``; last ``response.completed`` (or
``response.incomplete``). ``error-after`` ends the stream with an ``error`` event
(``server_is_overloaded``, or the fields ``x-sim-stream-error`` gives, of the event ``type``
it names), numbered in turn; ``x-sim-fail-after-items: N`` ends it so right after its Nth
``response.output_item.done`` (a web search done, then the model failing before its answer).
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
from aiohttp import web

from tollway.simulator.content import (
    IMAGE_TOKENS,
    JSON,
    MESSAGE_OVERHEAD,
    TOOL_TOKENS,
    Completion,
    InvalidRequest,
    Prompt,
    ToolSpec,
    complete,
    refusal,
    word_count,
)
from tollway.simulator.errors import Dialect, json_response, request_id_header
from tollway.simulator.exchange import SSE_HEADERS, Call, StreamParts, delay, send_stream
from tollway.simulator.prompt_cache import PromptCache, prompt_cache
from tollway.simulator.responses_reasoning import check as check_reasoning
from tollway.simulator.responses_reasoning import seal as seal_reasoning
from tollway.simulator.responses_tools import (
    SEARCH_TOKENS,
    continued_tokens,
    search_count,
    search_events,
    search_item,
    searches,
)
from tollway.simulator.state import SimulatorState
from tollway.simulator.tool_names import check_openai

_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)", re.IGNORECASE)
_KNOWN = frozenset(
    {
        "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "text",
        "reasoning", "max_output_tokens", "temperature", "top_p", "stream", "stream_options",
        "include", "store", "metadata", "user", "service_tier", "truncation",
        "previous_response_id", "prompt_cache_key", "safety_identifier", "background",
        "conversation", "prompt", "max_tool_calls", "top_logprobs", "prompt_cache_retention",
        "context_management",
    }
)  # fmt: skip
_ENCRYPTED = "reasoning.encrypted_content"
COMPACTED_TOKENS = 64
"""The input tokens a ``compaction`` item (``/v1/responses/compact``'s) counts as."""
Event = tuple[str, JSON, bool]
"""An event's type, its fields, and whether it is a token (paced, counted by stop-after)."""


def _text_of(content: Any) -> tuple[str, int]:
    """A message content's (or function output's) text and its token count."""
    if isinstance(content, str):
        return content, word_count(content)
    texts: list[str] = []
    images = 0
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif part.get("type") == "input_image":
            images += 1
    text = " ".join(texts)
    return text, word_count(text) + images * IMAGE_TOKENS


def _items(body: JSON) -> list[JSON]:
    raw = body.get("input")
    if raw is None and body.get("prompt") is not None:
        return []  # a stored prompt template holds the conversation
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise InvalidRequest("Invalid 'input': expected a string or an array of items.", "input")
    return raw


def read_prompt(body: JSON, call: Call, state: SimulatorState) -> tuple[Prompt, int]:
    """The generator's inputs and the input token count of a Responses request (``state``:
    the items stored earlier, that a reasoning item sent back by id alone must be)."""
    tokens = 0
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        tokens += MESSAGE_OVERHEAD + word_count(instructions)
    last_user, text, kind = "", "", None
    for item in _items(body):
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            text, counted = _text_of(item.get("content"))
            if item.get("role") == "user":
                last_user = text
        elif kind == "function_call":
            text, counted = _text_of(item.get("arguments"))
        elif kind == "function_call_output":
            text, counted = _text_of(item.get("output"))
        elif kind == "reasoning":
            check_reasoning(item, state.stored_item)  # OpenAI's own, or its 400
            continue
        elif kind == "web_search_call":
            counted = 0  # an earlier search, sent back: its results are not repeated
        elif kind == "compaction":
            counted = COMPACTED_TOKENS  # what a compaction stands for, as the model reads it
        else:
            raise InvalidRequest(f"Invalid value: {kind!r}.", "input")
        tokens += MESSAGE_OVERHEAD + counted
    prompt = Prompt(
        last_user_text=last_user,
        tool_result_text=text if kind == "function_call_output" else None,
        last_is_user=kind == "message",
        tools=_tools(body),
        parallel_tools=body.get("parallel_tool_calls") is not False,
        max_tokens=_max_output_tokens(body),
        target_tokens=call.output_tokens,
    )
    choice = body.get("tool_choice")
    if choice in ("none", "auto", "required"):
        prompt.tool_mode = choice
    elif isinstance(choice, dict) and isinstance(choice.get("name"), str):
        prompt.forced_tool = choice["name"]
    text_format = (body.get("text") or {}).get("format")
    if isinstance(text_format, dict) and text_format.get("type") in ("json_object", "json_schema"):
        prompt.json_mode = True
        schema = text_format.get("schema")
        prompt.json_schema = schema if isinstance(schema, dict) else None
    return prompt, tokens + TOOL_TOKENS * len(prompt.tools)


def _tools(body: JSON) -> list[ToolSpec]:
    specs = []
    for index, tool in enumerate(body.get("tools") or ()):
        if isinstance(tool, dict) and tool.get("type") == "function":
            parameters = tool.get("parameters")
            name = tool.get("name")
            if not isinstance(name, str):
                raise InvalidRequest("Missing required parameter: 'tools[0].name'.", "tools")
            check_openai(name, f"tools[{index}].name")
            specs.append(ToolSpec(name, parameters if isinstance(parameters, dict) else None))
    return specs


_LEAST_OUTPUT = 16
"""The smallest ``max_output_tokens`` OpenAI's Responses API takes."""


def _max_output_tokens(body: JSON) -> int | None:
    value = body.get("max_output_tokens")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        message = "Invalid type for 'max_output_tokens': expected an integer."
        raise InvalidRequest(message, "max_output_tokens", "invalid_type")
    if value < _LEAST_OUTPUT:
        # OpenAI's own 400: a limit too small for its Responses API.
        message = (
            "Invalid 'max_output_tokens': integer below minimum value. "
            f"Expected a value >= {_LEAST_OUTPUT}, but got {value} instead."
        )
        raise InvalidRequest(message, "max_output_tokens", "integer_below_min_value")
    return value


def _check(body: JSON, model: str) -> bool:
    """Refuse what OpenAI refuses; whether ``model`` reasons."""
    for key in body:
        if key not in _KNOWN:
            raise InvalidRequest(f"Unknown parameter: '{key}'.", key, "unknown_parameter")
    reasons = _REASONING_MODEL.match(model) is not None
    reasoning = body.get("reasoning") or {}
    if not reasons and isinstance(reasoning, dict):
        for key in ("effort", "summary", "generate_summary"):
            if reasoning.get(key) is not None:
                message = (
                    f"Unsupported parameter: 'reasoning.{key}' is not supported with this model."
                )
                raise InvalidRequest(message, f"reasoning.{key}", "unsupported_parameter")
    return reasons


def _summary(body: JSON) -> bool:
    reasoning = body.get("reasoning")
    if not isinstance(reasoning, dict):
        return False
    return reasoning.get("summary") is not None or reasoning.get("generate_summary") is not None


async def handle_responses(
    request: web.Request, call: Call, state: SimulatorState, model: str
) -> web.StreamResponse:
    """Answer an admitted Responses request (raises InvalidRequest on a bad body)."""
    body = call.body
    prompt, input_tokens = read_prompt(body, call, state)
    prompt.reasoning = _check(body, model)
    input_tokens += continued_tokens(body, state)
    completion = complete(prompt, 0, lambda: state.new_id("call_"))
    if call.refusal is not None:
        completion = refusal(call.refusal)
    made = search_count(body, call.searches) if searches(body, prompt) else 0
    found = [search_item(body, prompt, state.new_id("ws_")) for _ in range(made)]
    input_tokens += SEARCH_TOKENS * made
    output = _output(completion, body, state, found)
    status = "incomplete" if completion.finish == "length" else "completed"
    cache = prompt_cache(call, input_tokens)
    usage = None if call.omit_usage else _usage(input_tokens, completion, cache)
    final = _response(body, state.new_id("resp_"), model, status, output, usage)
    if body.get("store") is not False:
        state.store_response(final["id"], input_tokens + completion.output_tokens)
        state.store_items([item["id"] for item in output if isinstance(item.get("id"), str)])
    if status == "incomplete":
        final["incomplete_details"] = {"reason": "max_output_tokens"}
    if body.get("stream") is not True:
        await delay(call, completion.output_tokens)
        return json_response(final, call.request_id, Dialect.OPENAI)
    events = _events(final, completion, _summary(body))
    parts = [
        (_frame(kind, number, fields), token) for number, (kind, fields, token) in enumerate(events)
    ]
    own = request.headers.get("x-sim-stream-error")  # checked to be a JSON object
    fields = None if own is None else orjson.loads(own)
    if call.stream_error is not None:
        call.stream_error = _error_event(parts, call, fields)
    items = _items_done(request.headers.get("x-sim-fail-after-items"))
    if items is not None:
        parts = _failed_after_items(parts, events, items, fields)
    headers = {**SSE_HEADERS, request_id_header(Dialect.OPENAI): call.request_id}
    return await send_stream(request, call, parts, headers)


def _usage(input_tokens: int, completion: Completion, cache: PromptCache) -> JSON:
    """A Responses usage object: ``input_tokens`` includes the cache's reads and writes."""
    output_tokens = completion.output_tokens
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": cache.reads,
            "cache_write_tokens": cache.writes,
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": len(completion.reasoning)},
        "total_tokens": input_tokens + output_tokens,
    }


def _output(
    completion: Completion, body: JSON, state: SimulatorState, found: list[JSON]
) -> list[JSON]:
    """The answer's output items, as complete: reasoning, the search, then the message or the
    calls."""
    output: list[JSON] = []
    if completion.reasoning:
        reasoning = "".join(completion.reasoning)
        item: JSON = {"id": state.new_id("rs_"), "type": "reasoning", "summary": []}
        if _summary(body):
            item["summary"] = [{"type": "summary_text", "text": reasoning}]
        if _ENCRYPTED in (body.get("include") or ()):
            item["encrypted_content"] = seal_reasoning(reasoning)
        output.append(item)
    output.extend(found)
    status = "incomplete" if completion.finish == "length" else "completed"
    if completion.tool_calls:
        output.extend(
            {
                "id": state.new_id("fc_"),
                "type": "function_call",
                "status": status,
                "arguments": call.arguments,
                "call_id": call.id,
                "name": call.name,
            }
            for call in completion.tool_calls
        )
        return output
    if completion.finish == "refusal":
        part: JSON = {"type": "refusal", "refusal": completion.text}
    else:
        part = {"type": "output_text", "text": completion.text, "annotations": [], "logprobs": []}
    output.append(
        {
            "id": state.new_id("msg_"),
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": [part],
        }
    )
    return output


def _response(
    body: JSON, response_id: str, model: str, status: str, output: list[JSON], usage: JSON | None
) -> JSON:
    given = body.get("reasoning")
    reasoning: JSON = given if isinstance(given, dict) else {}
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "service_tier": "default",
        "store": body.get("store") is not False,
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation") or "disabled",
        "usage": usage,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def _events(final: JSON, completion: Completion, summary: bool) -> list[Event]:
    """Every event of the stream, in OpenAI's order."""
    opening = {**final, "status": "in_progress", "output": [], "usage": None}
    opening["incomplete_details"] = None
    events: list[Event] = [
        ("response.created", {"response": opening}, False),
        ("response.in_progress", {"response": opening}, False),
    ]
    for index, item in enumerate(final["output"]):
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "reasoning":
            events.append(("response.output_item.added", _added(item, index, summary=[]), False))
            if summary:
                pieces = completion.reasoning
                events += _part_events(where, "summary_index", "reasoning_summary", pieces)
        elif item["type"] == "function_call":
            call = next(c for c in completion.tool_calls if c.id == item["call_id"])
            events.append(("response.output_item.added", _added(item, index, arguments=""), False))
            events += [
                ("response.function_call_arguments.delta", {**where, "delta": piece}, True)
                for piece in call.fragments
            ]
            done = {**where, "name": item["name"], "arguments": item["arguments"]}
            events.append(("response.function_call_arguments.done", done, False))
        elif item["type"] == "web_search_call":
            events.append(("response.output_item.added", _added(item, index), False))
            events += search_events(where)
        else:
            events.append(("response.output_item.added", _added(item, index, content=[]), False))
            kind = item["content"][0]["type"]
            stem = "refusal" if kind == "refusal" else "output_text"
            events += _part_events(where, "content_index", stem, completion.pieces, kind)
        events.append(("response.output_item.done", {"output_index": index, "item": item}, False))
    events.append((f"response.{final['status']}", {"response": final}, False))
    return events


def _added(item: JSON, index: int, **empty: Any) -> JSON:
    """``response.output_item.added``'s fields: the item as it opens, ``empty`` so far."""
    opened = {**item, **empty}
    if "status" in item:
        opened["status"] = "in_progress"
    return {"output_index": index, "item": opened}


def _part_events(
    where: JSON, place: str, stem: str, pieces: list[str], kind: str = "summary_text"
) -> list[Event]:
    """A part's events: added, one delta a piece, its text done, the part done."""
    key = "refusal" if kind == "refusal" else "text"
    extra: JSON = {"logprobs": []} if kind == "output_text" else {}
    empty: JSON = {"type": kind, key: ""}
    whole: JSON = {"type": kind, key: "".join(pieces)}
    if kind == "output_text":
        empty = {**empty, "annotations": [], "logprobs": []}
        whole = {**whole, "annotations": [], "logprobs": []}
    at = {**where, place: 0}
    part = "reasoning_summary_part" if stem == "reasoning_summary" else "content_part"
    text = "reasoning_summary_text" if stem == "reasoning_summary" else stem
    return [
        (f"response.{part}.added", {**at, "part": empty}, False),
        *((f"response.{text}.delta", {**at, "delta": p, **extra}, True) for p in pieces),
        (f"response.{text}.done", {**at, key: "".join(pieces), **extra}, False),
        (f"response.{part}.done", {**at, "part": whole}, False),
    ]


def _frame(kind: str, number: int, fields: JSON) -> bytes:
    payload = {"type": kind, "sequence_number": number, **fields}
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _items_done(header: str | None) -> int | None:
    """The output items ``x-sim-fail-after-items`` lets a stream finish before it fails."""
    if header is None:
        return None
    try:
        items = int(header)
    except ValueError:
        items = -1
    if items < 0:
        raise InvalidRequest(
            f"simulator: x-sim-fail-after-items must be a whole number, not {header!r}",
            None,
            "invalid_value",
        )
    return items


def _failed_after_items(
    parts: StreamParts, events: list[Event], items: int, own: JSON | None
) -> StreamParts:
    """The stream cut right after its ``items``-th ``response.output_item.done`` (at once for
    0; not at all when it has fewer), ended by the error event of ``_error_frame``."""
    cut = 0
    if items:
        done = [i for i, (kind, _, _) in enumerate(events) if kind == "response.output_item.done"]
        if len(done) < items:
            return parts
        cut = done[items - 1] + 1
    return [*parts[:cut], (_error_frame(cut, own), False)]


def _error_event(parts: StreamParts, call: Call, own: JSON | None) -> bytes:
    """The event ``error-after`` ends the stream with, numbered where it comes: an ``error``
    event saying ``server_is_overloaded``, or ``own`` (``x-sim-stream-error``: its fields, its
    ``type`` if it names one, else ``error``), as OpenAI's other failures come (a rate limit,
    a ``response.failed``)."""
    tokens, number = 0, len(parts)
    for index, (_, token) in enumerate(parts):
        if token:
            if call.stop_after is not None and tokens >= call.stop_after:
                number = index
                break
            tokens += 1
    return _error_frame(number, own)


def _error_frame(number: int, own: JSON | None) -> bytes:
    """An ``error`` event saying ``server_is_overloaded``, or ``own``'s fields as the event
    of the ``type`` it names (else ``error``), numbered ``number``."""
    if own is not None:
        fields = {key: value for key, value in own.items() if key != "type"}
        return _frame(str(own.get("type") or "error"), number, fields)
    fields = {"code": "server_is_overloaded", "message": "Service Unavailable (simulated fault)"}
    return _frame("error", number, {**fields, "param": None})
