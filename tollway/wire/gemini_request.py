"""Gemini ``generateContent`` requests: wire JSON to ``ChatRequest`` and back.

Where Gemini's shape differs from the canonical one:

- The model is in the URL, not the body, and streaming is another method
  (``streamGenerateContent``), not a field.
- System and developer messages become ``systemInstruction`` (text only), in order.
- Google refuses an empty text part and a content without parts: empty text is no part, and a
  turn (or system instruction) left without parts is not sent.
- Turns have the roles ``user`` and ``model``. A tool call is a ``functionCall`` part with an
  ``args`` object; a tool result is a ``functionResponse`` part naming the function, in a user
  turn: consecutive results, and a user message right after them, form one turn. Call ids are
  made up (see ``gemini_content``). A result's images and PDFs are the response's ``parts``
  (Gemini 3's multimodal function responses): base64 as ``inlineData``, an image URL as
  ``fileData``, which only Vertex AI takes there.
- Tools are ``functionDeclarations`` whose ``parametersJsonSchema`` takes the JSON schema as
  is; built-in tools (``googleSearch``, ``codeExecution``, ...) are tools of their own type.
  ``tool_choice`` is ``toolConfig.functionCallingConfig``: ``required`` is ``ANY``, and one
  named function is ``ANY`` with ``allowedFunctionNames`` holding only it.
- Sampling (``topK`` too), length, stop sequences, ``n`` (``candidateCount``), ``seed`` and
  JSON output live in ``generationConfig``: ``json_object`` is ``responseMimeType:
  application/json`` and ``json_schema`` adds the schema as ``responseJsonSchema``; another
  format's schema keeps no keyword Gemini would ignore: a 400 naming it when strict, words in
  the description when not (``gemini_schema``).
- Thinking is ``generationConfig.thinkingConfig``: a budget or a level by the model
  (``gemini_thinking``).
- An OpenAI-format client's tool call carrying Gemini's signature as Google's
  OpenAI-compatible API does (``extra_content.google.thought_signature``) gives it back on the
  call's part (``thought_signatures``).
- ``parallel_tool_calls: false`` has no counterpart (the model decides): the answer is cut to
  its first call (``single_call``, by the provider).
- An OpenAI-format client's ``web_search_options`` is the ``googleSearch`` tool (grounding
  with Google Search); its ``user_location`` and a ``search_context_size`` other than the
  default have no counterpart: a 400 naming them.
- A Responses client's ``web_search`` tool (``ChatRequest.web_search``) is the ``googleSearch``
  tool too (``responses_web_search``; none when ``max_tool_calls`` is 0).
- An OpenAI-format client's ``logprobs`` and ``top_logprobs`` are ``responseLogprobs`` and
  ``logprobs`` (``gemini_logprobs``).
- No counterpart, dropped: ``user``, a tool's ``strict``, an image's ``detail`` and a
  message's ``name``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from tollway.core.errors import InvalidRequest
from tollway.core.types import (
    ChatRequest,
    ContentPart,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
)
from tollway.pricing.tools import SEARCH_OPTIONS
from tollway.wire.crossing import is_foreign, request_for
from tollway.wire.fields import json_object, number, optional, required
from tollway.wire.gemini_content import (
    ToolNames,
    assistant_parts,
    call_id,
    content_parts,
    function_call_from_wire,
    function_response_from_wire,
    function_response_to_wire,
    part_from_wire,
    parts_from_wire,
)
from tollway.wire.gemini_logprobs import LOGPROBS, take_logprobs
from tollway.wire.gemini_schema import gemini_schema
from tollway.wire.gemini_thinking import thinking_config
from tollway.wire.responses_web_search import web_search_to_gemini
from tollway.wire.thought_signatures import signatures_from_calls
from tollway.wire.tool_names import GEMINI, check_history, check_names

WIRE_FORMAT = "gemini"
OPENAI_FORMAT = "openai"
ANTHROPIC_FORMAT = "anthropic"
JSON_MIME_TYPE = "application/json"

_REQUEST_KEYS = frozenset(
    {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}
)
_GENERATION_KEYS = frozenset(
    {"temperature", "topP", "topK", "maxOutputTokens", "stopSequences", "candidateCount", "seed"}
)
_DECLARATION_KEYS = frozenset({"name", "description", "parametersJsonSchema"})
_ToolMode = Literal["auto", "none", "required", "function"]
_MODES: dict[str, _ToolMode] = {"AUTO": "auto", "NONE": "none", "ANY": "required"}
_MODES_OUT = {"auto": "AUTO", "none": "NONE", "required": "ANY", "function": "ANY"}


def request_from_wire(body: dict[str, Any], model: str, *, stream: bool = False) -> ChatRequest:
    """Parse and validate a ``generateContent`` body addressed (by URL) to ``model``."""
    contents = required(body, "contents", list)
    if not contents:
        raise InvalidRequest("'contents' must contain at least one content", param="contents")
    extra = {k: v for k, v in body.items() if k not in _REQUEST_KEYS}
    generation = optional(body, "generationConfig", dict) or {}
    rest = {k: v for k, v in generation.items() if k not in _GENERATION_KEYS}
    response_format = _response_format_from_wire(rest)
    if rest:
        extra["generationConfig"] = rest
    param = "generationConfig."
    return ChatRequest(
        model=model,
        messages=_system_from_wire(body.get("systemInstruction")) + _contents_from_wire(contents),
        stream=stream,
        include_usage=True,  # every Gemini stream event carries usage
        max_tokens=optional(generation, "maxOutputTokens", int, param + "maxOutputTokens"),
        temperature=number(generation, "temperature", param + "temperature"),
        top_p=number(generation, "topP", param + "topP"),
        top_k=optional(generation, "topK", int, param + "topK"),
        n=optional(generation, "candidateCount", int, param + "candidateCount"),
        stop=_stops_from_wire(generation.get("stopSequences")),
        seed=optional(generation, "seed", int, param + "seed"),
        tools=_tools_from_wire(optional(body, "tools", list)),
        tool_choice=_tool_choice_from_wire(body.get("toolConfig"), extra),
        response_format=response_format,
        extra=extra,
        wire_format=WIRE_FORMAT,
    )


def request_to_wire(
    request: ChatRequest, model: str = "", *, result_uris: bool = True
) -> dict[str, Any]:
    """The upstream ``generateContent`` body for ``request`` to ``model`` (the deployment's,
    which goes in the URL; it says how the model takes thinking); ``result_uris``: whether
    the API takes an image by URL in a tool result (Vertex AI does, the Gemini API does not)."""
    foreign = is_foreign(request.wire_format, WIRE_FORMAT)
    # An Anthropic client's format has no strict to turn off: its 400 does not offer it.
    loosable = request.wire_format != ANTHROPIC_FORMAT
    if request.wire_format == OPENAI_FORMAT:  # signatures on calls, as Google's API has them
        request = signatures_from_calls(request)
    request, thinking = thinking_config(request, model)
    searches = foreign and SEARCH_OPTIONS in request.extra
    if searches:
        request, searches = _search_options(request)
    scores: dict[str, Any] = {}
    if request.wire_format == OPENAI_FORMAT and not request.extra.keys().isdisjoint(LOGPROBS):
        request, scores = take_logprobs(request)
    request = request_for(request, WIRE_FORMAT)
    if searches:  # a tool of Gemini's own, which a foreign request may not bring
        request = replace(request, tools=[*(request.tools or ()), _google_search()])
    grounding = None if request.web_search is None else web_search_to_gemini(request.web_search)
    if grounding is not None and not searches:
        request = replace(request, tools=[*(request.tools or ()), grounding])
    body: dict[str, Any] = dict(request.extra)
    generation = dict(body.pop("generationConfig", None) or {})
    if thinking is not None:
        generation["thinkingConfig"] = thinking
    generation.update(scores)
    system = _system_to_wire(request.messages)
    if system is not None:
        body["systemInstruction"] = system
    check_history(request.messages, GEMINI)  # a functionCall's name, and its functionResponse's
    body["contents"] = _contents_to_wire(request.messages, foreign, result_uris)
    if request.tools:
        check_names(request.tools, GEMINI, _is_function)
        body["tools"] = _tools_to_wire(request.tools)
    tool_config = _tool_config_to_wire(request, body.pop("toolConfig", None))
    if tool_config:
        body["toolConfig"] = tool_config
    _generation_to_wire(request, generation)
    fmt = request.response_format
    if foreign and fmt is not None and fmt.type == "json_schema":
        strict = (fmt.json_schema or {}).get("strict") is True
        generation["responseJsonSchema"] = gemini_schema(
            generation["responseJsonSchema"], strict, loosable
        )
    if generation:
        body["generationConfig"] = generation
    return body


def _search_options(request: ChatRequest) -> tuple[ChatRequest, bool]:
    """``request`` without an OpenAI-format client's ``web_search_options`` (a copy: a
    fallback of another family still has them), and whether they ask for Gemini's Google
    Search tool (the model decides whether to search, and grounds its answer). Gemini has no
    setting for the options' location or the size of the search context (but its default,
    ``medium``): a 400 naming them."""
    options = request.extra[SEARCH_OPTIONS]
    rest = {key: value for key, value in request.extra.items() if key != SEARCH_OPTIONS}
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest(f"'{SEARCH_OPTIONS}' must be an object", param=SEARCH_OPTIONS)
    for key, value in (options or {}).items():
        if value is None or (key == "search_context_size" and value == "medium"):
            continue
        param = f"{SEARCH_OPTIONS}.{key}"
        raise InvalidRequest(f"'{param}' cannot be translated for a gemini deployment", param=param)
    return replace(request, extra=rest), options is not None


def _google_search() -> Tool:
    return Tool(name="googleSearch", extra={"type": "googleSearch", "config": {}})


def _stops_from_wire(raw: Any) -> list[str] | None:
    if raw is None:
        return None
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        return list(raw)
    param = "generationConfig.stopSequences"
    raise InvalidRequest(f"'{param}' must be an array of strings", param=param)


def _response_format_from_wire(rest: dict[str, Any]) -> ResponseFormat | None:
    """JSON output from ``rest`` (unmodelled ``generationConfig``), taking what it models."""
    if rest.get("responseMimeType") != JSON_MIME_TYPE:
        return None
    del rest["responseMimeType"]
    schema = rest.get("responseJsonSchema")
    if not isinstance(schema, dict):
        return ResponseFormat(type="json_object")
    del rest["responseJsonSchema"]
    return ResponseFormat(type="json_schema", json_schema={"name": "response", "schema": schema})


def _system_from_wire(raw: Any) -> list[Message]:
    if raw is None:
        return []
    system = json_object(raw, "systemInstruction")
    parts = parts_from_wire(system.get("parts"), "systemInstruction.parts")
    content = [part_from_wire(p, f"systemInstruction.parts[{i}]") for i, p in enumerate(parts)]
    extra = {k: v for k, v in system.items() if k != "parts"}
    return [Message(role="system", content=content, extra=extra)]


def _contents_from_wire(raw: list[Any]) -> list[Message]:
    messages: list[Message] = []
    unanswered: list[ToolCall] = []  # the calls of the last model turn
    for index, item in enumerate(raw):
        param = f"contents[{index}]"
        content = json_object(item, param)
        role = optional(content, "role", str, f"{param}.role") or "user"
        parts = parts_from_wire(content.get("parts"), f"{param}.parts")
        extra = {k: v for k, v in content.items() if k not in ("role", "parts")}
        if role == "model":
            message = _model_turn(parts, f"{param}.parts")
            message.extra = extra
            messages.append(message)
            unanswered = list(message.tool_calls or ())
        elif role in ("user", "function"):
            messages.extend(_user_turn(parts, f"{param}.parts", extra, unanswered))
        else:
            raise InvalidRequest(
                f"'{param}.role' must be 'user' or 'model', not {role!r}", param=f"{param}.role"
            )
    return messages


def _model_turn(parts: list[dict[str, Any]], param: str) -> Message:
    content: list[ContentPart] = []
    calls: list[ToolCall] = []
    for index, part in enumerate(parts):
        if "functionCall" in part:
            calls.append(function_call_from_wire(part, len(calls), f"{param}[{index}]"))
        else:
            content.append(part_from_wire(part, f"{param}[{index}]"))
    return Message(
        role="assistant",
        content=None if calls and not content else content,
        tool_calls=calls or None,
    )


def _user_turn(
    parts: list[dict[str, Any]], param: str, extra: dict[str, Any], unanswered: list[ToolCall]
) -> list[Message]:
    """Function responses as one ``tool`` message each, then the rest as a user message."""
    results: list[Message] = []
    others: list[ContentPart] = []
    for index, part in enumerate(parts):
        part_param = f"{param}[{index}]"
        if "functionResponse" not in part:
            others.append(part_from_wire(part, part_param))
            continue
        result = json_object(part["functionResponse"], f"{part_param}.functionResponse")
        name = required(result, "name", str, f"{part_param}.functionResponse.name")
        answered = next((c for c in unanswered if c.name == name), None)
        if answered is not None:
            unanswered.remove(answered)
        tool_call_id = call_id(len(results), name) if answered is None else answered.id
        results.append(function_response_from_wire(part, tool_call_id, part_param))
    if results and not others:
        return results
    return [*results, Message(role="user", content=others, extra=extra)]


def _tools_from_wire(raw: list[Any] | None) -> list[Tool] | None:
    if raw is None:
        return None
    tools: list[Tool] = []
    for index, item in enumerate(raw):
        entry = json_object(item, f"tools[{index}]")
        for key, value in entry.items():
            if key != "functionDeclarations":
                tools.append(Tool(name=key, extra={"type": key, "config": value}))
                continue
            param = f"tools[{index}].functionDeclarations"
            if not isinstance(value, list):
                raise InvalidRequest(f"'{param}' must be an array", param=param)
            tools.extend(_declaration_from_wire(d, f"{param}[{i}]") for i, d in enumerate(value))
    return tools


def _declaration_from_wire(raw: Any, param: str) -> Tool:
    declaration = json_object(raw, param)
    return Tool(
        name=required(declaration, "name", str, f"{param}.name"),
        description=optional(declaration, "description", str, f"{param}.description"),
        parameters=optional(
            declaration, "parametersJsonSchema", dict, f"{param}.parametersJsonSchema"
        ),
        extra={k: v for k, v in declaration.items() if k not in _DECLARATION_KEYS},
    )


def _tool_choice_from_wire(raw: Any, extra: dict[str, Any]) -> ToolChoice | None:
    """The tool choice ``toolConfig`` says; what it cannot say stays in ``extra``."""
    if raw is None:
        return None
    config = json_object(raw, "toolConfig")
    calling = optional(config, "functionCallingConfig", dict, "toolConfig.functionCallingConfig")
    choice = None if calling is None else _calling_from_wire(calling)
    if choice is not None:
        config = {k: v for k, v in config.items() if k != "functionCallingConfig"}
    if config:
        extra["toolConfig"] = config
    return choice


def _calling_from_wire(calling: dict[str, Any]) -> ToolChoice | None:
    mode, names = calling.get("mode"), calling.get("allowedFunctionNames")
    if set(calling) - {"mode", "allowedFunctionNames"} or not isinstance(mode, str):
        return None
    if names is None and mode in _MODES:
        return ToolChoice(mode=_MODES[mode])
    if mode == "ANY" and isinstance(names, list) and len(names) == 1:
        return ToolChoice(mode="function", name=str(names[0]))
    return None  # e.g. several allowed functions, or the VALIDATED mode


def _system_to_wire(messages: list[Message]) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    parts: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if message.role not in ("system", "developer"):
            continue
        content = message.content
        if isinstance(content, list) and not all(isinstance(part, TextPart) for part in content):
            raise InvalidRequest(
                "system messages can only hold text for Gemini models",
                param=f"messages[{index}].content",
            )
        out.update(message.extra)
        parts.extend(content_parts(content))
    if not parts:
        return None  # Google refuses a system instruction without parts
    out["parts"] = parts
    return out


def _contents_to_wire(
    messages: list[Message], foreign: bool, result_uris: bool
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    names = ToolNames()
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        # A tool result, and a user message right after results, join the results' user turn.
        joins = bool(out) and _holds_results(out[-1])
        if message.role in ("system", "developer"):
            continue
        if message.role == "assistant":
            names.learn(message)
            parts = assistant_parts(message, param, foreign=foreign)
            if parts:  # a turn with nothing in it says nothing, and has no part to send
                out.append({**message.extra, "role": "model", "parts": parts})
        elif message.role == "tool":
            name = names.name_of(message.tool_call_id, param)
            result = function_response_to_wire(message, name, param, result_uris=result_uris)
            if joins:
                out[-1]["parts"].append(result)
            else:
                out.append({"role": "user", "parts": [result]})
        elif joins:
            out[-1]["parts"].extend(content_parts(message.content, f"{param}.content"))
        elif parts := content_parts(message.content, f"{param}.content"):
            out.append({**message.extra, "role": "user", "parts": parts})
    return out


def _holds_results(content: dict[str, Any]) -> bool:
    parts = content["parts"]
    return content["role"] == "user" and bool(parts) and "functionResponse" in parts[0]


def _is_function(tool: Tool) -> bool:
    """Whether ``tool`` is a function declaration (not a built-in tool: ``googleSearch``)."""
    return tool.extra.get("type") in (None, "function")


def _tools_to_wire(tools: list[Tool]) -> list[dict[str, Any]]:
    """One ``functionDeclarations`` entry for every function, then each built-in tool."""
    declarations: list[dict[str, Any]] = []
    built_in: list[dict[str, Any]] = []
    for tool in tools:
        if not _is_function(tool):
            kind = tool.extra["type"]
            built_in.append({str(kind): tool.extra.get("config", {})})
            continue
        declaration = {k: v for k, v in tool.extra.items() if k != "type"}
        declaration["name"] = tool.name
        if tool.description is not None:
            declaration["description"] = tool.description
        if tool.parameters is not None:
            declaration["parametersJsonSchema"] = tool.parameters
        declarations.append(declaration)
    return ([{"functionDeclarations": declarations}] if declarations else []) + built_in


def _tool_config_to_wire(request: ChatRequest, base: Any) -> dict[str, Any] | None:
    config: dict[str, Any] = dict(base) if isinstance(base, dict) else {}
    choice = request.tool_choice
    if choice is None or not request.tools:
        return config or None
    calling: dict[str, Any] = {"mode": _MODES_OUT[choice.mode]}
    if choice.mode == "function":
        calling["allowedFunctionNames"] = [choice.name]
    config["functionCallingConfig"] = calling
    return config


def _generation_to_wire(request: ChatRequest, generation: dict[str, Any]) -> None:
    for key, value in (
        ("temperature", request.temperature),
        ("topP", request.top_p),
        ("topK", request.top_k),
        ("maxOutputTokens", request.max_tokens),
        ("stopSequences", request.stop),
        ("candidateCount", request.n),
        ("seed", request.seed),
    ):
        if value is not None:
            generation[key] = value
    fmt = request.response_format
    if fmt is not None and fmt.type != "text":
        generation["responseMimeType"] = JSON_MIME_TYPE
    if fmt is not None and fmt.type == "json_schema":
        schema = (fmt.json_schema or {}).get("schema") or {"type": "object"}
        generation["responseJsonSchema"] = schema
