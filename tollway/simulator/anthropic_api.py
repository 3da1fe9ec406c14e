"""Anthropic Messages API: ``/v1/messages`` (plain and streaming) and token counting.

Stream event order follows the Messages streaming docs and the anthropic-python accumulator:
``message_start`` (empty content, output_tokens 1), then per content block
``content_block_start`` / ``content_block_delta``s / ``content_block_stop`` with one ``ping``
after the first block start, then ``message_delta`` (stop_reason, stop_sequence, cumulative
usage) and ``message_stop``. Tool input streams as ``input_json_delta`` fragments after an
empty one, as the real API does (a call without arguments: the empty one alone).

Prompt caching: a request with a top-level ``cache_control`` (``{"type": "ephemeral"}``, with
``"ttl": "1h"`` for an hour) reports its whole prompt as written to the cache, in
``cache_creation_input_tokens`` and split by time to live in ``cache_creation``, as Anthropic
does. The simulator keeps no cache: ``x-sim-cached-tokens`` says how much of the prompt was
read from it (``cache_read_input_tokens``), ``x-sim-cache-write-tokens`` how much was written;
``input_tokens`` is the rest of the prompt, as Anthropic counts it (``prompt_cache.py``).
Streamed, they are in ``message_start``'s usage (and again in ``message_delta``'s).

Refusals: with ``x-sim-refusal`` the answer is those words as text, ending with
``stop_reason: "refusal"``, as Claude's answers a safety classifier stops end.

Extended thinking: a request whose ``thinking`` turns it on (``enabled`` with a
``budget_tokens`` of at least 1024 and below ``max_tokens``, or ``adaptive``; checked as Claude
checks it) is answered with a signed ``thinking`` block first (``"Simulated reasoning about:
<the same words>"`` and filler, counted in ``output_tokens``); streamed, that block's
``content_block_start`` (empty ``thinking`` and ``signature``), the ping, one
``thinking_delta`` a token, one ``signature_delta``, ``content_block_stop``, as Claude streams
it. A ``thinking`` block given back must carry the signature the simulator gave its text, and,
with thinking on, the assistant turn whose tool calls the request answers must start with
one: both are Claude's 400 otherwise.

Tool calls and results pair up as Claude checks them: a ``tool_result`` whose ``tool_use_id``
names no ``tool_use`` of the message before, and a ``tool_use`` the next message leaves
unanswered, are Claude's 400s, in its words.

Empty text blocks (``{"type": "text", "text": ""}``, in a message, a tool result or the
system prompt) are Claude's 400, ``messages: text content blocks must be non-empty``.

Documents: a ``document``'s ``source`` is one of Anthropic's kinds (``base64``, ``text``,
``content``, ``url``, ``file``), else a 400 naming the tags it takes; a ``url`` source needs its
``url``, which the simulator takes (and does not fetch) when it is an http or https URL, the
only kinds Anthropic can download (a 400 otherwise). A document counts as an image does.

Sampling, checked as Claude checks it: a stop sequence of nothing but whitespace is a 400
(``stop_sequences: each stop sequence must contain non-whitespace``), and a model named as a
Claude of generation 4.1 or later (``claude-sonnet-4-5``, ``claude-opus-4-1-20250805``, ...)
refuses ``temperature`` and ``top_p`` together.

Citations: a request holding a plain-text ``document`` with ``citations: {"enabled": true}``
(and asking for no tool call) is answered as Anthropic answers one, in separate text blocks
around the quote, the quoting block alone carrying its ``char_location`` citation; streamed,
each is its own block, the citation coming as a ``citations_delta`` before the quoted text.

Web search: a request offering Anthropic's web search server tool (``web_search_...``), whose
last message is the user's and whose ``tool_choice`` leaves it open, is answered as Claude
answers when it searches: a ``server_tool_use`` block (``input.query``: the user's words) and
its ``web_search_tool_result`` block before the answer, once per search (``x-sim-searches``,
never more than the tool's ``max_uses``), the answer (without thinking or tool calls) then its
reply and a text block of its own (``SEARCH_CITED``) citing the result (a
``web_search_result_location``), each search's results ``SEARCH_TOKENS`` more input tokens,
and ``usage.server_tool_use.web_search_requests`` saying how many (streamed: in
``message_delta``'s usage; the blocks as ``content_block_start`` / ``input_json_delta`` /
``content_block_stop``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from tollway.simulator.bedrock_api import claude_thinking, thinking_signature
from tollway.simulator.content import (
    IMAGE_TOKENS,
    MESSAGE_OVERHEAD,
    TOOL_TOKENS,
    Completion,
    InvalidRequest,
    Prompt,
    ToolSpec,
    check_closed,
    complete,
    refusal,
    word_count,
)
from tollway.simulator.errors import Dialect, json_response, request_id_header
from tollway.simulator.exchange import SSE_HEADERS, Call, StreamParts, delay, send_stream
from tollway.simulator.prompt_cache import NO_CACHE, PromptCache, prompt_cache
from tollway.simulator.responses_tools import SEARCH_TOKENS
from tollway.simulator.state import SimulatorState
from tollway.simulator.tool_names import check_anthropic, check_anthropic_use

_STOP_REASON = {
    "stop": "end_turn",
    "length": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_calls": "tool_use",
    "refusal": "refusal",
}
_MEDIA_BLOCKS = ("image", "document")
_SERVICE_TIER = "standard"


def _blocks_text(content: Any, where: str = "messages") -> tuple[str, str | None, int]:
    """Text, tool-result text (None if no tool_result block) and token count of a content;
    an empty text block (``where`` it is, ``messages`` or ``system``) is Claude's 400."""
    if isinstance(content, str):
        return content, None, word_count(content)
    if not isinstance(content, list):
        return "", None, 0
    texts: list[str] = []
    results: list[str] | None = None
    tokens = 0
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and block.get("text") == "":
            raise InvalidRequest(f"{where}: text content blocks must be non-empty", where)
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
            tokens += word_count(block["text"])
        elif kind in _MEDIA_BLOCKS:
            tokens += IMAGE_TOKENS
        elif kind == "tool_use":
            tokens += word_count(orjson.dumps(block.get("input", {})).decode())
        elif kind == "tool_result":
            text, _, inner = _blocks_text(block.get("content", ""))
            results = [*(results or []), text]
            tokens += inner
    return " ".join(texts), None if results is None else " ".join(results), tokens


_CALL_ID = re.compile(r"[a-zA-Z0-9_-]+")
_CALL_ID_FIELDS = {"tool_use": "id", "tool_result": "tool_use_id"}


def _check_call_ids(content: Any, index: int) -> None:
    """Anthropic's pattern for a ``tool_use`` id and a result's ``tool_use_id``, and for a
    ``tool_use`` block's name (``tool_names``), in its words."""
    for number, block in enumerate(content if isinstance(content, list) else ()):
        kind = block.get("type") if isinstance(block, dict) else None
        field = _CALL_ID_FIELDS.get(kind) if isinstance(kind, str) else None
        value = None if field is None else block.get(field)
        if isinstance(value, str) and not _CALL_ID.fullmatch(value):
            param = f"messages.{index}.content.{number}.{block['type']}.{field}"
            raise InvalidRequest(f"{param}: String should match pattern '^[a-zA-Z0-9_-]+$'", param)
        if kind == "tool_use" and isinstance(block.get("name"), str):
            check_anthropic_use(block["name"], index, number)


_DOCUMENT_SOURCES = ("base64", "text", "content", "url", "file")


def _check_documents(content: Any, where: str) -> None:
    """Each ``document`` block's source (in a tool result's content too), as Claude checks
    it, in its words; ``where`` is the content's path (``messages.0.content``)."""
    for number, block in enumerate(content if isinstance(content, list) else ()):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "tool_result":
            _check_documents(block.get("content"), f"{where}.{number}.tool_result.content")
        if kind != "document":
            continue
        param = f"{where}.{number}.document.source"
        source = block.get("source")
        tag = source.get("type") if isinstance(source, dict) else None
        if tag not in _DOCUMENT_SOURCES:
            tags = ", ".join(f"'{name}'" for name in _DOCUMENT_SOURCES)
            raise InvalidRequest(
                f"{param}: Input tag {tag!r} found using 'type' does not match any of the "
                f"expected tags: {tags}",
                param,
            )
        if tag != "url":
            continue
        assert isinstance(source, dict)
        url = source.get("url")
        if not isinstance(url, str):
            raise InvalidRequest(f"{param}.url.url: Field required", f"{param}.url.url")
        if urlsplit(url).scheme not in ("http", "https"):
            raise InvalidRequest(
                f"{param}.url.url: the document's URL must be an http or https URL",
                f"{param}.url.url",
            )


def _tool_ids(message: Any, kind: str, field: str) -> list[tuple[int, str]]:
    """(position, id) of each ``kind`` block of a message's content."""
    content = message.get("content") if isinstance(message, dict) else None
    return [
        (position, str(block.get(field)))
        for position, block in enumerate(content if isinstance(content, list) else ())
        if isinstance(block, dict) and block.get("type") == kind
    ]


def _check_tool_pairs(messages: list[Any]) -> None:
    """Claude's pairing of calls and results, in its words: each ``tool_use`` answered by a
    ``tool_result`` in the next message, and each result answering a call of the one before."""
    offered: set[str] = set()
    for index, message in enumerate(messages):
        for position, use_id in _tool_ids(message, "tool_result", "tool_use_id"):
            if use_id not in offered:
                raise InvalidRequest(
                    f"messages.{index}.content.{position}: unexpected `tool_use_id` found in "
                    f"`tool_result` blocks: {use_id}. Each `tool_result` block must have a "
                    "corresponding `tool_use` block in the previous message.",
                    "messages",
                )
        calls = [use_id for _, use_id in _tool_ids(message, "tool_use", "id")]
        if index + 1 < len(messages):
            results = _tool_ids(messages[index + 1], "tool_result", "tool_use_id")
            answered = {use_id for _, use_id in results}
            unanswered = [use_id for use_id in calls if use_id not in answered]
            if unanswered:
                raise InvalidRequest(
                    f"messages.{index}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(unanswered)}. Each `tool_use` block must "
                    "have a corresponding `tool_result` block in the next message.",
                    "messages",
                )
        offered = set(calls)


def _system_tokens(system: Any) -> int:
    text, _, tokens = _blocks_text(system, "system")
    return MESSAGE_OVERHEAD + tokens if text or tokens else 0


def _require(body: dict[str, Any], name: str) -> Any:
    if name not in body:
        raise InvalidRequest(f"{name}: Field required", name)
    return body[name]


def _tools(body: dict[str, Any]) -> list[ToolSpec]:
    specs: list[ToolSpec] = []
    for index, tool in enumerate(body.get("tools") or ()):
        custom = isinstance(tool, dict) and tool.get("type") in (None, "custom")
        if custom and isinstance(tool.get("name"), str):
            check_anthropic(tool["name"], index)
        # Server tools (web search, code execution, ...) have no input_schema; they are skipped.
        if isinstance(tool, dict) and isinstance(tool.get("name"), str) and "input_schema" in tool:
            schema = tool["input_schema"]
            _check_input_schema(schema, index)
            specs.append(ToolSpec(tool["name"], schema if isinstance(schema, dict) else None))
    return specs


def _check_input_schema(schema: Any, index: int) -> None:
    """A custom tool's ``input_schema`` is an object's schema (``type: "object"``), or
    Anthropic's 400, in its words."""
    param = f"tools.{index}.custom.input_schema.type"
    if isinstance(schema, dict) and "type" not in schema:
        raise InvalidRequest(f"{param}: Field required", param)
    if isinstance(schema, dict) and schema["type"] != "object":
        raise InvalidRequest(f"{param}: Input should be 'object'", param)


def _apply_tool_choice(prompt: Prompt, choice: Any) -> None:
    if not isinstance(choice, dict):
        return
    kind = choice.get("type")
    if kind == "none":
        prompt.tool_mode = "none"
    elif kind == "any":
        prompt.tool_mode = "required"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        prompt.forced_tool = choice["name"]
    if choice.get("disable_parallel_tool_use") is True:
        prompt.parallel_tools = False


def _output_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    config = body.get("output_config")
    spec = config.get("format") if isinstance(config, dict) else body.get("output_format")
    if isinstance(spec, dict) and spec.get("type") == "json_schema":
        schema = spec.get("schema")
        field = "output_config.format" if isinstance(config, dict) else "output_format"
        check_closed(schema, f"{field}.schema")
        return schema if isinstance(schema, dict) else {}
    return None


def read_prompt(body: dict[str, Any], target_tokens: int) -> tuple[Prompt, int]:
    """Pull the generator's inputs and the input token count out of a Messages request."""
    _require(body, "model")
    messages = _require(body, "messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: at least one message is required", "messages")
    input_tokens = _system_tokens(body.get("system"))
    last_user = ""
    tool_result: str | None = None
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise InvalidRequest("messages: each message needs role user or assistant", "messages")
        _check_call_ids(message.get("content"), index)
        _check_documents(message.get("content"), f"messages.{index}.content")
        text, tool_result, tokens = _blocks_text(message.get("content"))
        input_tokens += MESSAGE_OVERHEAD + tokens
        if message["role"] == "user" and tool_result is None:
            last_user = text
    _check_tool_pairs(messages)
    last_is_user = messages[-1]["role"] == "user"
    prompt = Prompt(
        last_user_text=last_user,
        tool_result_text=tool_result if last_is_user else None,
        last_is_user=last_is_user,
        tools=_tools(body),
        target_tokens=target_tokens,
    )
    input_tokens += TOOL_TOKENS * len(prompt.tools)
    _apply_tool_choice(prompt, body.get("tool_choice"))
    prompt.json_schema = _output_schema(body)
    stops = body.get("stop_sequences")
    prompt.stop = [s for s in stops if isinstance(s, str)] if isinstance(stops, list) else []
    return prompt, input_tokens


_CLAUDE_GENERATION = re.compile(r"claude-(?:opus|sonnet|haiku)-(\d+)(?:-(\d{1,2}))?(?:-|$)")
"""A Claude model's generation in its name: ``claude-sonnet-4-5`` is 4.5, ``claude-opus-4-2025...``
4.0 (a date is no minor version)."""


def _check_sampling(body: dict[str, Any]) -> None:
    """Claude's 400s for stop sequences and sampling settings it does not take."""
    stops = body.get("stop_sequences")
    for stop in stops if isinstance(stops, list) else ():
        if isinstance(stop, str) and not stop.strip():
            raise InvalidRequest(
                "stop_sequences: each stop sequence must contain non-whitespace", "stop_sequences"
            )
    named = _CLAUDE_GENERATION.match(str(body.get("model")))
    generation = (0, 0) if named is None else (int(named[1]), int(named[2] or 0))
    if generation >= (4, 1) and "temperature" in body and "top_p" in body:
        raise InvalidRequest(
            "`temperature` and `top_p` cannot both be specified for this model. "
            "Please use only one."
        )


def _max_tokens(body: dict[str, Any]) -> int:
    value = _require(body, "max_tokens")
    # 0 warms the prompt cache and generates nothing (Anthropic's pre-warm).
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidRequest("max_tokens: Input should be a valid integer >= 0", "max_tokens")
    return value


def _cache_ttl(body: dict[str, Any]) -> str | None:
    """How long a request asks its prompt to be cached (``None``: not at all)."""
    control = body.get("cache_control")
    if control is None:
        return None
    ttl = control.get("ttl", "5m") if isinstance(control, dict) else None
    if ttl not in ("5m", "1h") or control.get("type") != "ephemeral":
        raise InvalidRequest(
            "cache_control: expected {'type': 'ephemeral', 'ttl': '5m' | '1h'}", "cache_control"
        )
    return str(ttl)


_RESULT_URL, _RESULT_TITLE = "https://example.com/simulated-result", "Simulated result"


def _searches(body: dict[str, Any], prompt: Prompt, wanted: int) -> int:
    """The web searches Claude makes before answering ``body`` (0: none)."""
    tools = [
        t for t in body.get("tools") or ()
        if isinstance(t, dict) and str(t.get("type", "")).startswith("web_search_")
    ]  # fmt: skip
    if not tools or not prompt.last_is_user or prompt.tool_mode == "none" or prompt.forced_tool:
        return 0
    bound = tools[0].get("max_uses")
    return min(wanted, bound) if isinstance(bound, int) and bound >= 0 else wanted


def _search_blocks(prompt: Prompt, searches: int, state: SimulatorState) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for _ in range(searches):
        use_id = state.new_id("srvtoolu_")
        query = {"query": prompt.last_user_text[:100]}
        use = {"type": "server_tool_use", "id": use_id, "name": "web_search", "input": query}
        blocks.append(use)
        result = {
            "type": "web_search_result",
            "url": _RESULT_URL,
            "title": _RESULT_TITLE,
            "encrypted_content": "c2ltdWxhdGVk",
            "page_age": None,
        }
        found = {"type": "web_search_tool_result", "tool_use_id": use_id, "content": [result]}
        blocks.append(found)
    return blocks


SEARCH_CITED = "The simulated result says so."
"""The sentence of an answer after a search that cites the search's result."""


def _search_cited_blocks(completion: Completion) -> list[dict[str, Any]]:
    """An answer after a search: the reply, then a sentence citing the result, as Claude
    splits its text around what a source says."""
    citation = {
        "type": "web_search_result_location",
        "url": _RESULT_URL,
        "title": _RESULT_TITLE,
        "encrypted_index": "c2ltdWxhdGVkLWluZGV4",
        "cited_text": "Simulated result text.",
    }
    return [
        {"type": "text", "text": completion.text + " "},
        {"type": "text", "text": SEARCH_CITED, "citations": [citation]},
    ]


def _with_searches(usage: dict[str, Any], searches: int) -> dict[str, Any]:
    if searches:
        usage["server_tool_use"] = {"web_search_requests": searches}
    return usage


def _usage(input_tokens: int, output_tokens: int, cache: PromptCache) -> dict[str, Any]:
    """A Messages usage object; ``input_tokens`` is the whole prompt, of which Anthropic's
    ``input_tokens`` says only what was neither read from nor written to the cache."""
    usage: dict[str, Any] = {
        "input_tokens": input_tokens - cache.reads - cache.writes,
        "cache_creation_input_tokens": cache.writes,
        "cache_read_input_tokens": cache.reads,
    }
    if cache.writes:
        usage["cache_creation"] = {
            "ephemeral_5m_input_tokens": 0 if cache.hour else cache.writes,
            "ephemeral_1h_input_tokens": cache.writes if cache.hour else 0,
        }
    usage["output_tokens"] = output_tokens
    return usage


def _thinking_block(completion: Completion) -> dict[str, Any]:
    text = "".join(completion.reasoning)
    return {"type": "thinking", "thinking": text, "signature": thinking_signature(text)}


def _check_thinking(messages: list[Any], thinking: bool) -> None:
    """Thinking given back must be signed as the simulator signed it; with thinking on, the
    turn whose tool calls the request answers must start with its thinking (Claude's rules)."""
    for index, message in enumerate(messages):
        content = message.get("content")
        if message.get("role") != "assistant" or not isinstance(content, list):
            continue
        for position, block in enumerate(content):
            if not (isinstance(block, dict) and block.get("type") == "thinking"):
                continue
            if block.get("signature") != thinking_signature(str(block.get("thinking"))):
                where = f"messages.{index}.content.{position}"
                raise InvalidRequest(f"{where}: Invalid `signature` in `thinking` block", where)
    if not thinking or len(messages) < 2:
        return
    answered, last = messages[-2], messages[-1]
    results = last.get("content") if last.get("role") == "user" else None
    if not isinstance(results, list) or not any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in results
    ):
        return
    content = answered.get("content")
    first = content[0] if isinstance(content, list) and content else {}
    kind = first.get("type") if isinstance(first, dict) else None
    if kind not in ("thinking", "redacted_thinking"):
        raise InvalidRequest(
            f"messages.{len(messages) - 2}.content.0.type: Expected `thinking` or "
            f"`redacted_thinking`, but found `{kind}`. When `thinking` is enabled, a final "
            "`assistant` message must start with a thinking block.",
            "messages",
        )


def _blocks(completion: Completion) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if completion.reasoning:
        blocks.append(_thinking_block(completion))
    if completion.pieces:
        blocks.append({"type": "text", "text": completion.text})
    for call in completion.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.input()})
    return blocks


def _cited_blocks(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    """An answer quoting the first plain-text document with citations enabled, if any."""
    documents = [
        block
        for message in body.get("messages") or ()
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        for block in message["content"]
        if isinstance(block, dict) and block.get("type") == "document"
    ]
    for index, document in enumerate(documents):
        source, citations = document.get("source"), document.get("citations")
        if not (isinstance(citations, dict) and citations.get("enabled") is True):
            continue
        if isinstance(source, dict) and source.get("type") == "text":
            text = str(source.get("data") or "")
            citation = {
                "type": "char_location",
                "cited_text": text,
                "document_index": index,
                "document_title": document.get("title"),
                "start_char_index": 0,
                "end_char_index": len(text),
            }
            return [
                {"type": "text", "text": "The document says: "},
                {"type": "text", "text": text, "citations": [citation]},
                {"type": "text", "text": " That is all it says."},
            ]
    return None


async def handle_messages(
    request: web.Request, call: Call, state: SimulatorState
) -> web.StreamResponse:
    """Answer an admitted Messages request (raises InvalidRequest on a bad body)."""
    body = call.body
    prompt, input_tokens = read_prompt(body, call.output_tokens)
    prompt.max_tokens = _max_tokens(body)
    _check_sampling(body)
    prompt.reasoning = claude_thinking(body.get("thinking"), prompt.max_tokens)
    _check_thinking(body["messages"], prompt.reasoning)
    ttl = _cache_ttl(body)
    completion = complete(prompt, 0, lambda: state.new_id("toolu_"))
    if call.refusal is not None:
        completion = refusal(call.refusal)
    cited = None if completion.tool_calls or call.refusal else _cited_blocks(body)
    searches = _searches(body, prompt, call.searches)
    input_tokens += SEARCH_TOKENS * searches
    cache = prompt_cache(call, input_tokens, ttl)
    found = _search_blocks(prompt, searches, state)
    plain = not (completion.tool_calls or completion.reasoning or call.refusal)
    if found and cited is None and plain:
        cited = _search_cited_blocks(completion)
    message: dict[str, Any] = {
        "id": state.new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        # Its usage names the service tier, as Anthropic's message_start does (and the
        # complete message: a streamed answer's final message equals the plain one).
        "usage": {**_usage(input_tokens, 1, cache), "service_tier": _SERVICE_TIER},
    }
    if body.get("stream") is True:
        parts = stream_parts(message, completion, input_tokens, cache, cited, found)
        headers = {**SSE_HEADERS, request_id_header(Dialect.ANTHROPIC): call.request_id}
        return await send_stream(request, call, parts, headers)
    await delay(call, completion.output_tokens)
    message["content"] = found + (_blocks(completion) if cited is None else cited)
    message["stop_reason"] = _STOP_REASON[completion.finish]
    message["stop_sequence"] = completion.stop_sequence
    usage = _with_searches(_usage(input_tokens, completion.output_tokens, cache), searches)
    message["usage"] = {**usage, "service_tier": _SERVICE_TIER}
    return json_response(message, call.request_id, Dialect.ANTHROPIC)


def _event(name: bytes, payload: dict[str, Any]) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


_PING = _event(b"ping", {"type": "ping"})
_MESSAGE_STOP = _event(b"message_stop", {"type": "message_stop"})


def _text_block_parts(index: int, pieces: list[str]) -> StreamParts:
    start = {
        "type": "content_block_start",
        "index": index,
        "content_block": {"type": "text", "text": ""},
    }
    parts: StreamParts = [(_event(b"content_block_start", start), False)]
    # Text deltas are the hot path: splice each piece into a template, no dict per token.
    head = (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
        b'"delta":{"type":"text_delta","text":' % index
    )
    parts.extend((head + orjson.dumps(piece) + b"}}\n\n", True) for piece in pieces)
    return parts


def _search_block_parts(index: int, block: dict[str, Any]) -> StreamParts:
    """A search's block as Anthropic streams it: a ``server_tool_use`` block's input as one
    ``input_json_delta``; a result block whole at its start."""
    if block["type"] != "server_tool_use":
        start = {"type": "content_block_start", "index": index, "content_block": block}
        return [(_event(b"content_block_start", start), False)]
    opened = {**block, "input": {}}
    start = {"type": "content_block_start", "index": index, "content_block": opened}
    fragment = orjson.dumps(block["input"]).decode()
    delta = {"type": "input_json_delta", "partial_json": fragment}
    event = {"type": "content_block_delta", "index": index, "delta": delta}
    return [
        (_event(b"content_block_start", start), False),
        (_event(b"content_block_delta", event), False),
    ]


def _thinking_block_parts(completion: Completion, index: int = 0) -> StreamParts:
    block = {"type": "thinking", "thinking": "", "signature": ""}
    start = {"type": "content_block_start", "index": index, "content_block": block}
    parts: StreamParts = [(_event(b"content_block_start", start), False)]
    for piece in completion.reasoning:
        delta = {"type": "thinking_delta", "thinking": piece}
        event = {"type": "content_block_delta", "index": index, "delta": delta}
        parts.append((_event(b"content_block_delta", event), True))
    signature = {"type": "signature_delta", "signature": _thinking_block(completion)["signature"]}
    event = {"type": "content_block_delta", "index": index, "delta": signature}
    parts.append((_event(b"content_block_delta", event), False))
    return parts


def _cited_block_parts(index: int, block: dict[str, Any]) -> StreamParts:
    parts = _text_block_parts(index, [block["text"]])
    for citation in block.get("citations") or ():
        delta = {"type": "citations_delta", "citation": citation}
        event = {"type": "content_block_delta", "index": index, "delta": delta}
        parts.insert(1, (_event(b"content_block_delta", event), False))
    return parts


def stream_parts(
    message: dict[str, Any],
    completion: Completion,
    input_tokens: int,
    cache: PromptCache = NO_CACHE,
    cited: list[dict[str, Any]] | None = None,
    found: list[dict[str, Any]] | None = None,
) -> StreamParts:
    """Every event of a Messages stream (``cited``: the text blocks of a cited answer;
    ``found``: the blocks of web searches made before it)."""
    parts: StreamParts = [
        (_event(b"message_start", {"type": "message_start", "message": message}), False)
    ]
    blocks: list[StreamParts] = [
        _search_block_parts(index, block) for index, block in enumerate(found or ())
    ]
    if cited is not None:
        for block in cited:
            blocks.append(_cited_block_parts(len(blocks), block))
    if completion.reasoning and cited is None:
        blocks.append(_thinking_block_parts(completion, len(blocks)))
    if cited is None and completion.pieces:
        blocks.append(_text_block_parts(len(blocks), completion.pieces))
    for call in completion.tool_calls:
        index = len(blocks)
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        start = {"type": "content_block_start", "index": index, "content_block": block}
        block_parts: StreamParts = [(_event(b"content_block_start", start), False)]
        # Input streams after an empty fragment; a call without arguments is that empty
        # fragment alone, as Claude streams it.
        unargued = call.input() == {}
        fragments = (
            [("", True)] if unargued else [("", False), *((f, True) for f in call.fragments)]
        )
        for fragment, is_token in fragments:
            delta = {"type": "input_json_delta", "partial_json": fragment}
            event = {"type": "content_block_delta", "index": index, "delta": delta}
            block_parts.append((_event(b"content_block_delta", event), is_token))
        blocks.append(block_parts)
    if not blocks:
        parts.append((_PING, False))
    for index, block_parts in enumerate(blocks):
        parts.append(block_parts[0])
        if index == 0:
            parts.append((_PING, False))
        parts.extend(block_parts[1:])
        stop = {"type": "content_block_stop", "index": index}
        parts.append((_event(b"content_block_stop", stop), False))
    message_delta = {
        "type": "message_delta",
        "delta": {
            "stop_reason": _STOP_REASON[completion.finish],
            "stop_sequence": completion.stop_sequence,
        },
        "usage": _with_searches(
            _usage(input_tokens, completion.output_tokens, cache),
            sum(1 for block in found or () if block["type"] == "server_tool_use"),
        ),
    }
    parts.append((_event(b"message_delta", message_delta), False))
    parts.append((_MESSAGE_STOP, False))
    return parts


async def handle_count_tokens(call: Call) -> web.Response:
    """Answer an admitted count_tokens request with the input token count."""
    _, input_tokens = read_prompt(call.body, call.output_tokens)
    return json_response({"input_tokens": input_tokens}, call.request_id, Dialect.ANTHROPIC)
