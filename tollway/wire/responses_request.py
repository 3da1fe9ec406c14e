"""OpenAI Responses API requests (``POST /v1/responses``): wire JSON to a canonical ``ChatRequest``.

``input`` (a string, or message / ``function_call`` / ``function_call_output`` items) becomes
the messages, after a system message made of ``instructions``; flat ``function`` tools (their
other fields are the function's, as a Chat Completions tool's beside its schema), the
tool choice, ``text.format``, ``max_output_tokens`` and the sampling fields map onto their
canonical counterparts (a ``tool_choice`` of ``allowed_tools`` that names only function tools
is its mode, ``auto`` or ``required``, over just those tools: what any family can be offered,
though the prompt's tools then change with the choice). The few fields with a Chat Completions
counterpart the canonical types do not model (``reasoning.effort``, ``text.verbosity``,
``service_tier``, ``prompt_cache_key``, ``safety_identifier``) travel as Chat Completions
extras, so the request is tagged with the ``openai`` wire format and ``wire/crossing.py``
decides what another family keeps. ``reasoning.summary`` (or its deprecated name
``generate_summary``) has no Chat Completions counterpart: it is
``ChatRequest.reasoning_summary``, which the families that can show a summary of their
reasoning read.

What only OpenAI's Responses API can serve is parsed, left out of the canonical request and
named in ``ChatRequest.responses_only``, so the router sends the request only to deployments
that speak that API (which are sent the client's body, ``responses_body``) and refuses it by
that name when the model has none: tools other than ``function`` (``web_search``,
``file_search``, ``mcp``, ...; a ``web_search`` tool is also ``ChatRequest.web_search``, which
Anthropic deployments translate: ``wire/responses_web_search.py``), a ``tool_choice`` of one
(or allowing one), the output items of such tools in ``input``, and state the upstream
stores (``previous_response_id``, ``conversation``, ``item_reference`` items, ``prompt``
templates, files by ``file_id``). The
gateway itself keeps no responses: ``background`` and ``context_management`` are a 400 saying
so; ``store`` is accepted (answered with ``"store": false`` by the other deployments);
``truncation: "auto"`` lets the router drop a conversation's oldest turns to fit a context window
(``routing/truncation.py``); ``include`` (values OpenAI lists; another is a 400) and the
like are accepted and have no effect, ``metadata`` is checked against OpenAI's limits, but log
probabilities (``include: ["message.output_text.logprobs"]``, ``top_logprobs``) are Chat
Completions' ``logprobs`` and ``top_logprobs``, answered by OpenAI-format deployments in the
``output_text`` parts and a 400 naming ``include`` for the other families
(``wire/crossing.py``). Any other unknown field is a 400 naming it. ``input`` is read by
``wire/responses_input.py``; its reasoning items are dropped: they are context from another
upstream that a Chat Completions deployment cannot take, and the answer does not depend on them
being echoed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, cast

from tollway.core.errors import InvalidRequest
from tollway.core.types import (
    JSON,
    ChatRequest,
    ResponseFormat,
    ResponsesOnly,
    Tool,
    ToolChoice,
    WebSearch,
)
from tollway.wire.crossing import CACHE_HINT
from tollway.wire.fields import check_bounds, json_object, number, optional, required
from tollway.wire.openai_request import TEMPERATURE, TOP_P, WIRE_FORMAT
from tollway.wire.responses_input import KEEPS_NONE, Origins, messages_from_input, narrowest
from tollway.wire.responses_web_search import is_web_search, web_search_from_wire

_MODELLED = frozenset(
    {
        "model", "input", "instructions", "max_output_tokens", "metadata", "parallel_tool_calls",
        "stream", "temperature", "text", "tool_choice", "tools", "top_p", "user", "reasoning",
        "service_tier", "prompt_cache_key", "safety_identifier", "store", "truncation",
    }
)  # fmt: skip
# Accepted and without effect: they shape storage or extra output the gateway does not
# produce, never the text of the answer (but log probabilities, asked for with ``include`` or
# ``top_logprobs``, are Chat Completions' ``logprobs``: _logprobs_from_wire).
_IGNORED = frozenset(
    {
        "include", "stream_options", "top_logprobs", "max_tool_calls",
        "prompt_cache_retention", "prompt_cache_options",
    }
)  # fmt: skip
_LOGPROBS = "message.output_text.logprobs"
_INCLUDABLE = (
    "file_search_call.results", "web_search_call.results", "web_search_call.action.sources",
    "message.input_image.image_url", "computer_call_output.output.image_url",
    "code_interpreter_call.outputs", "reasoning.encrypted_content", _LOGPROBS,
)  # fmt: skip
"""The values OpenAI's API takes in ``include`` (the ``openai`` SDK's ``ResponseIncludable``)."""
_MOST_METADATA, _LONGEST_METADATA_KEY, _LONGEST_METADATA_VALUE = 16, 64, 512
# OpenAI's bounds (integers; temperature and top_p as Chat Completions'): fewer than 16 output
# tokens is its 400, where Chat Completions takes 1 and other families take anything.
MAX_OUTPUT_TOKENS, TOP_LOGPROBS = (16, math.inf), (0, 20)
_STATELESS = (
    "the gateway keeps no response state; send the whole conversation in 'input' "
    "(earlier output items can be sent back as input items)"
)
# What the upstream account stores, which only a Responses upstream can read.
_UPSTREAM_STATE: Mapping[str, str] = MappingProxyType(
    {
        "previous_response_id": f"continues a response stored by the upstream ({KEEPS_NONE})",
        "conversation": f"continues a conversation stored by the upstream ({KEEPS_NONE})",
        "prompt": "is a prompt template stored on OpenAI's platform (elsewhere, send its text "
        "as 'instructions')",
    }
)
_NEEDS_STATE: Mapping[str, str] = MappingProxyType(
    {
        "background": "the gateway keeps no response state to poll; stream the response instead",
        "context_management": _STATELESS,
    }
)
_CHAT_COUNTERPARTS = ("service_tier", "prompt_cache_key", "safety_identifier")
_SUMMARIES = ("auto", "concise", "detailed")
_TRUNCATIONS = ("auto", "disabled")


@dataclass(slots=True)
class ResponsesRequest:
    """A parsed Responses request: the canonical request and what the answer repeats back."""

    chat: ChatRequest
    echo: JSON
    """Request settings a Response object carries (instructions, tools, text, ...), as sent."""
    origins: Origins
    """Where each canonical message came from, to name the client's fields in errors."""
    tool_places: list[int]
    """The index in the client's ``tools`` of each canonical tool: built-in tools are left out
    and an ``allowed_tools`` choice keeps only the tools it allows, so they may differ."""


def request_from_wire(body: dict[str, Any]) -> ResponsesRequest:
    """Parse and validate a Responses API request body."""
    _refuse_unsupported(body)
    stored = _upstream_state(body)
    instructions = optional(body, "instructions", str)
    extra: JSON = {key: body[key] for key in _CHAT_COUNTERPARTS if body.get(key) is not None}
    extra.update(_logprobs_from_wire(body))
    text = optional(body, "text", dict) or {}
    if text.get("verbosity") is not None:
        extra["verbosity"] = text["verbosity"]
    reasoning = optional(body, "reasoning", dict) or {}
    if reasoning.get("effort") is not None:
        extra["reasoning_effort"] = reasoning["effort"]
    summary = _summary_from_wire(reasoning)
    offered = optional(body, "tools", list)
    tools, places, own_tool, search = _tools_from_wire(offered, body.get("max_tool_calls"))
    tool_choice, own_choice, allowed = _tool_choice_from_wire(body.get("tool_choice"))
    if allowed is not None:
        tools, places = _allowed_tools(tools, places, allowed)
    origins: Origins = []
    messages, own_item = messages_from_input(
        body.get("input"),
        instructions,
        origins,
        stored=stored is not None,
        # A prompt template may hold the whole conversation: OpenAI then takes no input.
        templated=body.get("prompt") is not None,
    )
    parallel_tool_calls = optional(body, "parallel_tool_calls", bool)
    chat = ChatRequest(
        model=required(body, "model", str),
        messages=messages,
        stream=bool(optional(body, "stream", bool)),
        max_tokens=optional(body, "max_output_tokens", int),
        temperature=_bounded(body, "temperature", TEMPERATURE),
        top_p=_bounded(body, "top_p", TOP_P),
        user=optional(body, "user", str),
        tools=tools,
        tool_choice=tool_choice,
        # Without tools it says nothing, and Chat Completions refuses it ("only allowed when
        # 'tools' are specified"), where the Responses API takes it.
        parallel_tool_calls=parallel_tool_calls if tools else None,
        response_format=_format_from_wire(text.get("format")),
        extra=extra,
        wire_format=WIRE_FORMAT,
        limit_named_by_client=False,  # max_output_tokens has no Chat Completions name
        reasoning_summary=summary,
        responses_only=narrowest(stored, own_tool, own_choice, own_item),
        truncation=_truncation_from_wire(body),
    )
    if chat.responses_only is not None and chat.responses_only.translated_for:
        chat.web_search = search  # what the other families that can serve it are sent
    _check_limits(chat, offered=bool(offered))
    return ResponsesRequest(chat, _echo(body, chat, text), origins, places)


def _bounded(body: dict[str, Any], name: str, bounds: tuple[float, float]) -> float | None:
    """An optional number within OpenAI's ``bounds`` for it (a 400 in OpenAI's words else)."""
    value = number(body, name)
    check_bounds(value, name, *bounds)
    return value


def _upstream_state(body: dict[str, Any]) -> ResponsesOnly | None:
    """The first field that continues state stored at the upstream's account."""
    for key, what in _UPSTREAM_STATE.items():
        if body.get(key) is not None:
            return ResponsesOnly(key, f"'{key}' {what}")
    return None


def _summary_from_wire(reasoning: JSON) -> str | None:
    """``reasoning.summary`` (or ``generate_summary``, its deprecated name), checked as
    OpenAI checks it."""
    for key in ("summary", "generate_summary"):
        value = reasoning.get(key)
        if value is None:
            continue
        if value not in _SUMMARIES:
            raise InvalidRequest(
                f"Invalid value: {value!r}. Supported values are: 'concise', 'detailed', and "
                "'auto'.",
                code="invalid_value",
                param=f"reasoning.{key}",
            )
        return cast(str, value)
    return None


def _truncation_from_wire(body: dict[str, Any]) -> Literal["auto", "disabled"]:
    """``truncation``, checked as OpenAI checks it (absent: ``disabled``)."""
    value = body.get("truncation")
    if value is None:
        return "disabled"
    if value not in _TRUNCATIONS:
        raise InvalidRequest(
            f"Invalid value: {value!r}. Supported values are: 'auto' and 'disabled'.",
            code="invalid_value",
            param="truncation",
        )
    return cast(Literal["auto", "disabled"], value)


def _check_limits(chat: ChatRequest, *, offered: bool) -> None:
    """What the API refuses before any model runs, refused here alike whoever serves it
    (``offered``: the request has tools, built-in ones included)."""
    check_bounds(chat.max_tokens, "max_output_tokens", *MAX_OUTPUT_TOKENS, kind="integer")
    choice = chat.tool_choice
    if choice is not None and choice.mode in ("required", "function") and not offered:
        # Otherwise silently not met: some families answer in text when no tool is offered.
        raise InvalidRequest(
            "'tool_choice' requires a tool, but the request has no 'tools'", param="tool_choice"
        )
    named = None if choice is None else choice.name
    # Checked here, as OpenAI checks it: an upstream of another family refused it in its own
    # words (naming no field), or, were it lenient, would answer with no call or another.
    if named is not None and named not in {tool.name for tool in chat.tools or ()}:
        raise InvalidRequest(
            f"Tool choice 'function' {named!r} not found in 'tools' parameter.",
            param="tool_choice",
        )


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for key, value in body.items():
        # null and false ask for nothing (``background: false``), so they pass as absent.
        if key in _MODELLED or key in _IGNORED or value is None or value is False:
            continue
        if key in _UPSTREAM_STATE:
            continue  # for a Responses upstream (``responses_only``)
        reason = _NEEDS_STATE.get(key)
        if reason is not None:
            raise InvalidRequest(f"'{key}' is not supported: {reason}", param=key)
        raise InvalidRequest(f"'{key}' is not supported by the gateway's Responses API", param=key)


def _logprobs_from_wire(body: dict[str, Any]) -> JSON:
    """Log probabilities (``include: ["message.output_text.logprobs"]``, with ``top_logprobs``
    alternatives) as their Chat Completions counterparts: an OpenAI-format deployment answers
    them, and for a family without them the crossing is a 400 naming ``include`` (never an
    empty list). ``top_logprobs`` alone asks for none, as OpenAI's API answers it."""
    include = optional(body, "include", list) or []
    for index, value in enumerate(include):
        if value not in _INCLUDABLE:
            # Accepted, it was silently ignored: a typo went unseen, where OpenAI refuses it.
            listed = ", ".join(repr(v) for v in _INCLUDABLE)
            raise InvalidRequest(
                f"Invalid value: {value!r}. Supported values are: {listed}.",
                code="invalid_value",
                param=f"include[{index}]",
            )
    top = optional(body, "top_logprobs", int)
    check_bounds(top, "top_logprobs", *TOP_LOGPROBS, kind="integer")
    if _LOGPROBS not in include:
        return {}
    return {"logprobs": True, "top_logprobs": top} if top else {"logprobs": True}


def _metadata_from_wire(body: dict[str, Any]) -> JSON:
    """``metadata``, checked as OpenAI checks it: at most 16 pairs of strings, keys up to 64
    characters and values up to 512 (what OpenAI refuses is refused whoever serves it)."""
    metadata = optional(body, "metadata", dict) or {}
    if len(metadata) > _MOST_METADATA:
        raise InvalidRequest(
            f"Invalid 'metadata': too many properties. Expected an object with at most "
            f"{_MOST_METADATA} properties, but got an object with {len(metadata)} properties "
            "instead.",
            code="object_above_max_properties",
            param="metadata",
        )
    for key, value in metadata.items():
        if len(key) > _LONGEST_METADATA_KEY:
            raise InvalidRequest(
                f"Invalid 'metadata': key {key[:20]!r}... is longer than "
                f"{_LONGEST_METADATA_KEY} characters.",
                code="string_above_max_length",
                param="metadata",
            )
        if not isinstance(value, str):
            raise InvalidRequest(
                f"Invalid type for 'metadata.{key}': expected a string, but got "
                f"{type(value).__name__} instead.",
                code="invalid_type",
                param=f"metadata.{key}",
            )
        if len(value) > _LONGEST_METADATA_VALUE:
            raise InvalidRequest(
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum "
                f"length {_LONGEST_METADATA_VALUE}, but got a string with length {len(value)} "
                "instead.",
                code="string_above_max_length",
                param=f"metadata.{key}",
            )
    return metadata


def _echo(body: dict[str, Any], chat: ChatRequest, text: JSON) -> JSON:
    reasoning = body.get("reasoning") or {}
    return {
        "instructions": body.get("instructions"),
        "max_output_tokens": chat.max_tokens,
        "metadata": _metadata_from_wire(body),
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": chat.reasoning_summary},
        "store": False,
        "temperature": chat.temperature,
        "text": {**text, "format": text.get("format") or {"type": "text"}},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "top_p": chat.top_p,
        "truncation": chat.truncation,
        "user": chat.user,
    }


def _tools_from_wire(
    tools: list[Any] | None, max_tool_calls: Any
) -> tuple[list[Tool] | None, list[int], ResponsesOnly | None, WebSearch | None]:
    """The function tools, the index of each in ``tools``, the first other tool that only a
    Responses upstream offers (else the first other tool), and the web search other families
    translate (``wire/responses_web_search.py``)."""
    if not tools:
        # An empty list is the same as none, and some upstreams reject it.
        return None, [], None, None
    parsed = []
    places = []
    first: ResponsesOnly | None = None
    search: WebSearch | None = None
    for index, raw in enumerate(tools):
        param = f"tools[{index}]"
        tool = json_object(raw, param)
        kind = tool.get("type")
        if kind != "function":
            if not isinstance(kind, str):
                raise InvalidRequest(f"'{param}.type' must be a string", param=f"{param}.type")
            # Built-in tools (web_search, file_search, mcp, ...) run on OpenAI's side, and
            # custom tools have no canonical form: a Responses upstream is sent them as sent
            # (a web search, other families too: as their own search tool).
            if is_web_search(kind) and search is None:
                search, only = web_search_from_wire(tool, param, max_tool_calls)
            else:
                why = f"'{param}.type' {kind!r} is a tool of OpenAI's Responses API"
                only = ResponsesOnly(f"{param}.type", f"{why}, not a 'function' tool")
            first = narrowest(first, only)
            continue
        if "name" not in tool and isinstance(tool.get("function"), dict):
            raise InvalidRequest(
                f"'{param}.name' is a required property: Responses function tools are flat "
                "({type, name, description, parameters}), not nested as in Chat Completions",
                param=f"{param}.name",
            )
        places.append(index)
        parsed.append(
            Tool(
                name=required(tool, "name", str, f"{param}.name"),
                description=optional(tool, "description", str, f"{param}.description"),
                parameters=optional(tool, "parameters", dict, f"{param}.parameters"),
                strict=optional(tool, "strict", bool, f"{param}.strict"),
                # A cache hint is the tool's own, as beside a Chat Completions tool's
                # function; any other field is the function's, which a Chat Completions
                # deployment is sent in it (another family: a 400 naming it).
                extra={CACHE_HINT: tool[CACHE_HINT]} if CACHE_HINT in tool else {},
                function_extra={k: v for k, v in tool.items() if k not in _FLAT_TOOL_KEYS},
            )
        )
    return parsed or None, places, first, search


_FLAT_TOOL_KEYS = frozenset({"type", "name", "description", "parameters", "strict", CACHE_HINT})
"""A flat function tool's fields the canonical tool models."""


def _tool_choice_from_wire(
    raw: Any,
) -> tuple[ToolChoice | None, ResponsesOnly | None, list[str] | None]:
    """The canonical choice, or (a built-in tool's, ...) the choice only a Responses upstream
    can meet; and the names of the function tools an ``allowed_tools`` choice allows."""
    if raw is None:
        return None, None, None
    if raw in ("auto", "none", "required"):
        return ToolChoice(mode=raw), None, None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "function":
        name = required(raw, "name", str, "tool_choice.name")
        return ToolChoice(mode="function", name=name), None, None
    if kind == "allowed_tools":
        return _allowed_from_wire(raw)
    if isinstance(kind, str):
        why = f"'tool_choice' chooses by the type {kind!r}, a choice of OpenAI's Responses API"
        return None, ResponsesOnly("tool_choice", why), None
    raise InvalidRequest(
        "'tool_choice' must be 'auto', 'none', 'required' or {'type': 'function', 'name': ...}",
        param="tool_choice",
    )


def _allowed_from_wire(
    raw: JSON,
) -> tuple[ToolChoice | None, ResponsesOnly | None, list[str] | None]:
    """An ``allowed_tools`` choice: among function tools only, it is its mode over just those
    tools (what any family can be offered); one that allows a built-in tool is a Responses
    upstream's to meet."""
    mode = raw.get("mode")
    if mode not in ("auto", "required"):
        raise InvalidRequest(
            "'tool_choice.mode' must be 'auto' or 'required'", param="tool_choice.mode"
        )
    listed = required(raw, "tools", list, "tool_choice.tools")
    if not listed:
        raise InvalidRequest(
            "'tool_choice.tools' must allow at least one tool", param="tool_choice.tools"
        )
    names = []
    for index, entry in enumerate(listed):
        param = f"tool_choice.tools[{index}]"
        tool = json_object(entry, param)
        if tool.get("type") != "function":
            why = (
                f"'{param}' allows a tool other than a function, a choice of OpenAI's Responses API"
            )
            return None, ResponsesOnly("tool_choice", why), None
        names.append(required(tool, "name", str, f"{param}.name"))
    return ToolChoice(mode=mode), None, names


def _allowed_tools(
    tools: list[Tool] | None, places: list[int], allowed: list[str]
) -> tuple[list[Tool], list[int]]:
    """The function tools ``allowed`` names, in the order offered, and their indexes in the
    client's ``tools`` (``places``: every offered tool's); a name of none is a 400 (it could
    never be called)."""
    offered = {tool.name for tool in tools or ()}
    for index, name in enumerate(allowed):
        if name not in offered:
            raise InvalidRequest(
                f"'tool_choice.tools[{index}]' allows the function {name!r}, which is not "
                "among 'tools'",
                param=f"tool_choice.tools[{index}].name",
            )
    names = set(allowed)
    offered_at = zip(tools or (), places, strict=True)
    kept = [(tool, place) for tool, place in offered_at if tool.name in names]
    return [tool for tool, _ in kept], [place for _, place in kept]


def _format_from_wire(raw: Any) -> ResponseFormat | None:
    if raw is None:
        return None
    fmt = json_object(raw, "text.format")
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        return ResponseFormat(type=kind)
    if kind != "json_schema":
        raise InvalidRequest(
            "'text.format.type' must be 'text', 'json_object' or 'json_schema'",
            param="text.format.type",
        )
    # The canonical schema is Chat Completions' ``json_schema`` object: name, schema, ...
    schema: JSON = {
        "name": required(fmt, "name", str, "text.format.name"),
        "schema": required(fmt, "schema", dict, "text.format.schema"),
    }
    for key in ("description", "strict"):
        if fmt.get(key) is not None:
            schema[key] = fmt[key]
    return ResponseFormat(type="json_schema", json_schema=schema)
