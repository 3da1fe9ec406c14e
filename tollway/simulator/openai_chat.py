"""OpenAI (and Azure OpenAI) chat completions: request reading, replies and SSE chunks.

Shapes follow the openai-python ``ChatCompletion`` / ``ChatCompletionChunk`` types: a stream
opens with a role delta per choice, sends one chunk per token (tool-call arguments in fragments,
the first carrying id, type and name; parallel calls one after the other, or in turn with
``x-sim-tool-calls: interleave``; every delta without its ``index`` with
``x-sim-tool-calls: unindexed``, as Gemini's OpenAI-compatible API streams them, each call's
first delta with Gemini's thought signature in ``extra_content``), closes each choice with an
empty delta and its finish_reason, then a ``choices: []`` usage chunk when
``stream_options.include_usage`` is set (all other chunks then carry ``"usage": null``), then
``data: [DONE]``. Azure streams open with
the empty-choices ``prompt_filter_results`` chunk real Azure sends, and Azure's dated
api-versions refuse the fields they predate (``stream_options`` before 2024-08-01,
``max_completion_tokens`` before 2024-09-01); with ``x-sim-content-filter: prompt`` Azure
refuses the prompt as its content filters do (a 400 ``content_filter`` whose ``innererror``
names the category caught). As OpenAI does, a tool message answering no call of the assistant
turn before it is a 400, and so is a call of that turn no tool message answers before the next
message; ``parallel_tool_calls`` without
``tools`` is a 400, and so is a ``file`` part's ``file_data`` without its ``filename``
(``missing_required_parameter``, naming ``file.file_id``), and so, in strict mode, is a
``json_schema`` or a function's ``parameters`` with an object not closed or with a property
left out of ``required`` (``content.check_strict``). Mistral's carry the usage on
their last chunk, unasked. With ``x-sim-refusal`` the answer declines as a structured-output
refusal comes: no content, the words in ``message.refusal`` (streamed as ``delta.refusal``
pieces), finish ``stop``. With ``x-sim-reasoning`` (the field name) it reasons first as
OpenAI-compatible servers say it: ``message.reasoning_content`` (or ``reasoning``), streamed
as ``delta.reasoning_content`` pieces before the answer's, counted in
``completion_tokens_details.reasoning_tokens``. Mistral's reasoning models (a model name with
``magistral`` at ``/mistral/v1``) always reason, as Magistral says it: ``message.content`` is a
list of chunks, a ``thinking`` chunk (its text as a list of ``text`` chunks) then a ``text``
chunk; streamed, each reasoning piece is a ``delta.content`` list holding one ``thinking``
chunk, and the answer's pieces are plain text. With ``logprobs: true`` each text token has its
log probability (and ``top_logprobs`` alternatives): the choice's ``logprobs.content``, and
streamed, each token's chunk carries its own entry.
"""

from __future__ import annotations

import itertools
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
    check_strict,
    complete,
    cut_calls,
    refusal,
    word_count,
)
from tollway.simulator.errors import Dialect, json_response, request_id_header
from tollway.simulator.exchange import SSE_HEADERS, Call, StreamParts, delay, send_stream
from tollway.simulator.prompt_cache import NO_CACHE, PromptCache, prompt_cache
from tollway.simulator.state import SimulatorState
from tollway.simulator.tool_names import check_openai

SYSTEM_FINGERPRINT = "fp_tollway_sim"
_FINISH = {
    "stop": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "refusal": "stop",  # a structured-output refusal ends as any answer does
}
_NOT_FILTERED = {"filtered": False, "severity": "safe"}
CONTENT_FILTER_RESULTS = {
    name: _NOT_FILTERED for name in ("hate", "self_harm", "sexual", "violence")
}
PROMPT_FILTER_RESULTS = [{"prompt_index": 0, "content_filter_results": CONTENT_FILTER_RESULTS}]
PROMPT_FILTERED = {
    "error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
        "content management policy. Please modify your prompt and retry.",
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {
                **CONTENT_FILTER_RESULTS,
                "violence": {"filtered": True, "severity": "high"},
            },
        },
    }
}
"""Azure's refusal of a prompt its content filters catch (``x-sim-content-filter: prompt``)."""
_DONE = b"data: [DONE]\n\n"
CONTENT_CHUNKS = "content"
"""The ``reasoning_field`` of a model that says its reasoning in ``content`` chunks (Magistral)."""


def magistral(dialect: Dialect, model: str) -> bool:
    """Whether ``model`` is one of Mistral's reasoning models, which always reason."""
    return dialect is Dialect.MISTRAL and "magistral" in model.lower()


def _thinking_chunk(text: str) -> JSON:
    return {"type": "thinking", "thinking": [{"type": "text", "text": text}]}


_TOKEN_TAIL = b'},"logprobs":null,"finish_reason":null}'


def _logprob(piece: str, position: int, top: int) -> JSON:
    """A token's deterministic log probability entry, with ``top`` alternatives."""
    entry: JSON = {"token": piece, "logprob": -0.125 * (position % 4 + 1)}
    entry["bytes"] = list(piece.encode())
    alternatives = [
        {"token": f"{piece.strip()}~{k}", "logprob": -1.0 - k, "bytes": None} for k in range(top)
    ]
    return {**entry, "top_logprobs": alternatives}


def _logprobs_asked(body: dict[str, Any]) -> int | None:
    """How many alternatives each token's entry lists when ``logprobs`` is asked; ``None``:
    not asked. ``top_logprobs`` without ``logprobs`` is a 400, as OpenAI answers it."""
    top = body.get("top_logprobs")
    if top is not None and (
        not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= 20
    ):
        raise InvalidRequest(
            "Invalid 'top_logprobs': expected an integer between 0 and 20.", "top_logprobs"
        )
    if body.get("logprobs") is not True:
        if top is not None:
            raise InvalidRequest("Using top_logprobs requires logprobs to be true.", "top_logprobs")
        return None
    return top or 0


def _content_text(content: Any) -> tuple[str, int]:
    """A message content's text and its token count (words plus images)."""
    if isinstance(content, str):
        return content, word_count(content)
    if not isinstance(content, list):
        return "", 0
    texts: list[str] = []
    images = 0
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind in ("image_url", "input_image", "image"):
            images += 1
    text = " ".join(texts)
    return text, word_count(text) + images * IMAGE_TOKENS


def _message_tokens(message: dict[str, Any]) -> tuple[str, int]:
    text, tokens = _content_text(message.get("content"))
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            tokens += word_count(function["arguments"])
    return text, tokens + MESSAGE_OVERHEAD


def _tools(body: dict[str, Any]) -> list[ToolSpec]:
    specs: list[ToolSpec] = []
    for index, tool in enumerate(body.get("tools") or ()):
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            check_openai(function["name"], f"tools[{index}].function.name")
            parameters = function.get("parameters")
            if function.get("strict") is True:
                subject = f"function {function['name']!r}"
                param = f"tools[{index}].function.parameters"
                check_strict(parameters, subject, param, "invalid_function_parameters")
            specs.append(
                ToolSpec(function["name"], parameters if isinstance(parameters, dict) else None)
            )
    return specs


def _apply_tool_choice(prompt: Prompt, choice: Any) -> None:
    if choice in ("none", "auto", "required"):
        prompt.tool_mode = choice
    elif isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            prompt.forced_tool = function["name"]


def _apply_response_format(prompt: Prompt, response_format: Any) -> None:
    if not isinstance(response_format, dict):
        return
    kind = response_format.get("type")
    if kind == "json_object":
        prompt.json_mode = True
    elif kind == "json_schema":
        prompt.json_mode = True
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if isinstance(spec, dict) and spec.get("strict") is True:
            check_strict(schema, f"response_format {spec.get('name')!r}", "response_format")
        prompt.json_schema = schema if isinstance(schema, dict) else None


def _max_tokens(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidRequest(f"Invalid '{name}': expected an integer >= 1.", name)
            return value
    return None


def read_prompt(body: dict[str, Any], call: Call) -> tuple[Prompt, int]:
    """Pull the generator's inputs and the prompt token count out of a chat request."""
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("Missing required parameter: 'messages'.", "messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("Invalid 'messages': expected a non-empty array.", "messages")
    prompt_tokens = 0
    last_user = ""
    last_text = ""
    awaited: _AwaitedResults | None = None  # the calls the tool messages here must answer
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest("Invalid 'messages': each message must be an object.", "messages")
        awaited = _check_tool_turn(message, index, awaited)
        _check_call_ids(message, index)
        _check_files(message, index)
        last_text, tokens = _message_tokens(message)
        prompt_tokens += tokens
        if message.get("role") == "user":
            last_user = last_text
    if awaited is not None and messages[-1].get("role") == "tool":
        awaited.check_answered()
    role = messages[-1].get("role")
    prompt = Prompt(
        last_user_text=last_user,
        tool_result_text=last_text if role == "tool" else None,
        last_is_user=role == "user",
        tools=_tools(body),
        parallel_tools=body.get("parallel_tool_calls") is not False,
        max_tokens=_max_tokens(body),
        target_tokens=call.output_tokens,
    )
    prompt_tokens += TOOL_TOKENS * len(prompt.tools)
    _apply_tool_choice(prompt, body.get("tool_choice"))
    _apply_response_format(prompt, body.get("response_format"))
    stop = body.get("stop")
    if isinstance(stop, list) and len(stop) > MOST_STOPS:
        raise InvalidRequest(
            f"Invalid 'stop': array too long. Expected an array with maximum length {MOST_STOPS}, "
            f"but got an array with length {len(stop)} instead.",
            "stop",
            "array_above_max_length",
        )
    prompt.stop = [stop] if isinstance(stop, str) else [s for s in stop or () if isinstance(s, str)]
    return prompt, prompt_tokens


MOST_STOPS = 4
"""The most ``stop`` sequences Chat Completions takes (more: OpenAI's 400)."""


class _AwaitedResults:
    """An assistant turn's tool calls, as the tool messages after it answer them."""

    def __init__(self, index: int, message: dict[str, Any]) -> None:
        self.index = index
        self.call_ids = [
            str(tool_call.get("id"))
            for tool_call in message.get("tool_calls") or ()
            if isinstance(tool_call, dict)
        ]
        self.answered: set[str] = set()

    def check_answered(self) -> None:
        """OpenAI's 400 for calls no tool message answers, in its words."""
        missing = [call_id for call_id in self.call_ids if call_id not in self.answered]
        if missing:
            raise InvalidRequest(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(missing)}",
                f"messages.[{self.index}].role",
            )


def _check_tool_turn(
    message: dict[str, Any], index: int, awaited: _AwaitedResults | None
) -> _AwaitedResults | None:
    """OpenAI's check that tool messages answer, each, a call of the assistant turn before them
    (its words, and its ``param`` with the dot before the index), and that every call of that
    turn is answered before the next message; the calls the next messages must answer."""
    if message.get("role") == "tool":
        if awaited is None or message.get("tool_call_id") not in awaited.call_ids:
            raise InvalidRequest(
                "Invalid parameter: messages with role 'tool' must be a response to a "
                "preceeding message with 'tool_calls'.",
                f"messages.[{index}].role",
            )
        awaited.answered.add(message["tool_call_id"])
        return awaited
    if awaited is not None:
        awaited.check_answered()
    if message.get("role") == "assistant" and message.get("tool_calls"):
        return _AwaitedResults(index, message)
    return None


def _check_files(message: dict[str, Any], index: int) -> None:
    """OpenAI's refusal of a ``file`` part whose ``file_data`` comes without a ``filename``
    (its words: it then looks for a ``file_id``, and names that)."""
    content = message.get("content")
    for position, part in enumerate(content if isinstance(content, list) else ()):
        file = part.get("file") if isinstance(part, dict) and part.get("type") == "file" else None
        if isinstance(file, dict) and "file_data" in file and "filename" not in file:
            param = f"messages[{index}].content[{position}].file.file_id"
            message_text = f"Missing required parameter: '{param}'."
            raise InvalidRequest(message_text, param, "missing_required_parameter")


_LONGEST_CALL_ID = 40


def _check_call_ids(message: dict[str, Any], index: int) -> None:
    """OpenAI's limit on a tool call's id, in OpenAI's words."""
    for number, tool_call in enumerate(message.get("tool_calls") or ()):
        call_id = tool_call.get("id") if isinstance(tool_call, dict) else None
        if isinstance(call_id, str) and len(call_id) > _LONGEST_CALL_ID:
            param = f"messages[{index}].tool_calls[{number}].id"
            raise InvalidRequest(
                f"Invalid '{param}': string too long. Expected a string with maximum length "
                f"{_LONGEST_CALL_ID}, but got a string with length {len(call_id)} instead.",
                param,
            )


def usage(
    prompt_tokens: int,
    completion_tokens: int,
    reasoning_tokens: int = 0,
    cache: PromptCache = NO_CACHE,
) -> dict[str, Any]:
    """An OpenAI usage object; ``prompt_tokens`` includes the cache's reads and writes, as
    OpenAI counts them."""
    details = {"cached_tokens": cache.reads, "audio_tokens": 0}
    if cache.writes:  # OpenAI says writes only for the models that bill them (GPT-5.6 on)
        details["cache_write_tokens"] = cache.writes
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": details,
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


# Request fields Azure's dated api-versions refuse before the version that added them.
_AZURE_SINCE = {"stream_options": "2024-08-01", "max_completion_tokens": "2024-09-01"}


def _check_azure_version(body: dict[str, Any], api_version: str | None) -> None:
    """Refuse, as Azure does, a field the request's api-version does not know yet."""
    if api_version is None or not api_version[:4].isdigit():
        return  # the v1 API (no api-version) or preview/latest: the newest
    for field, since in _AZURE_SINCE.items():
        if field in body and api_version < since:
            raise InvalidRequest(f"Unrecognized request argument supplied: {field}")


def _choice_count(body: dict[str, Any]) -> int:
    n = body.get("n", 1)
    if n is None:
        return 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128:
        raise InvalidRequest("Invalid 'n': expected an integer between 1 and 128.", "n")
    return n


async def handle_chat(
    request: web.Request, call: Call, state: SimulatorState, dialect: Dialect, model: str
) -> web.StreamResponse:
    """Answer an admitted chat completion request (raises InvalidRequest on a bad body)."""
    body = call.body
    if dialect is Dialect.AZURE:
        _check_azure_version(body, request.query.get("api-version"))
        if request.headers.get("x-sim-content-filter") == "prompt":
            return json_response(PROMPT_FILTERED, call.request_id, dialect, 400)
    if body.get("parallel_tool_calls") is not None and not body.get("tools"):
        message = (
            "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed "
            "when 'tools' are specified."
        )
        raise InvalidRequest(message, "parallel_tool_calls")
    prompt, prompt_tokens = read_prompt(body, call)
    reasoning_field = CONTENT_CHUNKS if magistral(dialect, model) else call.reasoning_field
    prompt.reasoning = reasoning_field is not None
    n = _choice_count(body)
    logprobs = _logprobs_asked(body)
    if body.get("stream_options") is not None and body.get("stream") is not True:
        message = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        raise InvalidRequest(message, "stream_options")
    completions = [
        cut_calls(complete(prompt, i, lambda: state.new_id("call_")), prompt.max_tokens)
        for i in range(n)
    ]
    if call.refusal is not None:
        completions = [refusal(call.refusal) for _ in range(n)]
    if prompt.forced_tool is not None:
        # OpenAI ends the call a named tool_choice forces with "stop", not "tool_calls"
        # ("required" and "auto" calls end with "tool_calls"), streamed or not.
        for completion in completions:
            if completion.finish == "tool_calls":
                completion.finish = "stop"
    completion_id = state.new_id("chatcmpl-")
    created = int(time.time())
    completion_tokens = sum(c.output_tokens for c in completions)
    reasoning_tokens = sum(len(c.reasoning) for c in completions)
    cache = prompt_cache(call, prompt_tokens)
    used = usage(prompt_tokens, completion_tokens, reasoning_tokens, cache)
    if body.get("stream") is True:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        include_usage = include_usage and not call.omit_usage  # a server that ignores it
        head = {"id": completion_id, "object": "chat.completion.chunk", "created": created}
        head.update(model=model, service_tier="default", system_fingerprint=SYSTEM_FINGERPRINT)
        parts = stream_parts(
            head,
            completions,
            dialect,
            include_usage,
            call.interleave_tools,
            unindexed_tools=call.unindexed_tools,
            reasoning_field=reasoning_field,
            logprobs=logprobs,
        )
        if dialect is Dialect.MISTRAL and not call.omit_usage:
            # Mistral puts the usage on the stream's last chunk, unasked (and refuses
            # stream_options, so include_usage is never set).
            last = len(completions) - 1
            finish = {"index": last, "delta": {}, "finish_reason": _FINISH[completions[-1].finish]}
            final = {**head, "choices": [finish], "usage": used}
            parts[-1] = (b"data: " + orjson.dumps(final) + b"\n\n", False)
        if include_usage:
            final = {**head, "choices": [], "usage": used}
            parts.append((b"data: " + orjson.dumps(final) + b"\n\n", False))
        parts.append((_DONE, False))
        headers = {**SSE_HEADERS, request_id_header(dialect): call.request_id}
        return await send_stream(request, call, parts, headers)
    await delay(call, completion_tokens)
    payload: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            _choice(i, c, dialect, reasoning_field, logprobs) for i, c in enumerate(completions)
        ],
        "usage": used,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    if call.omit_usage:
        del payload["usage"]
    if dialect is Dialect.AZURE:
        payload["prompt_filter_results"] = PROMPT_FILTER_RESULTS
    return json_response(payload, call.request_id, dialect)


def _choice(
    index: int,
    completion: Completion,
    dialect: Dialect,
    reasoning_field: str | None = None,
    logprobs: int | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    if reasoning_field not in (None, CONTENT_CHUNKS) and completion.reasoning:
        message[reasoning_field] = "".join(completion.reasoning)
    if completion.finish == "refusal":
        message["refusal"] = completion.text
    elif completion.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in completion.tool_calls
        ]
    else:
        message["content"] = completion.text
    if reasoning_field == CONTENT_CHUNKS and completion.reasoning:
        answer = [{"type": "text", "text": message["content"]}] if message["content"] else []
        message["content"] = [_thinking_chunk("".join(completion.reasoning)), *answer]
    message["annotations"] = []
    scores = None
    if logprobs is not None and completion.finish != "refusal" and not completion.tool_calls:
        entries = [_logprob(p, i, logprobs) for i, p in enumerate(completion.pieces)]
        scores = {"content": entries, "refusal": None}
    choice = {
        "index": index,
        "message": message,
        "logprobs": scores,
        "finish_reason": _FINISH[completion.finish],
    }
    if dialect is Dialect.AZURE:
        choice["content_filter_results"] = CONTENT_FILTER_RESULTS
    return choice


def _tool_call_deltas(
    completion: Completion, interleave: bool, unindexed: bool = False
) -> list[tuple[JSON, bool]]:
    """The deltas of a choice's tool calls, as (delta, is_token): one call after the other,
    or ``interleave``d (every call's first delta, then one fragment of each in turn);
    ``unindexed``: without their ``index``."""
    per_call: list[list[tuple[JSON, bool]]] = []
    for k, tool_call in enumerate(completion.tool_calls):
        where: JSON = {} if unindexed else {"index": k}
        opening: JSON = {
            **where,
            "id": tool_call.id,
            "type": "function",
            "function": {"name": tool_call.name, "arguments": ""},
        }
        if unindexed:  # Gemini's OpenAI-compatible API, which signs each call so
            opening["extra_content"] = {"google": {"thought_signature": f"sig-{tool_call.id}"}}
        if k == 0:
            first = {"role": "assistant", "content": None, "tool_calls": [opening]}
            deltas = [({**first, "refusal": None}, False)]
        else:
            deltas = [({"tool_calls": [opening]}, False)]
        deltas.extend(
            ({"tool_calls": [{**where, "function": {"arguments": fragment}}]}, True)
            for fragment in tool_call.fragments
        )
        per_call.append(deltas)
    if not interleave:
        return list(itertools.chain.from_iterable(per_call))
    rounds = itertools.zip_longest(*per_call)
    return [delta for row in rounds for delta in row if delta is not None]


def _choice_deltas(
    index: int,
    completion: Completion,
    interleave: bool,
    unindexed: bool = False,
    reasoning_field: str | None = None,
    logprobs: int | None = None,
) -> StreamParts:
    """One choice's serialised choice objects before its finish chunk, as (bytes, is_token);
    its reasoning first, in ``reasoning_field`` deltas."""
    deltas = _tool_call_deltas(completion, interleave, unindexed)
    refused = completion.finish == "refusal"
    if refused:
        deltas.append(({"role": "assistant", "content": None, "refusal": ""}, False))
        deltas.extend(({"refusal": piece}, True) for piece in completion.pieces)
    elif not completion.tool_calls:
        deltas.append(({"role": "assistant", "content": "", "refusal": None}, False))
    thinking: list[tuple[JSON, bool]] = []
    if reasoning_field == CONTENT_CHUNKS and completion.reasoning:
        thinking = [({"content": [_thinking_chunk(p)]}, True) for p in completion.reasoning]
        thinking[0][0]["role"] = "assistant"
        deltas[:0] = thinking
    elif reasoning_field is not None and completion.reasoning:
        thinking = [
            ({"content": None, reasoning_field: piece}, True) for piece in completion.reasoning
        ]
        thinking[0][0]["role"] = "assistant"
        deltas[:0] = thinking
    for delta, _ in deltas[len(thinking) :] if thinking else ():
        delta.pop("role", None)  # the reasoning's first delta said it: the role comes once
    parts = [
        (orjson.dumps({"index": index, "delta": d, "logprobs": None, "finish_reason": None}), t)
        for d, t in deltas
    ]
    if not refused:
        # Text tokens are the hot path of every benchmark: splice each piece into a template
        # instead of building and serialising a dict per token, after the role delta.
        head = b'{"index":%d,"delta":{"content":' % index
        at = len(thinking) + 1
        if logprobs is None:
            tokens = [(head + orjson.dumps(p) + _TOKEN_TAIL, True) for p in completion.pieces]
        else:
            tokens = [
                (orjson.dumps(_scored_token(index, p, i, logprobs)), True)
                for i, p in enumerate(completion.pieces)
            ]
        parts[at:at] = tokens
    return parts


def _scored_token(index: int, piece: str, position: int, top: int) -> JSON:
    """A text token's choice object with its log probability entry."""
    scores = {"content": [_logprob(piece, position, top)], "refusal": None}
    return {"index": index, "delta": {"content": piece}, "logprobs": scores, "finish_reason": None}


def stream_parts(
    head: dict[str, Any],
    completions: list[Completion],
    dialect: Dialect,
    include_usage: bool,
    interleave_tools: bool = False,
    *,
    unindexed_tools: bool = False,
    reasoning_field: str | None = None,
    logprobs: int | None = None,
) -> StreamParts:
    """Every chunk of the stream except the usage chunk and [DONE]; ``interleave_tools``
    interleaves the fragments of parallel tool calls, ``unindexed_tools`` leaves out their
    deltas' ``index``."""
    prefix = b"data: " + orjson.dumps(head)[:-1] + b',"choices":['
    suffix = b'],"usage":null}\n\n' if include_usage else b"]}\n\n"
    parts: StreamParts = []
    if dialect is Dialect.AZURE:
        opening = {"choices": [], "created": 0, "id": "", "model": "", "object": ""}
        opening["prompt_filter_results"] = PROMPT_FILTER_RESULTS
        parts.append((b"data: " + orjson.dumps(opening) + b"\n\n", False))
    per_choice = [
        _choice_deltas(i, c, interleave_tools, unindexed_tools, reasoning_field, logprobs)
        for i, c in enumerate(completions)
    ]
    # Choices are interleaved token by token, the way the real API streams n > 1.
    for row in itertools.zip_longest(*per_choice):
        for item in row:
            if item is not None:
                parts.append((prefix + item[0] + suffix, item[1]))
    for index, completion in enumerate(completions):
        finish = {
            "index": index,
            "delta": {},
            "logprobs": None,
            "finish_reason": _FINISH[completion.finish],
        }
        parts.append((prefix + orjson.dumps(finish) + suffix, False))
    return parts
