"""OpenAI Chat Completions requests: wire JSON to ``ChatRequest`` and back."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, cast

from tollway.core.errors import InvalidRequest
from tollway.core.types import (
    PDF,
    ChatRequest,
    ContentPart,
    DocumentPart,
    ImagePart,
    Message,
    OpaquePart,
    ReasoningPart,
    ResponseFormat,
    Role,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
)
from tollway.wire.crossing import asks_nothing, is_foreign, request_for
from tollway.wire.effort import REASONING_EFFORTS, take_output_effort
from tollway.wire.fields import (
    check_bounds,
    json_object,
    number,
    optional,
    refuse_credential_fields,
    required,
)

WIRE_FORMAT = "openai"

# "function": a legacy function call's result, which OpenAI's API still takes (and other
# families refuse, crossing.py).
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# The roles of the common two-key message; a tool message needs its tool_call_id besides,
# a function message its name.
_PLAIN_ROLES = _ROLES - {"tool", "function"}
# OpenAI's tools and tool choices the gateway does not model (custom tools, with free-form
# input; a choice among ``allowed_tools``; a named custom tool): kept as the client sent them,
# in ``extra``, so they reach OpenAI-format deployments unchanged and are a 400 naming their
# field for any other (crossing.py), never a 400 where OpenAI itself would answer.
_OPENAI_ONLY_TOOLS = frozenset({"custom"})
_OPENAI_ONLY_CHOICES = frozenset({"allowed_tools", "custom"})
# OpenAI's bounds (Chat Completions and Responses alike), checked before any upstream sees
# them: another family's model would otherwise take, clamp or refuse them in its own words.
TEMPERATURE = (0.0, 2.0)
TOP_P = (0.0, 1.0)
_MOST_STOP_SEQUENCES = 4
_MESSAGE_KEYS = frozenset({"role", "content", "name", "tool_calls", "tool_call_id"})
_FUNCTION_KEYS = frozenset({"name", "description", "parameters", "strict"})


def request_from_wire(body: dict[str, Any]) -> ChatRequest:
    """Parse and validate a Chat Completions request body.

    Runs for every request, so it visits only the fields present (typically three or four of
    the fifteen it knows) instead of probing for each one.
    """
    # The usual types are checked inline; ``required`` only for a value that fails them (it
    # says what is wrong with it).
    messages = body.get("messages")
    if type(messages) is not list:
        messages = required(body, "messages", list)
    if not messages:
        raise InvalidRequest("'messages' must contain at least one message", param="messages")
    model = body.get("model")
    if type(model) is not str:
        model = required(body, "model", str)
    # Plain: every message is {"role", "content": "text"} and every field the canonical
    # request models is of its usual type, so the request says exactly what the body says.
    plain = True
    parsed: list[Message] = []
    for index, raw in enumerate(messages):
        if type(raw) is dict and len(raw) == 2:
            # The common message, without the generic walk.
            role, content = raw.get("role"), raw.get("content")
            if type(content) is str and type(role) is str and role in _PLAIN_ROLES:
                parsed.append(Message(role, content))  # type: ignore[arg-type]  # in _ROLES
                continue
        plain = False
        parsed.append(_message_from_wire(raw, index))
    request = ChatRequest(model, parsed, wire_format=WIRE_FORMAT)
    extra = request.extra
    for key, value in body.items():
        field = _FIELDS.get(key)
        if field is None:
            if key not in _READ_FIRST:
                extra[key] = value
        elif isinstance(field, tuple):
            if value is not None:
                attribute, kind = field
                if type(value) is not kind:
                    plain = False
                    value = number(body, key) if kind is float else optional(body, key, kind)
                setattr(request, attribute, value)
            else:
                plain = False
        else:
            plain = False
            field(request, value)
    if extra:
        refuse_credential_fields(extra)
    if "max_completion_tokens" in body:
        # The newer name wins when a client sends both.
        newer = optional(body, "max_completion_tokens", int)
        if newer is not None:
            request.max_tokens = newer
        if "max_tokens" in body or type(newer) is not int:
            plain = False  # the upstream is sent one of the two, or no null
    if request.max_tokens is not None and request.max_tokens < 1:
        name = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        raise InvalidRequest(f"'{name}' must be at least 1", param=name)
    if request.n is not None and request.n < 1:
        raise InvalidRequest("'n' must be at least 1", param="n")
    if request.temperature is not None:
        check_bounds(request.temperature, "temperature", *TEMPERATURE)
    if request.top_p is not None:
        check_bounds(request.top_p, "top_p", *TOP_P)
    if not plain and not request.stream and body.get("stream_options") is not None:
        # As OpenAI answers it, rather than options that ask for nothing passed on silently
        # (a plain body has none: the field makes it not plain, so this costs it nothing).
        raise InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    choice = request.tool_choice
    required_tool = choice is not None and choice.mode in ("required", "function")
    if required_tool and not request.tools and "tools" not in extra:
        # As OpenAI answers it: a tool cannot be required where none is offered.
        raise InvalidRequest(
            "'tool_choice' requires a tool, but the request has no 'tools'", param="tool_choice"
        )
    if plain:
        request.wire_body = body
    return request


def _set_stop(request: ChatRequest, value: Any) -> None:
    request.stop = _stop_from_wire(value)


def _set_tools(request: ChatRequest, value: Any) -> None:
    if value is not None and not isinstance(value, list):
        raise InvalidRequest("'tools' must be an array", param="tools")
    if value and any(type(t) is dict and t.get("type") in _OPENAI_ONLY_TOOLS for t in value):
        _check_openai_only_tools(value)
        request.extra["tools"] = value
    else:
        request.tools = _tools_from_wire(value)


def _set_tool_choice(request: ChatRequest, value: Any) -> None:
    if isinstance(value, dict) and value.get("type") in _OPENAI_ONLY_CHOICES:
        request.extra["tool_choice"] = value
    else:
        request.tool_choice = _tool_choice_from_wire(value)


def _set_response_format(request: ChatRequest, value: Any) -> None:
    request.response_format = _response_format_from_wire(value)


def _set_stream_options(request: ChatRequest, value: Any) -> None:
    if value is not None and not isinstance(value, dict):
        raise InvalidRequest("'stream_options' must be an object", param="stream_options")
    options = value or {}
    request.include_usage = bool(options.get("include_usage"))
    request.include_obfuscation = optional(
        options, "include_obfuscation", bool, "stream_options.include_obfuscation"
    )
    others = {k: v for k, v in options.items() if k not in _USAGE_OPTIONS}
    request.stream_options_extra = others or None


_USAGE_OPTIONS = frozenset({"include_usage", "include_obfuscation"})
"""The ``stream_options`` the gateway reads itself; any other goes on as the client sent it."""


# Fields read as one JSON type each: wire name -> (attribute, type); floats accept integers.
_SCALARS: dict[str, tuple[str, type]] = {
    "stream": ("stream", bool),
    "max_tokens": ("max_tokens", int),
    "temperature": ("temperature", float),
    "top_p": ("top_p", float),
    "n": ("n", int),
    "seed": ("seed", int),
    "user": ("user", str),
    "parallel_tool_calls": ("parallel_tool_calls", bool),
}
_STRUCTURED: dict[str, Callable[[ChatRequest, Any], None]] = {
    "stop": _set_stop,
    "tools": _set_tools,
    "tool_choice": _set_tool_choice,
    "response_format": _set_response_format,
    "stream_options": _set_stream_options,
}
_FIELDS: dict[str, tuple[str, type] | Callable[[ChatRequest, Any], None]] = {
    **_SCALARS,
    **_STRUCTURED,
}
"""How each field is read: one lookup for the usual field instead of two or three."""
_READ_FIRST = frozenset({"model", "messages"})
"""Read before the walk over the body; any other field not in ``_FIELDS`` is kept in
``extra`` (``max_completion_tokens`` too, whose name an OpenAI upstream is sent again)."""


def request_to_wire(
    request: ChatRequest,
    model: str,
    *,
    completion_tokens: bool = False,
    stream_options: bool = True,
    obfuscation: bool = False,
) -> dict[str, Any]:
    """The upstream body for ``request`` addressed to the upstream ``model``.

    Streams always ask for usage so the gateway can account for every token, unless
    ``stream_options`` says the upstream refuses the field (Mistral, which ends every stream
    with usage anyway; Azure's older api-versions, whose streams the gateway then counts
    itself); the client's own ``include_usage`` is honoured on the way back out. The client's
    ``include_obfuscation`` is sent only where ``obfuscation`` says the upstream pads its
    stream events (OpenAI's own API); elsewhere there is nothing to turn off.
    The output limit keeps the name a Chat Completions client used; a request from another
    API (Responses included) names it ``max_completion_tokens`` when ``completion_tokens``
    says the upstream wants that name (OpenAI's own API, whose reasoning models refuse
    ``max_tokens``), else ``max_tokens``, which every compatible server knows.
    """
    foreign = is_foreign(request.wire_format, WIRE_FORMAT)  # read before request_for drops it
    request, effort = take_output_effort(request)
    request = request_for(request, WIRE_FORMAT)
    if request.responses_body is not None:
        _check_tool_results(request.messages)
    body: dict[str, Any] = dict(request.extra)
    body["model"] = model
    body["messages"] = [_message_to_wire(m) for m in request.messages]
    if request.stream:
        body["stream"] = True
        others = request.stream_options_extra
        if stream_options:
            options: dict[str, Any] = {"include_usage": True}
            if obfuscation and request.include_obfuscation is not None:
                options["include_obfuscation"] = request.include_obfuscation
            if others:
                options = {**others, **options}
            body["stream_options"] = options
        elif others:
            _check_unsent_stream_options(others)
    if request.max_tokens is not None:
        # Keep the field name the client used: older compatible servers only know max_tokens.
        named = request.wire_format == WIRE_FORMAT and request.limit_named_by_client
        newer = "max_completion_tokens" in body or (completion_tokens and not named)
        key = "max_completion_tokens" if newer else "max_tokens"
        body[key] = request.max_tokens
    # Written out rather than a helper called seven times: every request passes here.
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.n is not None:
        body["n"] = request.n
    if request.stop is not None:
        body["stop"] = request.stop
    if request.seed is not None:
        body["seed"] = request.seed
    if request.user is not None:
        body["user"] = request.user
    # Another format's empty tool list offers nothing (Anthropic takes "tools": [] and a choice
    # or parallel flag beside it; OpenAI refuses those without tools, compatible servers an
    # empty array). A choice that needs a tool was refused on parsing.
    offers = not foreign or bool(request.tools)
    if request.parallel_tool_calls is not None and offers:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.tools is not None and offers:
        body["tools"] = [_tool_to_wire(t, foreign) for t in request.tools]
    if request.tool_choice is not None and offers:
        body["tool_choice"] = _tool_choice_to_wire(request.tool_choice)
    if request.response_format is not None:
        body["response_format"] = _response_format_to_wire(request.response_format, foreign)
    if effort is not None:  # an Anthropic client's output_config.effort
        body["reasoning_effort"] = REASONING_EFFORTS[effort]
    return body


def _check_unsent_stream_options(options: dict[str, Any]) -> None:
    """The client's own ``stream_options`` for an upstream that refuses the field: one that
    asks nothing (``continuous_usage_stats: false``) is left out, any other is a 400."""
    for key, value in options.items():
        if not asks_nothing(value, key):
            param = f"stream_options.{key}"
            raise InvalidRequest(
                f"'{param}' cannot be sent to this deployment, which takes no 'stream_options'",
                param=param,
            )


def _stop_from_wire(stop: Any) -> list[str] | None:
    """The client's stop sequences, without an empty one: OpenAI takes ``""`` and stops at
    nothing for it (no text the model writes ends with it), where Bedrock and Claude refuse
    it and Gemini is not to be trusted to read it so; none left is no ``stop``."""
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop] if stop else None
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        if len(stop) > _MOST_STOP_SEQUENCES:
            raise InvalidRequest(
                f"Invalid 'stop': array too long. Expected an array with maximum length "
                f"{_MOST_STOP_SEQUENCES}, but got an array with length {len(stop)} instead.",
                code="array_above_max_length",
                param="stop",
            )
        return [sequence for sequence in stop if sequence] or None
    raise InvalidRequest("'stop' must be a string or an array of strings", param="stop")


def _message_from_wire(raw: Any, index: int) -> Message:
    param = f"messages[{index}]"
    obj = json_object(raw, param)
    role = required(obj, "role", str, f"{param}.role")
    if role not in _ROLES:
        raise InvalidRequest(
            f"'{param}.role' must be one of {', '.join(sorted(_ROLES))}, not {role!r}",
            param=f"{param}.role",
        )
    tool_call_id = optional(obj, "tool_call_id", str, f"{param}.tool_call_id")
    if role == "tool" and tool_call_id is None:
        # As OpenAI answers it, whichever family serves: a result must say its call.
        raise InvalidRequest(
            "Missing parameter 'tool_call_id': messages with role 'tool' must have a "
            "'tool_call_id'.",
            param=f"{param}.tool_call_id",
        )
    tool_calls = optional(obj, "tool_calls", list, f"{param}.tool_calls")
    extra = {k: v for k, v in obj.items() if k not in _MESSAGE_KEYS}
    if tool_calls and any(
        isinstance(c, dict) and c.get("type") in _OPENAI_ONLY_TOOLS for c in tool_calls
    ):
        # Calls of custom tools: kept as sent, like the tools (see _OPENAI_ONLY_TOOLS).
        extra["tool_calls"] = tool_calls
        tool_calls = None
    return Message(
        role=cast(Role, role),
        content=_content_from_wire(obj.get("content"), f"{param}.content"),
        name=optional(obj, "name", str, f"{param}.name"),
        tool_calls=None
        if tool_calls is None
        else [
            _tool_call_from_wire(c, f"{param}.tool_calls[{i}]") for i, c in enumerate(tool_calls)
        ],
        tool_call_id=tool_call_id,
        extra=extra,
    )


def _content_from_wire(content: Any, param: str) -> str | list[ContentPart] | None:
    if content is None or isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"'{param}' must be a string or an array of parts", param=param)
    return [_part_from_wire(part, f"{param}[{i}]") for i, part in enumerate(content)]


def _part_from_wire(raw: Any, param: str) -> ContentPart:
    part = json_object(raw, param)
    kind = required(part, "type", str, f"{param}.type")
    if kind == "text":
        text = required(part, "text", str, f"{param}.text")
        return TextPart(text, extra={k: v for k, v in part.items() if k not in ("type", "text")})
    if kind == "image_url":
        image = json_object(part.get("image_url"), f"{param}.image_url")
        url = required(image, "url", str, f"{param}.image_url.url")
        detail = optional(image, "detail", str, f"{param}.image_url.detail")
        # The part's own fields (a cache hint) go on with it, as a text part's do.
        extra = {k: v for k, v in part.items() if k not in ("type", "image_url")}
        if url.startswith("data:") and ";base64," in url:
            media_type, _, data = url[5:].partition(";base64,")
            return ImagePart(data=data, media_type=media_type, detail=detail, extra=extra)
        return ImagePart(url=url, detail=detail, extra=extra)
    if kind == "file":
        document = _document_from_wire(part)
        if document is not None:
            return document
    return OpaquePart(type=kind, data=part)


def _document_from_wire(part: dict[str, Any]) -> DocumentPart | None:
    """A ``file`` part holding a base64 PDF (``file_data``, a data: URL) as a document;
    ``None`` for a file by ``file_id`` or of another type, kept as sent."""
    file = part.get("file")
    if not isinstance(file, dict) or not set(file) <= {"file_data", "filename"}:
        return None
    data, filename = file.get("file_data"), file.get("filename")
    if not isinstance(data, str) or not data.startswith("data:" + PDF + ";base64,"):
        return None
    if filename is not None and not isinstance(filename, str):
        return None
    extra = {k: v for k, v in part.items() if k not in ("type", "file")}
    return DocumentPart(PDF, data=data.partition(",")[2], name=filename, extra=extra)


def _tool_call_from_wire(raw: Any, param: str) -> ToolCall:
    call = json_object(raw, param)
    function = json_object(call.get("function"), f"{param}.function")
    return ToolCall(
        id=required(call, "id", str, f"{param}.id"),
        name=required(function, "name", str, f"{param}.function.name"),
        arguments=optional(function, "arguments", str, f"{param}.function.arguments") or "",
        extra={k: v for k, v in call.items() if k not in ("id", "type", "function")},
    )


def _tools_from_wire(tools: list[Any] | None) -> list[Tool] | None:
    if tools is None:
        return None
    parsed = []
    for index, raw in enumerate(tools):
        param = f"tools[{index}]"
        tool = json_object(raw, param)
        if tool.get("type") != "function":
            raise InvalidRequest(
                f"'{param}.type' {tool.get('type')!r} is not supported; use 'function'",
                param=f"{param}.type",
            )
        function = json_object(tool.get("function"), f"{param}.function")
        at = f"{param}.function"
        parsed.append(
            Tool(
                name=required(function, "name", str, f"{at}.name"),
                description=optional(function, "description", str, f"{at}.description"),
                parameters=optional(function, "parameters", dict, f"{at}.parameters"),
                strict=optional(function, "strict", bool, f"{at}.strict"),
                # The tool's own fields beside its function (a cache hint) go on with it, and
                # so do the function's beside those the gateway models.
                extra={k: v for k, v in tool.items() if k not in ("type", "function")},
                function_extra={k: v for k, v in function.items() if k not in _FUNCTION_KEYS},
            )
        )
    return parsed


def _check_openai_only_tools(tools: list[Any]) -> None:
    """Tools kept as sent: each an object of a type OpenAI knows."""
    for index, raw in enumerate(tools):
        param = f"tools[{index}]"
        kind = json_object(raw, param).get("type")
        if kind != "function" and kind not in _OPENAI_ONLY_TOOLS:
            raise InvalidRequest(
                f"'{param}.type' {kind!r} is not supported; use 'function' or 'custom'",
                param=f"{param}.type",
            )


def _tool_choice_from_wire(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        return ToolChoice(mode=raw)
    if isinstance(raw, dict) and raw.get("type") == "function":
        function = json_object(raw.get("function"), "tool_choice.function")
        return ToolChoice(mode="function", name=required(function, "name", str, "tool_choice"))
    raise InvalidRequest(
        "'tool_choice' must be 'auto', 'none', 'required' or a function object",
        param="tool_choice",
    )


def _response_format_from_wire(raw: Any) -> ResponseFormat | None:
    if raw is None:
        return None
    fmt = json_object(raw, "response_format")
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        return ResponseFormat(type=kind)
    if kind == "json_schema":
        schema = json_object(fmt.get("json_schema"), "response_format.json_schema")
        return ResponseFormat(type="json_schema", json_schema=schema)
    raise InvalidRequest(
        "'response_format.type' must be 'text', 'json_object' or 'json_schema'",
        param="response_format.type",
    )


def _check_tool_results(messages: list[Message]) -> None:
    """A Responses client's tool results hold only text: Chat Completions' tool messages take
    nothing else (that API's results may hold images and files; an OpenAI chat client's go
    as it sent them, for its upstream to judge)."""
    for index, message in enumerate(messages):
        if message.role != "tool" or not isinstance(message.content, list):
            continue
        for place, part in enumerate(message.content):
            if not isinstance(part, TextPart):
                param = f"messages[{index}].content[{place}]"
                raise InvalidRequest(
                    f"'{param}': a tool result can only hold text for an openai chat "
                    "deployment (Chat Completions takes only text parts there)",
                    param=param,
                )


def _message_to_wire(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role}
    content = message.content
    if isinstance(content, list):
        # Reasoning is not sent back: compatible servers take none (DeepSeek refuses it).
        parts = [_part_to_wire(part) for part in content if not isinstance(part, ReasoningPart)]
        if parts or not content:
            out["content"] = parts
        else:  # a turn of reasoning (and calls): nothing, as Chat Completions says it
            out["content"] = None if message.tool_calls else ""
    elif content is None and message.role == "tool":
        out["content"] = ""  # a tool message must have content (an empty result)
    else:
        out["content"] = content
    if message.name is not None:
        out["name"] = message.name
    if message.tool_calls:
        out["tool_calls"] = [
            {
                **call.extra,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.extra:
        out.update(message.extra)
    return out


def _part_to_wire(part: TextPart | ImagePart | DocumentPart | OpaquePart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {**part.extra, "type": "text", "text": part.text}
    if isinstance(part, DocumentPart):
        if part.data is None or part.media_type != PDF:
            # Chat Completions reads PDFs from files: a plain-text document is its text.
            return {**part.extra, "type": "text", "text": part.text or ""}
        file = {"file_data": f"data:{PDF};base64,{part.data}", "filename": _filename(part)}
        return {**part.extra, "type": "file", "file": file}
    if isinstance(part, ImagePart):
        url = part.url if part.url is not None else f"data:{part.media_type};base64,{part.data}"
        image: dict[str, Any] = {"url": url}
        if part.detail is not None:
            image["detail"] = part.detail
        return {**part.extra, "type": "image_url", "image_url": image}
    return part.data


def _filename(part: DocumentPart) -> str:
    """A PDF's ``filename``: its own, else one made from a hash of its data, as Bedrock's
    documents are named. Chat Completions refuses ``file_data`` without a ``filename`` (a 400
    naming ``file.file_id``), and an Anthropic ``document`` needs no title."""
    if part.name is not None:
        return part.name
    return "document-" + hashlib.sha256((part.data or "").encode()).hexdigest()[:8] + ".pdf"


def _tool_to_wire(tool: Tool, foreign: bool = False) -> dict[str, Any]:
    """A function tool; ``foreign``: another format's, whose ``strict`` holds only where
    OpenAI's strict mode takes its parameters (``_fits_strict_mode``)."""
    function: dict[str, Any] = {**tool.function_extra, "name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.parameters is not None:
        function["parameters"] = tool.parameters
    if tool.strict is not None:
        function["strict"] = tool.strict and (not foreign or _fits_strict_mode(tool.parameters))
    return {**tool.extra, "type": "function", "function": function}


def _tool_choice_to_wire(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.mode == "function":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


def _response_format_to_wire(fmt: ResponseFormat, foreign: bool = False) -> dict[str, Any]:
    """The ``response_format``; ``foreign``: another format's, whose schema is strict (Claude's
    structured output always is) only where OpenAI's strict mode takes it."""
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    spec = fmt.json_schema
    strict = spec is not None and spec.get("strict") is True
    if foreign and strict and spec is not None and not _fits_strict_mode(spec.get("schema")):
        spec = {**spec, "strict": False}
    return {"type": "json_schema", "json_schema": spec}


_SUBSCHEMAS = ("items", "additionalProperties", "not", "if", "then", "else", "contains")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")


def _fits_strict_mode(schema: Any) -> bool:
    """Whether OpenAI's strict mode takes ``schema``: every object closed
    (``"additionalProperties": false``) and listing every property in ``required``. Claude's
    structured output and strict tools take optional properties, which strict mode refuses
    with a 400 (an optional property is a union with null there): another format's such
    schema is sent with ``strict: false``, the answer asked to follow it, not forced to."""
    if not isinstance(schema, dict):
        return True
    kind = schema.get("type")
    if kind == "object" or (isinstance(kind, list) and "object" in kind):
        required = schema.get("required")
        listed = required if isinstance(required, list) else ()
        if schema.get("additionalProperties") is not False:
            return False
        if any(name not in listed for name in schema.get("properties") or ()):
            return False
    if not all(_fits_strict_mode(schema.get(key)) for key in _SUBSCHEMAS):
        return False
    for key in _SUBSCHEMA_LISTS:
        items = schema.get(key)
        if isinstance(items, list) and not all(_fits_strict_mode(item) for item in items):
            return False
    for key in _SUBSCHEMA_MAPS:
        inner = schema.get(key)
        if isinstance(inner, dict) and not all(_fits_strict_mode(v) for v in inner.values()):
            return False
    return True
