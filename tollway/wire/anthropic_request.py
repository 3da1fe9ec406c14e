"""Anthropic Messages requests: wire JSON to ``ChatRequest`` and back.

Where Anthropic's shape differs from the canonical one:

- ``system`` is a top-level field; canonically it is a leading system message. On the way out
  every system or developer message is hoisted into it, in order.
- A tool result is a ``tool_result`` block in a user turn; canonically it is one ``tool``
  message per result (``is_error`` and other block fields in its ``extra``). On the way out
  consecutive tool messages, and a user message right after them, form one user turn.
- A tool call is a ``tool_use`` block with an ``input`` object; canonically the arguments are
  JSON text. Another format's tool whose parameters do not say ``"type"`` (OpenAI takes
  ``parameters: {}`` for a function without arguments) is sent ``"type": "object"``, which
  Anthropic requires of an ``input_schema``.
- ``max_tokens`` is required: ``DEFAULT_MAX_TOKENS`` when a client of another format set none.
  An Anthropic client's 0 (a prompt cache pre-warm, nothing generated) has no counterpart in
  other families and is refused for them (``crossing.request_for``).
- An OpenAI client's ``reasoning_effort`` is ``thinking`` with a budget (``claude_effort``);
  a Responses client that asks for a reasoning summary (``ChatRequest.reasoning_summary``)
  gets it summarized (``thinking.display: "summarized"``, the default Claude Opus 4.7 and later
  change to ``omitted``, an empty ``thinking``).
- JSON output: a ``json_schema`` response format is Anthropic's structured output
  (``output_config.format``; the beta's top-level ``output_format`` is read as it), strict
  (Claude's output always conforms, so OpenAI is sent ``strict: true``); another format's
  schema gets ``"additionalProperties": false`` on each object that leaves it unsaid, which
  Claude requires, and bounds Claude cannot enforce are a 400 when strict, words in the
  description when not (``claude_schema``); ``json_object`` (any
  JSON object, no schema) has no Anthropic equivalent and becomes ``JSON_OBJECT_INSTRUCTION``
  at the end of the system prompt.
- ``thinking`` is the canonical ``ChatRequest.thinking``, as sent (not on a request answering
  the calls of a turn that another family made, without Claude's signed thinking:
  ``claude_effort``);
  ``thinking`` and ``redacted_thinking`` blocks are ``ReasoningPart``s, and those no provider
  signed (the gateway's, from an OpenAI-compatible server's reasoning) are not sent: Anthropic
  would refuse them, and it ignores the thinking of earlier turns anyway.
- ``temperature`` is 0 to 1 (OpenAI's and Gemini's 0 to 2): a value outside it is a 400
  naming the field and Claude's range before any call (``check_temperature``), not clamped,
  since 1.5 asks for more variety than Claude has to give; Bedrock's Claude alike.
- ``top_p`` of 1 from another format's client (OpenAI's default, which many clients send
  beside a ``temperature``) asks for nothing and is not sent: Claude Opus 4.1 and later
  models refuse ``temperature`` and ``top_p`` together, and a 1 changes no answer of any.
  A ``top_p`` below 1 with a ``temperature`` goes on, and such a model says its own 400.
- A stop sequence without a character other than whitespace (``"\\n"``, common in OpenAI
  clients' ``stop``) is refused by Anthropic (``stop_sequences: each stop sequence must
  contain non-whitespace``): another format's is a 400 naming the client's ``stop`` before
  any call (``check_stop``), not dropped, since the answer would then not stop where asked.
- Another format's empty text parts beside others (an OpenAI client's image without a
  caption, ``[{"type": "text", "text": ""}, {"type": "image_url", ...}]``) ask for nothing
  and are not sent (``crossing.without_empty_text``): Anthropic refuses empty text blocks
  (``text content blocks must be non-empty``), in messages, tool results and ``system``.
- No counterpart: ``n`` > 1 is a 400; ``seed`` is dropped (OpenAI itself only promises best
  effort); an image's ``detail`` and a message's ``name`` are dropped.
"""

from __future__ import annotations

from typing import Any, Literal

from tollway.core.errors import InvalidRequest
from tollway.core.types import (
    JSON,
    ChatRequest,
    ContentPart,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolChoice,
)
from tollway.wire.anthropic_content import (
    assistant_content,
    assistant_from_wire,
    content_blocks,
    holds_tool_results,
    text_from_wire,
    tool_result_to_wire,
    user_from_wire,
)
from tollway.wire.claude_effort import DEFAULT_MAX_TOKENS, thinking_for_effort
from tollway.wire.claude_schema import claude_schema
from tollway.wire.crossing import request_for, without_empty_text
from tollway.wire.effort import OUTPUT_EFFORT, OUTPUT_EFFORTS
from tollway.wire.fields import json_object, number, optional, refuse_credential_fields, required
from tollway.wire.responses_web_search import web_search_to_anthropic
from tollway.wire.tool_names import ANTHROPIC, ANTHROPIC_PATTERN, check_history, check_names

WIRE_FORMAT = "anthropic"
JSON_OBJECT_INSTRUCTION = (
    "Respond with a single JSON object and nothing else: no prose before or after it and no "
    "code fences."
)
"""Appended to the system prompt for ``response_format: json_object``."""

_REQUEST_KEYS = frozenset(
    {
        "model", "messages", "system", "max_tokens", "stream", "temperature", "top_p",
        "stop_sequences", "metadata", "tools", "tool_choice", "output_config", "thinking",
        "top_k",
    }
)  # fmt: skip
_TOOL_KEYS = frozenset({"name", "description", "input_schema", "strict"})
# Fields only generation reads; the count_tokens endpoint refuses them.
_GENERATION_ONLY = (
    "max_tokens", "stream", "stop_sequences", "temperature", "top_p", "top_k", "metadata",
    "service_tier", "container", "inference_geo", "diagnostics",
)  # fmt: skip
_ToolMode = Literal["auto", "none", "required", "function"]
_TOOL_CHOICES: dict[str, _ToolMode] = {
    "auto": "auto",
    "none": "none",
    "any": "required",
    "tool": "function",
}
_TOOL_CHOICES_OUT = {mode: kind for kind, mode in _TOOL_CHOICES.items()}


def request_from_wire(body: dict[str, Any], *, counting: bool = False) -> ChatRequest:
    """Parse and validate a Messages body (``counting``: a count_tokens body, no max_tokens)."""
    if not counting:
        plain = _plain_request(body)
        if plain is not None:
            return plain
    return walked_request(body, counting=counting)


def walked_request(body: dict[str, Any], *, counting: bool = False) -> ChatRequest:
    """``request_from_wire`` by the generic walk over every field, whatever the body."""
    model = required(body, "model", str)
    if counting:
        max_tokens = optional(body, "max_tokens", int)
    else:
        max_tokens = required(body, "max_tokens", int)
    if max_tokens is not None and max_tokens < 0:
        # 0 is Anthropic's prompt cache pre-warm: the prompt is cached, nothing generated.
        raise InvalidRequest("'max_tokens' must be at least 0", param="max_tokens")
    messages = required(body, "messages", list)
    if not messages:
        raise InvalidRequest("'messages' must contain at least one message", param="messages")
    extra = {k: v for k, v in body.items() if k not in _REQUEST_KEYS}
    refuse_credential_fields(extra)
    metadata = optional(body, "metadata", dict) or {}
    if rest := {k: v for k, v in metadata.items() if k != "user_id"}:
        extra["metadata"] = rest
    tools = _tools_from_wire(optional(body, "tools", list))
    tool_choice, parallel = _tool_choice_from_wire(body.get("tool_choice"), tools)
    return ChatRequest(
        model=model,
        messages=_system_from_wire(body.get("system")) + _messages_from_wire(messages),
        stream=bool(optional(body, "stream", bool)),
        include_usage=True,  # Anthropic streams always end with usage
        max_tokens=max_tokens,
        temperature=_unit_interval(body, "temperature"),
        top_p=_unit_interval(body, "top_p"),
        top_k=optional(body, "top_k", int),
        stop=_stop_sequences_from_wire(body.get("stop_sequences")),
        user=optional(metadata, "user_id", str, "metadata.user_id"),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        response_format=_output_config_from_wire(body, extra),
        extra=extra,
        wire_format=WIRE_FORMAT,
        thinking=_thinking_from_wire(optional(body, "thinking", dict)),
    )


_PLAIN_KEYS = frozenset(
    {"model", "messages", "max_tokens", "system", "stream", "temperature", "top_p"}
)
"""The fields the canonical request models that a plain body may hold (any other it models
makes the body not plain; fields it does not model are ``extra`` either way)."""


def _plain_request(body: dict[str, Any]) -> ChatRequest | None:
    """The request of a plain body, read without the generic walk, with the body kept to be
    sent on as it came (``ChatRequest.wire_body``); ``None`` for any other (the generic walk
    reads it, and says what is wrong with it). Plain: a string ``system`` or none, every
    message ``{"role": "user" | "assistant", "content": "text"}``, the numbers of their usual
    types, and none of the other fields the request models."""
    model, max_tokens, messages = body.get("model"), body.get("max_tokens"), body.get("messages")
    if type(model) is not str or type(max_tokens) is not int or max_tokens < 0:
        return None
    if type(messages) is not list or not messages:
        return None
    system = body.get("system", "")
    if type(system) is not str:  # a null too: the generic walk's body leaves it out
        return None
    parsed = [Message("system", system)] if "system" in body else []
    for message in messages:
        if type(message) is not dict or len(message) != 2:
            return None
        role, content = message.get("role"), message.get("content")
        if type(content) is not str or not content or (role != "user" and role != "assistant"):
            return None  # an empty content too: the generic walk says whether it may be
        parsed.append(Message(role, content))
    extra = {}
    for key, value in body.items():
        if key in _REQUEST_KEYS:
            if key not in _PLAIN_KEYS:
                return None
        elif key == "output_format":  # the structured output beta, read as output_config
            return None
        else:
            extra[key] = value
    if extra:
        refuse_credential_fields(extra)
    stream, temperature, top_p = body.get("stream"), body.get("temperature"), body.get("top_p")
    if stream is not None and type(stream) is not bool:
        return None
    # A null number is not plain either: the generic walk's body leaves it out.
    # Out of Anthropic's range too: the generic walk says why (``_unit_interval``).
    if "temperature" in body:
        if type(temperature) is not float and type(temperature) is not int:
            return None
        temperature = float(temperature)
        if not 0.0 <= temperature <= 1.0:
            return None
    if "top_p" in body:
        if type(top_p) is not float and type(top_p) is not int:
            return None
        top_p = float(top_p)
        if not 0.0 <= top_p <= 1.0:
            return None
    return ChatRequest(
        model,
        parsed,
        stream=stream is True,
        include_usage=True,  # Anthropic streams always end with usage
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        extra=extra,
        wire_format=WIRE_FORMAT,
        wire_body=body,
    )


_THINKING_TYPES = ("enabled", "disabled", "adaptive")
MIN_THINKING_BUDGET = 1024
"""The least ``budget_tokens`` Anthropic's API takes."""


def _thinking_from_wire(thinking: JSON | None) -> JSON | None:
    """``thinking``, checked as Anthropic's API checks it whichever family serves: a type
    it knows, and ``enabled`` with a ``budget_tokens`` of at least 1024 (Gemini would take
    a smaller one, an OpenAI deployment would ignore any, and the client would not learn its
    request fails on Claude). Below ``max_tokens`` is checked where the request crosses to a
    family without Claude's own check (``crossing.request_for``): Claude's interleaved
    thinking beta lifts it."""
    if thinking is None:
        return None
    kind = thinking.get("type")
    if kind not in _THINKING_TYPES:
        raise InvalidRequest(
            "'thinking.type' must be 'enabled', 'disabled' or 'adaptive'", param="thinking.type"
        )
    budget = thinking.get("budget_tokens")
    if kind == "enabled" and (type(budget) is not int or budget < MIN_THINKING_BUDGET):
        raise InvalidRequest(
            f"'thinking.budget_tokens' must be an integer of at least {MIN_THINKING_BUDGET}",
            param="thinking.budget_tokens",
        )
    return thinking


def _unit_interval(body: dict[str, Any], name: str) -> float | None:
    """An optional number from 0 to 1, as Anthropic's API takes ``temperature`` and ``top_p``
    whichever model serves: an Anthropic client's 1.5 is a 400 for an OpenAI deployment too,
    not the more varied answer OpenAI's range would give it."""
    value = number(body, name)
    if value is not None and not 0.0 <= value <= 1.0:
        raise InvalidRequest(f"'{name}' must be from 0 to 1, not {value:g}", param=name)
    return value


CLAUDE_TEMPERATURE = (0.0, 1.0)
"""The ``temperature`` Claude takes (Anthropic's API and Bedrock answer others with a 400)."""


def check_temperature(request: ChatRequest) -> None:
    """A 400 naming ``temperature`` and Claude's range when ``request``'s is outside it."""
    temperature = request.temperature
    if temperature is None:
        return
    low, high = CLAUDE_TEMPERATURE
    if not low <= temperature <= high:
        raise InvalidRequest(
            f"'temperature' {temperature:g} is outside the range Claude models take, "
            f"{low:g} to {high:g} (OpenAI's is 0 to 2): send at most {high:g} to a Claude "
            "deployment",
            param="temperature",
        )


def check_stop(stop: list[str]) -> None:
    """A 400 naming another format's ``stop`` when one of its sequences is only whitespace
    (or empty), which Anthropic refuses as a stop sequence."""
    for index, sequence in enumerate(stop):
        if not sequence.strip():
            raise InvalidRequest(
                f"'stop' sequence {sequence!r} holds nothing but whitespace, which Claude "
                "models do not take as a stop sequence: send sequences with other characters "
                "to a Claude deployment",
                param=f"stop[{index}]" if len(stop) > 1 else "stop",
            )


def asks_for_thinking(request: ChatRequest) -> bool:
    """Whether the client asked to be shown the model's reasoning (thinking on, any kind)."""
    thinking = request.thinking
    return thinking is not None and thinking.get("type", "disabled") != "disabled"


def omits_thinking(request: ChatRequest) -> bool:
    """Whether the client asked for thinking without its text (``display: "omitted"``: Claude's
    thinking blocks then hold only a signature)."""
    thinking = request.thinking
    return asks_for_thinking(request) and (thinking or {}).get("display") == "omitted"


def _displayed(thinking: JSON, summary: str | None) -> JSON:
    """``thinking`` asking for Claude's summarized thinking when a summary was asked for and
    thinking is on (Opus 4.7 and later omit the text unless asked)."""
    if summary is None or thinking.get("type", "disabled") == "disabled" or "display" in thinking:
        return thinking
    return {**thinking, "display": "summarized"}


def request_to_wire(request: ChatRequest, model: str) -> dict[str, Any]:
    """The upstream Messages body for ``request`` addressed to the upstream ``model``."""
    own = request.wire_format == WIRE_FORMAT  # an Anthropic client's tools go as it wrote them
    request = request_for(thinking_for_effort(request), WIRE_FORMAT)
    if request.n is not None and request.n > 1:
        raise InvalidRequest("'n' greater than 1 is not supported by Anthropic models", param="n")
    body: dict[str, Any] = dict(request.extra)
    body["model"] = model
    body["max_tokens"] = DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens
    fmt = request.response_format
    system = _system_to_wire(
        request.messages, fmt is not None and fmt.type == "json_object", not own
    )
    if system is not None:
        body["system"] = system
    # A native request is sent as the client wrote it; a translated one loses its turns
    # with nothing in them, which Anthropic refuses (kept until now for the errors' numbering).
    if not own:  # an Anthropic client's turns go as it wrote them, for Anthropic to judge
        check_history(request.messages, ANTHROPIC)
    body["messages"] = _messages_to_wire(request.messages, not own)
    if request.stream:
        body["stream"] = True
    if request.temperature is not None:
        check_temperature(request)
        body["temperature"] = request.temperature
    if request.top_p is not None and (own or request.top_p != 1):
        # Another format's 1 asks for nothing; newer Claude models refuse it beside a
        # temperature (the module's docstring).
        body["top_p"] = request.top_p
    if request.top_k is not None:
        body["top_k"] = request.top_k
    if request.stop is not None:
        if not own:
            check_stop(request.stop)
        body["stop_sequences"] = request.stop
    if request.thinking is not None:
        body["thinking"] = _displayed(request.thinking, request.reasoning_summary)
    if request.user is not None:
        body["metadata"] = {**(body.get("metadata") or {}), "user_id": request.user}
    if request.tools is not None:
        if not own:  # an Anthropic client's names were checked as it sent them
            check_names(request.tools, ANTHROPIC, _is_function)
        body["tools"] = [_tool_to_wire(tool, own) for tool in request.tools]
    search = request.web_search
    if search is not None and search.max_uses != 0:  # no search allowed: no tool to offer
        body["tools"] = [*body.get("tools", ()), web_search_to_anthropic(search)]
    tool_choice = _tool_choice_to_wire(request)
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    if fmt is not None and fmt.type == "json_schema":
        schema = (fmt.json_schema or {}).get("schema") or {"type": "object"}
        if not own:
            strict = (fmt.json_schema or {}).get("strict") is True
            schema = claude_schema(schema, strict, "Anthropic")
        output_config = {**(body.get("output_config") or {})}
        output_config["format"] = {"type": "json_schema", "schema": schema}
        body["output_config"] = output_config
    return body


def count_tokens_to_wire(request: ChatRequest, model: str) -> dict[str, Any]:
    """The body of a count_tokens call for ``request``: the Messages body minus generation."""
    body = request_to_wire(request, model)
    for key in _GENERATION_ONLY:
        body.pop(key, None)
    return body


def _stop_sequences_from_wire(raw: Any) -> list[str] | None:
    if raw is None:
        return None
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        for index, sequence in enumerate(raw):
            # As Anthropic answers it, whichever family serves (another's would take it).
            if not sequence.strip():
                param = f"stop_sequences[{index}]"
                raise InvalidRequest(
                    f"'{param}': each stop sequence must contain non-whitespace", param=param
                )
        return list(raw)
    raise InvalidRequest("'stop_sequences' must be an array of strings", param="stop_sequences")


def _output_config_from_wire(body: dict[str, Any], extra: dict[str, Any]) -> ResponseFormat | None:
    """Structured output from ``output_config.format`` (or the beta's top-level
    ``output_format``, which it replaced); other settings stay in ``extra``.

    Claude's structured output always conforms to the schema (constrained decoding), so the
    format is strict: an OpenAI upstream is asked for the same guarantee (``strict: true``),
    not its best effort.
    """
    config = optional(body, "output_config", dict)
    effort = None if config is None else config.get("effort")
    if effort is not None and effort not in OUTPUT_EFFORTS:
        # As Anthropic answers it, whichever family serves.
        raise InvalidRequest(
            f"'{OUTPUT_EFFORT}' must be one of {', '.join(map(repr, OUTPUT_EFFORTS))}, "
            f"not {effort!r}",
            param=OUTPUT_EFFORT,
        )
    fmt = None if config is None else optional(config, "format", dict, "output_config.format")
    structured = fmt is not None and fmt.get("type") == "json_schema"
    if config is not None and not structured:
        extra["output_config"] = config
    elif config is not None and (rest := {k: v for k, v in config.items() if k != "format"}):
        extra["output_config"] = rest
    param = "output_config.format"
    if not structured and isinstance(beta := body.get("output_format"), dict):
        fmt, param = beta, "output_format"
        structured = fmt.get("type") == "json_schema"
        if structured:
            del extra["output_format"]  # else it stays, as any field the codec does not read
    if fmt is None or not structured:
        return None
    schema = required(fmt, "schema", dict, f"{param}.schema")
    return ResponseFormat(
        type="json_schema", json_schema={"name": "response", "schema": schema, "strict": True}
    )


def _system_from_wire(raw: Any) -> list[Message]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [Message(role="system", content=raw)]
    if isinstance(raw, list):
        parts: list[ContentPart] = [text_from_wire(b, f"system[{i}]") for i, b in enumerate(raw)]
        return [Message(role="system", content=parts)]
    raise InvalidRequest("'system' must be a string or an array of text blocks", param="system")


def _messages_from_wire(raw: list[Any]) -> list[Message]:
    messages: list[Message] = []
    for index, item in enumerate(raw):
        param = f"messages[{index}]"
        obj = json_object(item, param)
        role = required(obj, "role", str, f"{param}.role")
        if "content" not in obj:
            raise InvalidRequest(
                f"'{param}.content' is a required property", param=f"{param}.content"
            )
        content = obj["content"]
        if (content == "" or content == []) and (role != "assistant" or index < len(raw) - 1):
            # As Anthropic answers it, whichever family serves (another's would take it).
            raise InvalidRequest(
                f"'{param}.content': all messages must have non-empty content except for the "
                "optional final assistant message",
                param=f"{param}.content",
            )
        extra = {k: v for k, v in obj.items() if k not in ("role", "content")}
        if role == "assistant":
            message = assistant_from_wire(obj["content"], f"{param}.content")
            message.extra = extra
            messages.append(message)
        elif role == "user":
            messages.extend(user_from_wire(obj["content"], f"{param}.content", extra))
        else:
            raise InvalidRequest(
                f"'{param}.role' must be 'user' or 'assistant', not {role!r}",
                param=f"{param}.role",
            )
    return messages


def _tools_from_wire(raw: list[Any] | None) -> list[Tool] | None:
    if raw is None:
        return None
    tools = []
    for index, item in enumerate(raw):
        param = f"tools[{index}]"
        tool = json_object(item, param)
        schema = optional(tool, "input_schema", dict, f"{param}.input_schema")
        custom = tool.get("type") in (None, "custom")
        if schema is None and custom:
            raise InvalidRequest(
                f"'{param}.input_schema' is a required property", param=f"{param}.input_schema"
            )
        # A toolset (computer_toolset_..., mcp_toolset, ...) declares a family of server
        # tools and names none of them: kept with no name, and sent without one.
        name = required(tool, "name", str, f"{param}.name") if custom or "name" in tool else ""
        if custom and not ANTHROPIC.takes(name):
            # As Anthropic answers it, whichever family serves (another's may take it).
            raise InvalidRequest(
                f"'{param}.name': String should match pattern '{ANTHROPIC_PATTERN}' "
                f"({name!r} does not)",
                param=f"{param}.name",
            )
        tools.append(
            Tool(
                name=name,
                description=optional(tool, "description", str, f"{param}.description"),
                parameters=schema,
                strict=optional(tool, "strict", bool, f"{param}.strict"),
                extra={k: v for k, v in tool.items() if k not in _TOOL_KEYS},
            )
        )
    return tools


def _tool_choice_from_wire(
    raw: Any, tools: list[Tool] | None
) -> tuple[ToolChoice | None, bool | None]:
    """The tool choice and ``parallel_tool_calls`` (from ``disable_parallel_tool_use``).

    A choice that requires a tool the request does not offer is a 400, as the other dialects
    answer it: some families would otherwise answer in text, the requirement silently unmet.
    """
    if raw is None:
        return None, None
    choice = json_object(raw, "tool_choice")
    kind = choice.get("type")
    if kind not in _TOOL_CHOICES:
        raise InvalidRequest(
            "'tool_choice.type' must be 'auto', 'any', 'tool' or 'none'", param="tool_choice.type"
        )
    disable = optional(
        choice, "disable_parallel_tool_use", bool, "tool_choice.disable_parallel_tool_use"
    )
    name = required(choice, "name", str, "tool_choice.name") if kind == "tool" else None
    if kind in ("any", "tool") and not tools:
        raise InvalidRequest(
            "'tool_choice' requires a tool, but the request has no 'tools'", param="tool_choice"
        )
    # A toolset's tools are not listed in the request: a choice may name one of them.
    listed = all(tool.name for tool in tools or ())
    if name is not None and listed and all(tool.name != name for tool in tools or ()):
        raise InvalidRequest(
            f"'tool_choice.name' names {name!r}, which is not one of the request's 'tools'",
            param="tool_choice.name",
        )
    parallel = None if disable is None else not disable
    return ToolChoice(mode=_TOOL_CHOICES[kind], name=name), parallel


def _system_to_wire(
    messages: list[Message], json_object: bool, translated: bool
) -> str | list[Any] | None:
    system = [
        (i, without_empty_text(m) if translated else m)
        for i, m in enumerate(messages)
        if m.role in ("system", "developer")
    ]
    if len(system) == 1 and isinstance(system[0][1].content, str) and not json_object:
        return system[0][1].content
    blocks = [block for index, message in system for block in _system_blocks(message, index)]
    if json_object:
        blocks.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
    return blocks or None


def _system_blocks(message: Message, index: int) -> list[dict[str, Any]]:
    content = message.content
    if isinstance(content, list) and not all(isinstance(part, TextPart) for part in content):
        raise InvalidRequest(
            "system messages can only hold text for Anthropic models",
            param=f"messages[{index}].content",
        )
    return content_blocks(content)


def _messages_to_wire(messages: list[Message], translated: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        # A tool result, and a user message right after results, join the results' user turn.
        joins = bool(out) and holds_tool_results(out[-1])
        if message.role in ("system", "developer"):
            continue
        if translated:  # another format's empty text parts, which Anthropic refuses
            message = without_empty_text(message)
        if message.role == "assistant":
            turn = assistant_content(message, f"messages[{index}]")
            if turn == [] or (translated and not turn):
                continue  # nothing (but unsigned reasoning): Anthropic refuses empty content
            out.append({**message.extra, "role": "assistant", "content": turn})
        elif message.role == "tool":
            result = tool_result_to_wire(message, f"messages[{index}]")
            if joins:
                out[-1]["content"].append(result)
            else:
                out.append({"role": "user", "content": [result]})
        elif joins:
            out[-1]["content"].extend(content_blocks(message.content))
        else:
            text = message.content
            user = text if isinstance(text, str) else content_blocks(text)
            out.append({**message.extra, "role": "user", "content": user})
    return out


_NO_ARGUMENTS = {"type": "object", "properties": {}}


def _is_function(tool: Tool) -> bool:
    """Whether ``tool`` is one the client defined (a server tool's name is Anthropic's)."""
    return tool.extra.get("type") in (None, "custom")


def _tool_to_wire(tool: Tool, own: bool = True) -> dict[str, Any]:
    """A tool; ``own``: an Anthropic client's, whose ``input_schema`` goes as it came."""
    out: dict[str, Any] = {**tool.extra}
    if tool.name or "type" not in tool.extra:  # a toolset names no tool (_tools_from_wire)
        out["name"] = tool.name
    if tool.description is not None:
        out["description"] = tool.description
    schema = tool.parameters
    if schema is not None and not own and "type" not in schema:
        # OpenAI and Gemini take a function's parameters without their "type" (``{}``: no
        # arguments); Anthropic refuses an input_schema that does not say it is an object.
        schema = {**_NO_ARGUMENTS} if not schema else {"type": "object", **schema}
    if schema is not None:
        out["input_schema"] = schema
    elif "type" not in tool.extra:  # a function tool; server tools have no schema
        out["input_schema"] = {**_NO_ARGUMENTS}
    if tool.strict is not None:
        out["strict"] = tool.strict
    return out


def _tool_choice_to_wire(request: ChatRequest) -> dict[str, Any] | None:
    choice, parallel = request.tool_choice, request.parallel_tool_calls
    if choice is None and (parallel is None or not request.tools):
        return None
    mode = "auto" if choice is None else choice.mode
    out: dict[str, Any] = {"type": _TOOL_CHOICES_OUT[mode]}
    if choice is not None and choice.mode == "function":
        out["name"] = choice.name
    if parallel is not None and mode != "none":
        out["disable_parallel_tool_use"] = not parallel
    return out
