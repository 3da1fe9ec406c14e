"""Gemini API and Vertex AI: ``generateContent``, ``streamGenerateContent``, ``countTokens``.

Both address a model's methods as ``.../models/{model}:{method}``; ``handle_gemini`` splits
the last path segment and dispatches (embeddings are in ``gemini_embed``). Requests follow the
REST shape: ``contents`` of ``user`` / ``model`` turns whose parts are ``text``,
``inlineData`` / ``fileData`` (counted as images), ``functionCall`` and ``functionResponse``
(checked field by field as each API's own, its media ``parts`` counted as images:
``gemini_results``);
``systemInstruction``; ``tools[].functionDeclarations`` (``parametersJsonSchema`` or
``parameters``); ``toolConfig.functionCallingConfig``; ``generationConfig`` with
``maxOutputTokens``, ``stopSequences``, ``candidateCount`` and ``responseMimeType`` /
``responseJsonSchema`` (or ``responseSchema``; like Google's, a keyword outside its subset
is not refused: Google ignores it). As Google does, a content without parts or with
an empty text part is a 400 ("empty text parameter"), and so is an ``inlineData`` or
``fileData`` part without its ``mimeType`` ("empty mimeType parameter"), and so is a turn
whose ``functionResponse`` parts do not answer, one for one, the ``functionCall`` parts of the
model turn just before it.

A stream (``alt=sse``) is one ``GenerateContentResponse`` per token, as ``data:`` lines without
event names: each text piece a ``text`` part, each function call whole in one object (its
argument fragments still count as its tokens), then a last object with an empty text part,
``finishReason`` and the final usage. The body then ends: there is no terminal marker. Every
object carries ``usageMetadata`` with the tokens so far. Without ``alt=sse`` the same objects
come as one JSON array, as the real API sends them. A request offering Google Search
(``googleSearch``) whose last turn is the user's is answered grounded: each candidate carries
``groundingMetadata`` with ``x-sim-searches`` queries (streamed: on the last object) and cites
the source for the answer's last word (``groundingSupports``: UTF-8 byte offsets in its text
part; streamed, in the whole text streamed, as Google counts a stream's). Log probabilities
(``responseLogprobs``, ``logprobs``): ``gemini_logprobs``.
Thinking (``thinkingConfig``, thought parts and signatures) is in ``gemini_thinking``.
With ``x-sim-content-filter: prompt`` the prompt is blocked, as Google's safety filters block
one: ``promptFeedback`` with a ``blockReason`` and no candidates (streamed: that one object).
A function's name Google refuses is its 400 (``tool_names``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from tollway.simulator.content import (
    IMAGE_TOKENS,
    MESSAGE_OVERHEAD,
    TOOL_TOKENS,
    Completion,
    InvalidRequest,
    Prompt,
    ToolSpec,
    complete,
    word_count,
)
from tollway.simulator.errors import Dialect, error_body, error_response, json_response
from tollway.simulator.exchange import (
    SSE_HEADERS,
    Call,
    StreamParts,
    admit,
    delay,
    send_stream,
)
from tollway.simulator.gemini_embed import EMBED_METHODS
from tollway.simulator.gemini_logprobs import requested as requested_logprobs
from tollway.simulator.gemini_logprobs import result as logprobs_result
from tollway.simulator.gemini_results import function_response_media
from tollway.simulator.gemini_thinking import (
    check_history,
    signed_parts,
    thinking,
    thought_signature,
    usage,
)
from tollway.simulator.google_oauth import issued_token_is_valid
from tollway.simulator.prompt_cache import prompt_cache
from tollway.simulator.settings import SimulatorSettings
from tollway.simulator.state import SimulatorState
from tollway.simulator.tool_names import check_gemini, check_gemini_part

GEMINI_MODELS_PATH = "/v1beta/models"
VERTEX_MODELS_PATH = "/v1/projects/{project}/locations/{location}/publishers/google/models"
_MEDIA_PARTS = ("inlineData", "fileData")
# Finish reasons Gemini sends, without content, when the model's function call failed.
_FAILED_CALLS = frozenset(
    {"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"}
)
_LEARN_MORE = (
    "Learn more: https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/gemini"
)
_NO_PARTS = (
    "Unable to submit request because it must include at least one parts field, which describes "
    "the prompt input. " + _LEARN_MORE
)
_EMPTY_TEXT = (
    "Unable to submit request because it has an empty text parameter. Add a value to the "
    "parameter and try again. " + _LEARN_MORE
)
_MAX_CANDIDATES = 8


def _empty_mime_type(media: str) -> str:
    return (
        f"Unable to submit request because it has an empty mimeType parameter in {media}. "
        "Add a value to the parameter and try again. " + _LEARN_MORE
    )


def _part_tokens(part: dict[str, Any]) -> tuple[str | None, str | None, int]:
    """A part's text, its function-result text, and its token count."""
    if isinstance(part.get("text"), str) and not part.get("thought"):
        return part["text"], None, word_count(part["text"])
    if any(key in part for key in _MEDIA_PARTS):
        return None, None, IMAGE_TOKENS
    call = part.get("functionCall")
    if isinstance(call, dict):
        return None, None, word_count(orjson.dumps(call.get("args") or {}).decode())
    result = part.get("functionResponse")
    if isinstance(result, dict):
        response = result.get("response")
        output = response.get("output") if isinstance(response, dict) else None
        text = output if isinstance(output, str) else orjson.dumps(response).decode()
        return None, text, word_count(text)
    return None, None, 0


def _content_tokens(content: Any, param: str, vertex: bool = False) -> tuple[str, str | None, int]:
    """A content's text, its function-result text (None if none) and its tokens (a function
    response's media checked as ``vertex`` says, and counted as images)."""
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        raise InvalidRequest(f"* GenerateContentRequest.{param}.parts: required", param)
    if not parts:
        raise InvalidRequest(_NO_PARTS, param)
    if any(isinstance(part, dict) and part.get("text") == "" for part in parts):
        raise InvalidRequest(_EMPTY_TEXT, param)
    tokens = 0
    for index, part in enumerate(parts):
        for media in _MEDIA_PARTS:
            value = part.get(media) if isinstance(part, dict) else None
            if isinstance(value, dict) and not value.get("mimeType"):
                raise InvalidRequest(_empty_mime_type(media), param)
        if isinstance(part, dict) and "functionResponse" in part:
            at = f"{param}.parts[{index}].function_response"
            media_parts = function_response_media(part["functionResponse"], at, vertex=vertex)
            tokens += IMAGE_TOKENS * media_parts
    texts: list[str] = []
    results: list[str] | None = None
    for part in parts:
        if not isinstance(part, dict):
            continue
        text, result, count = _part_tokens(part)
        tokens += count
        if text is not None:
            texts.append(text)
        if result is not None:
            results = [*(results or []), result]
    return " ".join(texts), None if results is None else " ".join(results), tokens


def _tools(body: dict[str, Any]) -> list[ToolSpec]:
    specs: list[ToolSpec] = []
    for place, entry in enumerate(body.get("tools") or ()):
        declarations = entry.get("functionDeclarations") if isinstance(entry, dict) else None
        for number, declaration in enumerate(declarations or ()):
            if not isinstance(declaration, dict) or not isinstance(declaration.get("name"), str):
                continue
            check_gemini(declaration["name"], place, number)
            schema = declaration.get("parametersJsonSchema") or declaration.get("parameters")
            specs.append(
                ToolSpec(declaration["name"], schema if isinstance(schema, dict) else None)
            )
    return specs


def _apply_tool_config(prompt: Prompt, config: Any) -> None:
    calling = config.get("functionCallingConfig") if isinstance(config, dict) else None
    if not isinstance(calling, dict):
        return
    mode = calling.get("mode")
    allowed = calling.get("allowedFunctionNames")
    if mode == "NONE":
        prompt.tool_mode = "none"
    elif mode == "ANY" and isinstance(allowed, list) and len(allowed) == 1:
        prompt.forced_tool = str(allowed[0])
    elif mode == "ANY":
        prompt.tool_mode = "required"
    if isinstance(allowed, list) and len(allowed) > 1:
        prompt.tools = [tool for tool in prompt.tools if tool.name in allowed]


_MOST_STOPS = 5
"""The most ``stopSequences`` Gemini takes (more: its 400)."""


def _apply_generation(prompt: Prompt, config: Any) -> int:
    """Length, stops and JSON output from ``generationConfig``; returns the candidate count."""
    if config is None:
        return 1
    if not isinstance(config, dict):
        raise InvalidRequest("generationConfig must be an object", "generationConfig")
    limit = config.get("maxOutputTokens")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise InvalidRequest("maxOutputTokens must be a positive integer", "maxOutputTokens")
    prompt.max_tokens = limit
    stops = config.get("stopSequences")
    if isinstance(stops, list) and len(stops) > _MOST_STOPS:
        raise InvalidRequest(
            f"Invalid value at 'generation_config.stop_sequences': at most {_MOST_STOPS} stop "
            f"sequences are allowed, got {len(stops)}",
            "stopSequences",
        )
    prompt.stop = [s for s in stops if isinstance(s, str)] if isinstance(stops, list) else []
    if config.get("responseMimeType") == "application/json":
        prompt.json_mode = True
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        prompt.json_schema = schema if isinstance(schema, dict) else None
    count = config.get("candidateCount", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= _MAX_CANDIDATES:
        raise InvalidRequest(f"candidateCount must be between 1 and {_MAX_CANDIDATES}", "n")
    return count


def _count_parts(content: Any, kind: str) -> int:
    parts = content.get("parts") if isinstance(content, dict) else None
    return (
        sum(1 for p in parts if isinstance(p, dict) and kind in p) if isinstance(parts, list) else 0
    )


def _check_function_names(parts: list[Any], content: int) -> None:
    """The name of each ``functionCall`` and ``functionResponse`` part, as Google checks a
    function's (``tool_names``)."""
    for index, part in enumerate(parts):
        for key, kind in (
            ("functionCall", "function_call"),
            ("functionResponse", "function_response"),
        ):
            value = part.get(key) if isinstance(part, dict) else None
            if isinstance(value, dict) and isinstance(value.get("name"), str):
                check_gemini_part(value["name"], content, index, kind)


def _check_function_turns(contents: list[Any]) -> None:
    """Google's pairing of a model turn's function calls with the function responses of the
    turn after it, in its words: one response per call, and responses only after calls."""
    calls = 0
    for content in contents:
        responses = _count_parts(content, "functionResponse")
        if responses and not calls:
            raise InvalidRequest(
                "Please ensure that function response turn comes immediately after a function "
                "call turn.",
                "contents",
            )
        if calls and responses != calls:
            raise InvalidRequest(
                "Please ensure that the number of function response parts is equal to the "
                "number of function call parts of the function call turn.",
                "contents",
            )
        calls = _count_parts(content, "functionCall")


def read_prompt(
    body: dict[str, Any], target_tokens: int, *, vertex: bool = False
) -> tuple[Prompt, int]:
    """Pull the generator's inputs and the input token count out of a request body
    (``vertex``: sent to Vertex AI, whose function responses take more than the Gemini API's)."""
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise InvalidRequest("* GenerateContentRequest.contents: contents is not specified")
    input_tokens = 0
    if body.get("systemInstruction") is not None:
        _, _, tokens = _content_tokens(body["systemInstruction"], "system_instruction")
        input_tokens += MESSAGE_OVERHEAD + tokens
    last_user, result = "", None
    for index, content in enumerate(contents):
        role = content.get("role", "user") if isinstance(content, dict) else None
        if role not in ("user", "model", "function"):
            message = f"* GenerateContentRequest.contents[{index}].role: must be user or model"
            raise InvalidRequest(message, "contents")
        text, result, tokens = _content_tokens(content, f"contents[{index}]", vertex)
        _check_function_names(content["parts"], index)
        input_tokens += MESSAGE_OVERHEAD + tokens
        if role == "user" and result is None:
            last_user = text
    _check_function_turns(contents)
    last_is_user = contents[-1].get("role", "user") != "model"
    prompt = Prompt(
        last_user_text=last_user,
        tool_result_text=result if last_is_user else None,
        last_is_user=last_is_user,
        tools=_tools(body),
        target_tokens=target_tokens,
    )
    input_tokens += TOOL_TOKENS * len(prompt.tools)
    _apply_tool_config(prompt, body.get("toolConfig"))
    return prompt, input_tokens


def _parts(completion: Completion) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"text": completion.text}] if completion.pieces else []
    for call in completion.tool_calls:
        parts.append({"functionCall": {"name": call.name, "args": call.input()}})
    return parts or [{"text": ""}]


def _finish(completion: Completion, ending: str | None) -> str:
    if ending is not None:
        return ending
    return "MAX_TOKENS" if completion.finish == "length" else "STOP"


def _ending(completion: Completion, reason: str) -> Completion:
    """``completion`` as Gemini sends an answer ending with ``reason`` (``x-sim-finish-reason``):
    after a failed function call, nothing at all (no content, no tokens)."""
    if reason in _FAILED_CALLS:
        return Completion([], completion.finish)
    return completion


_SEARCH_TOOLS = frozenset({"googleSearch", "google_search"})


async def handle_gemini(
    request: web.Request, call: Call, state: SimulatorState, dialect: Dialect
) -> web.StreamResponse:
    """Answer an admitted request for ``{model}:{method}`` (raises InvalidRequest on a bad body)."""
    model, _, method = request.match_info["target"].rpartition(":")
    if method in EMBED_METHODS and model:
        return await EMBED_METHODS[method](call, state, dialect, model)
    vertex = dialect is Dialect.VERTEX
    if method == "countTokens" and model:
        inner = call.body.get("generateContentRequest")
        body = inner if isinstance(inner, dict) else call.body
        _, tokens = read_prompt(body, 1, vertex=vertex)
        return json_response({"totalTokens": tokens}, call.request_id, dialect)
    if method not in ("generateContent", "streamGenerateContent") or not model:
        message = f"Method {method!r} of model {model!r} is not found."
        return error_response(dialect, 404, message, request_id=call.request_id)
    prompt, input_tokens = read_prompt(call.body, call.output_tokens, vertex=vertex)
    count = _apply_generation(prompt, call.body.get("generationConfig"))
    top = requested_logprobs(call.body.get("generationConfig"))
    prompt.reasoning, show = thinking(call.body.get("generationConfig"), model)
    check_history(call.body["contents"], prompt.reasoning)
    response_id = state.new_id("sim-")
    if request.headers.get("x-sim-content-filter") == "prompt":
        blocked = _blocked(model, response_id, input_tokens)
        if method == "generateContent" or request.query.get("alt") != "sse":
            await delay(call, 0)
            answer = blocked if method == "generateContent" else [blocked]
            return json_response(answer, call.request_id, dialect)
        event = b"data: " + orjson.dumps(blocked) + b"\r\n\r\n"
        headers = {**SSE_HEADERS, "x-request-id": call.request_id}
        return await send_stream(request, call, [(event, False)], headers)
    completions = [complete(prompt, i, lambda: "") for i in range(count)]
    ending = call.finish_reason
    if ending is not None:
        completions = [_ending(completion, ending) for completion in completions]
    grounding = _grounding(call.body, prompt, call.searches)
    if method == "generateContent":
        return await _answer(
            call, dialect, model, response_id, completions, input_tokens, show, grounding, top
        )
    events = _events(
        model, response_id, completions, input_tokens, ending, show, call.sign_last_text,
        grounding, top, prompt_cache(call, input_tokens).reads,
    )  # fmt: skip
    if request.query.get("alt") != "sse":
        await delay(call, sum(c.output_tokens for c in completions))
        array = [orjson.Fragment(data[6:-4]) for data, _ in events]
        return json_response(array, call.request_id, dialect)
    return await send_stream(
        request, call, events, {**SSE_HEADERS, "x-request-id": call.request_id}
    )


_BLOCKED_RATINGS = [
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
]


def _blocked(model: str, response_id: str, input_tokens: int) -> dict[str, Any]:
    """Google's answer to a prompt its safety filters block (``x-sim-content-filter:
    prompt``): ``promptFeedback`` with a ``blockReason`` and no candidates, however many
    were asked for; the usage counts only the prompt."""
    return {
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": _BLOCKED_RATINGS},
        "usageMetadata": {"promptTokenCount": input_tokens, "totalTokenCount": input_tokens},
        "modelVersion": model,
        "responseId": response_id,
    }


async def _answer(
    call: Call,
    dialect: Dialect,
    model: str,
    response_id: str,
    completions: list[Completion],
    input_tokens: int,
    show: bool,
    grounding: dict[str, Any] | None = None,
    top: int | None = None,
) -> web.Response:
    output_tokens = sum(completion.output_tokens for completion in completions)
    thoughts = sum(len(completion.reasoning) for completion in completions)
    cached = prompt_cache(call, input_tokens).reads  # Gemini says no cache writes
    await delay(call, output_tokens)
    candidates = [
        _candidate(completion, index, call.finish_reason, show)
        for index, completion in enumerate(completions)
    ]
    if grounding is not None:
        for candidate in candidates:
            supports = _supports(candidate)
            candidate["groundingMetadata"] = {**grounding, "groundingSupports": supports}
    if top is not None:
        for candidate, completion in zip(candidates, completions, strict=True):
            candidate.update(logprobs_result(completion.pieces, top))
    payload = {
        "candidates": candidates,
        "usageMetadata": usage(input_tokens, output_tokens, thoughts, cached),
        "modelVersion": model,
        "responseId": response_id,
    }
    return json_response(payload, call.request_id, dialect)


def _candidate(
    completion: Completion, index: int, ending: str | None, show: bool = False
) -> dict[str, Any]:
    reason = _finish(completion, ending)
    if reason in _FAILED_CALLS:
        return {"finishReason": reason, "index": index}  # Gemini sends no content with it
    content = {"role": "model", "parts": signed_parts(_parts(completion), completion, show)}
    return {"content": content, "finishReason": reason, "index": index}


def _events(
    model: str,
    response_id: str,
    completions: list[Completion],
    input_tokens: int,
    ending: str | None = None,
    show: bool = False,
    sign_last_text: bool = False,
    grounding: dict[str, Any] | None = None,
    top: int | None = None,
    cached: int = 0,
) -> StreamParts:
    """Every object of a stream, each framed as one server-sent event; ``sign_last_text``: an
    answer without calls is signed on its last text piece, not on the empty part after it."""
    parts: StreamParts = []
    produced = thoughts = 0

    def event(candidates: list[dict[str, Any]]) -> bytes:
        payload = {
            "candidates": candidates,
            "usageMetadata": usage(input_tokens, produced, thoughts, cached),
            "modelVersion": model,
            "responseId": response_id,
        }
        return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"

    for index, completion in enumerate(completions):
        thoughts += len(completion.reasoning)
        produced += 0 if show else len(completion.reasoning)
        pieces: list[tuple[dict[str, Any], int]] = []
        if show:
            pieces = [({"text": p, "thought": True}, 1) for p in completion.reasoning]
        pieces.extend(({"text": p}, 1) for p in completion.pieces)
        signature = thought_signature("".join(completion.reasoning))
        if sign_last_text and completion.reasoning and completion.pieces:
            pieces[-1][0]["thoughtSignature"] = signature
        for number, call in enumerate(completion.tool_calls):
            part: dict[str, Any] = {"functionCall": {"name": call.name, "args": call.input()}}
            if completion.reasoning and number == 0:
                part["thoughtSignature"] = signature
            pieces.append((part, len(call.fragments)))
        for part, tokens in pieces:
            produced += tokens
            content = {"role": "model", "parts": [part]}
            candidate: dict[str, Any] = {"content": content, "index": index}
            if top is not None and "text" in part and not part.get("thought"):
                candidate.update(logprobs_result([part["text"]], top))
            parts.append((event([candidate]), True))
    last = [
        _last_candidate(
            completion, index, ending, signed=sign_last_text and bool(completion.pieces)
        )
        for index, completion in enumerate(completions)
    ]
    if grounding is not None:
        for candidate, completion in zip(last, completions, strict=True):
            # The whole answer's supports, counted in the text streamed (as one part).
            whole = {"content": {"parts": [{"text": "".join(completion.pieces)}]}}
            candidate["groundingMetadata"] = {**grounding, "groundingSupports": _supports(whole)}
    parts.append((event(last), False))
    return parts


def _grounding(body: dict[str, Any], prompt: Prompt, searches: int) -> dict[str, Any] | None:
    """The ``groundingMetadata`` of an answer to a request offering Google Search whose last
    turn is the user's: ``searches`` queries (``x-sim-searches``), one source."""
    tools = [t for t in body.get("tools") or () if isinstance(t, dict)]
    if not prompt.last_is_user or not any(set(t) & _SEARCH_TOOLS for t in tools):
        return None
    query = prompt.last_user_text[:100]
    return {
        "webSearchQueries": [query] * searches,
        "searchEntryPoint": {"renderedContent": "<div>simulated search</div>"},
        "groundingChunks": [
            {"web": {"uri": "https://example.com/simulated-result", "title": "example.com"}}
        ],
    }


def _supports(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    """A whole answer's ``groundingSupports``: its text's last word, cited to the one source.
    As Google measures them, the offsets are UTF-8 bytes within the text part ``partIndex``
    (left out when 0, as the API leaves out default values)."""
    parts = (candidate.get("content") or {}).get("parts") or []
    for number, part in enumerate(parts):
        text = part.get("text")
        if not isinstance(text, str) or part.get("thought"):
            continue
        head, _, word = text.rpartition(" ")
        if not head or not word:
            return []
        start = len(head.encode()) + 1
        segment: dict[str, Any] = {
            "startIndex": start, "endIndex": start + len(word.encode()), "text": word
        }  # fmt: skip
        if number:
            segment["partIndex"] = number
        return [{"segment": segment, "groundingChunkIndices": [0]}]
    return []


def _last_candidate(
    completion: Completion, index: int, ending: str | None, *, signed: bool = False
) -> dict[str, Any]:
    """A stream's last object for one candidate: without calls, its empty text part carries
    the answer's signature, as Gemini sends it (unless ``signed`` already)."""
    candidate = _candidate(Completion([], completion.finish), index, ending)
    if completion.reasoning and not completion.tool_calls and "content" in candidate and not signed:
        signature = thought_signature("".join(completion.reasoning))
        candidate["content"]["parts"][0]["thoughtSignature"] = signature
    return candidate


async def _gemini_key(
    request: web.BaseRequest, settings: SimulatorSettings, request_id: str
) -> web.Response | None:
    """The Gemini API's check: a key in ``x-goog-api-key`` (or ``?key=``)."""
    key = request.headers.get("x-goog-api-key") or request.query.get("key")
    if settings.api_key is None or key == settings.api_key:
        return None
    if key is None:
        message = "Method doesn't allow unregistered callers. Please use an API key."
        return error_response(Dialect.GEMINI, 403, message, request_id=request_id)
    # The real API answers a wrong key with a 400, not a 401, saying why in an ErrorInfo.
    message = "API key not valid. Please pass a valid API key."
    body = error_body(Dialect.GEMINI, 400, message, request_id=request_id)
    body["error"]["details"] = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        }
    ]
    return json_response(body, request_id, Dialect.GEMINI, 400)


async def _vertex_token(
    request: web.BaseRequest, settings: SimulatorSettings, request_id: str
) -> web.Response | None:
    """Vertex AI's check: the key, or a token from /oauth2/token, as an OAuth bearer token."""
    if settings.api_key is None and settings.google_oauth_public_key is None:
        return None
    authorization = request.headers.get("Authorization", "")
    if settings.api_key is not None and authorization == f"Bearer {settings.api_key}":
        return None
    if authorization.startswith("Bearer ") and issued_token_is_valid(settings, authorization[7:]):
        return None
    message = "Request had invalid authentication credentials. Expected OAuth 2 access token."
    return error_response(Dialect.VERTEX, 401, message, request_id=request_id)


async def _serve(
    request: web.Request, state: SimulatorState, dialect: Dialect
) -> web.StreamResponse:
    streaming = request.match_info["target"].endswith(":streamGenerateContent")
    authorize = _gemini_key if dialect is Dialect.GEMINI else _vertex_token
    call = await admit(request, state, dialect, streaming=streaming, authorize=authorize)
    if not isinstance(call, Call):
        return call
    try:
        return await handle_gemini(request, call, state, dialect)
    except InvalidRequest as exc:
        return error_response(
            dialect, 400, exc.message, request_id=call.request_id, param=exc.param
        )
    except asyncio.CancelledError:
        state.departed(request)  # the caller left before the answer was complete
        raise


def gemini_routes(state: SimulatorState) -> list[web.RouteDef]:
    """The Gemini API and Vertex AI routes, bound to one simulator's state."""

    async def gemini(request: web.Request) -> web.StreamResponse:
        return await _serve(request, state, Dialect.GEMINI)

    async def vertex(request: web.Request) -> web.StreamResponse:
        return await _serve(request, state, Dialect.VERTEX)

    return [
        web.post(GEMINI_MODELS_PATH + "/{target}", gemini),
        web.post(VERTEX_MODELS_PATH + "/{target}", vertex),
    ]
