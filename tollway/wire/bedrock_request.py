"""Bedrock Converse requests: wire JSON to ``ChatRequest`` and back.

The model is not in the body (it is the ``{modelId}`` of the URL), and a body is the same for
``converse`` and ``converse-stream``. Where Converse differs from the canonical shape:

- ``system`` is a top-level array of blocks; on the way out every system or developer message
  is hoisted into it, in order (text only).
- Sampling settings live in ``inferenceConfig`` (``maxTokens``, ``temperature``, ``topP``,
  ``stopSequences``); ``maxTokens`` is optional, so none is invented.
- Tools are ``toolConfig.tools[].toolSpec`` with ``inputSchema.json``; ``toolChoice`` is
  ``auto`` / ``any`` / ``tool``. Converse has no ``none`` (neither has Claude on Bedrock), so
  ``none`` sends no tools; and as Converse refuses ``toolUse`` / ``toolResult`` blocks
  without ``toolConfig``, a conversation sent with no tools (``none``, or none given) has its
  calls and results said in text blocks (``tool_blocks_as_text``): the model reads them all
  and has nothing to call.
- Turns must alternate: consecutive messages of one role (tool results count as the user's)
  are joined into one turn, so tool results and the user message after them share a turn.
- Bedrock refuses blank text (empty or only whitespace): such text is no block, and an
  assistant turn left with no block at all is left out.
- JSON output: ``json_schema`` is ``outputConfig.textFormat`` (the schema as JSON text);
  ``json_object`` becomes Anthropic's ``JSON_OBJECT_INSTRUCTION`` at the end of the system
  prompt. Bedrock's structured output, as Claude's own, refuses an object schema that does not
  say ``"additionalProperties": false``: another format's schema (OpenAI's, strict off, leaves
  objects open) gets it on each object that leaves it unsaid, and bounds the subset lacks
  (``minimum``, ``maxLength`` ...) are a 400 when strict, words in the description when not
  (``claude_schema``); a Converse client's goes as written.
- Converse refuses a tool whose ``inputSchema.json`` does not say ``"type": "object"`` (every
  family: the check is Converse's); another format's tool that leaves it unsaid (OpenAI takes
  ``parameters: {}`` for a function without arguments) is sent it.
- Claude's ``temperature`` range, 0 to 1, is checked before any call as for Anthropic's API
  (``check_temperature``); ``top_k`` has no ``inferenceConfig`` field and is Claude's own
  ``additionalModelRequestFields.top_k``.
- Converse's ``stopReason`` says that a stop sequence ended the answer, not which: another
  format's request with stop sequences also asks for Claude's own ``stop_sequence`` field
  (``additionalModelResponseFieldPaths: ["/stop_sequence"]``, ``STOP_SEQUENCE_PATH``; a model
  without the field answers without it, as AWS documents), so Anthropic's clients read the
  sequence and ``stop_reason: "stop_sequence"`` as Claude's own API says them.
- Extended thinking (``ChatRequest.thinking``, Anthropic's object) is Claude's own request
  field, so it goes as it is in ``additionalModelRequestFields.thinking`` (an OpenAI client's
  ``reasoning_effort`` too, as ``claude_effort`` makes it one); reasoning in an
  assistant turn is a ``reasoningContent`` block, sent back only when signed.
- An Anthropic client's ``output_config.effort`` is Claude's own
  ``additionalModelRequestFields.output_config.effort``; for Nova 2 it and an OpenAI client's
  ``reasoning_effort`` are Nova's ``reasoningConfig`` (``nova_effort``); other models have
  none (a 400 naming it, ``crossing.request_for``).
- ``parallel_tool_calls: false`` (Anthropic's ``disable_parallel_tool_use``) is Claude's own
  ``additionalModelRequestFields.tool_choice.disable_parallel_tool_use`` (``claude``: the
  provider knows the model); other models have no such switch, and their answers are cut to
  their first call (``single_call``).
- No counterpart: ``n`` > 1 is a 400; ``seed``, ``user``, an image's ``detail`` and a
  message's ``name`` are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import orjson

from tollway.core.errors import InvalidRequest
from tollway.core.types import (
    ChatRequest,
    DocumentPart,
    ImagePart,
    Message,
    ResponseFormat,
    Tool,
    ToolChoice,
)
from tollway.wire.anthropic_request import (
    JSON_OBJECT_INSTRUCTION,
    asks_for_thinking,
    check_temperature,
)
from tollway.wire.anthropic_request import WIRE_FORMAT as ANTHROPIC_FORMAT
from tollway.wire.bedrock_content import (
    assistant_blocks,
    assistant_from_wire,
    blocks,
    cache_point,
    content_blocks,
    kind_of,
    named_apart,
    part_from_wire,
    tool_blocks_as_text,
    tool_result_to_wire,
    user_from_wire,
    without_hint,
)
from tollway.wire.bedrock_models import CLAUDE, UNKNOWN, BedrockFamily, fitted
from tollway.wire.claude_effort import thinking_for_effort
from tollway.wire.claude_schema import claude_schema
from tollway.wire.crossing import request_for, without_parts
from tollway.wire.effort import EFFORT, take_output_effort
from tollway.wire.fields import json_object, number, optional, required
from tollway.wire.nova_effort import reasoning_config_for_effort
from tollway.wire.tool_names import BEDROCK, check_history, check_names

WIRE_FORMAT = "bedrock"
STOP_SEQUENCE_PATH = "/stop_sequence"
"""The JSON pointer of Claude's ``stop_sequence`` among ``additionalModelResponseFields``."""
_RESPONSE_PATHS = "additionalModelResponseFieldPaths"

# Objects the codec reads some fields of; the fields it does not read are kept in ``extra``
# under the object's own name and merged back on the way out.
_INFERENCE_KEYS = frozenset({"maxTokens", "temperature", "topP", "stopSequences"})
_TOOL_CONFIG_KEYS = frozenset({"tools", "toolChoice"})
_OUTPUT_KEYS = frozenset({"textFormat"})
_MODEL_FIELD_KEYS = frozenset({"thinking", "top_k"})
_MODELLED = frozenset(
    {
        "messages", "system", "inferenceConfig", "toolConfig", "outputConfig",
        "additionalModelRequestFields",
    }
)  # fmt: skip
_TOOL_SPEC_KEYS = frozenset({"name", "description", "inputSchema", "strict"})
_ToolMode = Literal["auto", "none", "required", "function"]
_TOOL_CHOICES: dict[str, _ToolMode] = {"auto": "auto", "any": "required", "tool": "function"}


def request_from_wire(body: dict[str, Any], model: str, *, stream: bool = False) -> ChatRequest:
    """Parse and validate a Converse body addressed to ``model`` (from the URL)."""
    messages = required(body, "messages", list)
    if not messages:
        raise InvalidRequest("'messages' must contain at least one message", param="messages")
    extra = {k: v for k, v in body.items() if k not in _MODELLED}
    inference = _sub_object(body, "inferenceConfig", _INFERENCE_KEYS, extra)
    tool_config = _sub_object(body, "toolConfig", _TOOL_CONFIG_KEYS, extra)
    output = _sub_object(body, "outputConfig", _OUTPUT_KEYS, extra)
    model_fields = _sub_object(body, "additionalModelRequestFields", _MODEL_FIELD_KEYS, extra)
    max_tokens = optional(inference, "maxTokens", int, "inferenceConfig.maxTokens")
    if max_tokens is not None and max_tokens < 1:
        raise InvalidRequest(
            "'inferenceConfig.maxTokens' must be at least 1", param="inferenceConfig.maxTokens"
        )
    return ChatRequest(
        model=model,
        messages=_system_from_wire(body.get("system")) + _messages_from_wire(messages),
        stream=stream,
        include_usage=True,  # Converse streams always end with a metadata event
        max_tokens=max_tokens,
        temperature=number(inference, "temperature", "inferenceConfig.temperature"),
        top_p=number(inference, "topP", "inferenceConfig.topP"),
        top_k=optional(model_fields, "top_k", int, "additionalModelRequestFields.top_k"),
        stop=_stop_from_wire(inference.get("stopSequences")),
        tools=_tools_from_wire(tool_config.get("tools")),
        tool_choice=_tool_choice_from_wire(tool_config.get("toolChoice")),
        response_format=_text_format_from_wire(output.get("textFormat")),
        extra=extra,
        wire_format=WIRE_FORMAT,
        thinking=optional(model_fields, "thinking", dict, "additionalModelRequestFields.thinking"),
    )


def request_to_wire(
    request: ChatRequest, family: BedrockFamily = UNKNOWN, betas: Sequence[str] = ()
) -> dict[str, Any]:
    """The upstream Converse body for ``request`` to a model of ``family`` (the model goes in
    the URL); ``betas``: the Anthropic betas the client asked for (``anthropic-beta``)."""
    # Thinking turned off crosses as absent: only Claude knows the field.
    effort_asked = request.extra.get(EFFORT) not in (None, "none")
    reasoning_config = None
    if family.reasoning_levels:  # Nova 2's own reasoningConfig, for either client's effort
        request, reasoning_config = reasoning_config_for_effort(request)
    request = thinking_for_effort(request)
    thinking = request.thinking
    foreign = request.wire_format != WIRE_FORMAT
    # An Anthropic client's format has no strict to turn off: its 400 does not offer it.
    loosable = request.wire_format != ANTHROPIC_FORMAT
    if (foreign or not family.claude_fields) and not asks_for_thinking(request):
        thinking = None
    if family.claude_fields:  # Claude's own output_config.effort (others: request_for's 400)
        request, output_effort = take_output_effort(request)
    else:
        output_effort = None
    request = request_for(request, WIRE_FORMAT)
    if request.n is not None and request.n > 1:
        raise InvalidRequest("'n' greater than 1 is not supported by Bedrock models", param="n")
    check_temperature(request)
    model_fields = _model_fields(request, family, thinking, betas, effort_asked)
    if output_effort is not None:
        model_fields["output_config"] = {"effort": output_effort}
    if reasoning_config is not None:
        model_fields["reasoningConfig"] = reasoning_config
    body: dict[str, Any] = dict(request.extra)
    fmt = request.response_format
    system = _system_to_wire(request.messages, fmt is not None and fmt.type == "json_object")
    if system:
        body["system"] = system
    turns = _messages_to_wire(request.messages)
    tool_config = _tool_config_to_wire(request, foreign)
    if not tool_config and "toolConfig" not in body:
        # Converse refuses toolUse / toolResult blocks in a conversation sent without
        # toolConfig, and has no choice "none": with no tool offered, the calls and results
        # of the conversation are said in words (the surest way to get no call).
        turns = [{**turn, "content": tool_blocks_as_text(turn["content"])} for turn in turns]
    else:  # the calls go as toolUse blocks, whose names Converse checks as a tool's
        check_history(request.messages, BEDROCK)
    if foreign:  # (a Converse client's documents are named as it named them)
        named_apart(turns)
    body["messages"] = turns
    _merge(body, "inferenceConfig", _inference_to_wire(request))
    _merge(body, "toolConfig", tool_config)
    if fmt is not None and fmt.type == "json_schema":
        _merge(body, "outputConfig", {"textFormat": _text_format_to_wire(fmt, foreign, loosable)})
    if family is CLAUDE and request.parallel_tool_calls is False:
        model_fields |= _one_call_at_a_time(body.get("toolConfig"))
    _merge(body, "additionalModelRequestFields", model_fields)
    if foreign and request.stop and family.claude_fields:
        # (A Converse client's own body is sent as it asked.)
        body[_RESPONSE_PATHS] = [STOP_SEQUENCE_PATH]
    return fitted(body, family)


def _model_fields(
    request: ChatRequest,
    family: BedrockFamily,
    thinking: dict[str, Any] | None,
    betas: Sequence[str],
    effort_asked: bool,
) -> dict[str, Any]:
    """``additionalModelRequestFields`` for what the client asked of the model's own request:
    thinking, ``top_k``, betas; a 400 naming what ``family`` does not take."""
    fields: dict[str, Any] = {}
    if thinking is not None:
        if not family.claude_fields:
            param = EFFORT if effort_asked else "thinking"
            raise InvalidRequest(
                f"'{param}' (extended thinking) is Claude's; {family.name} models on Bedrock "
                "do not take it",
                param=param,
            )
        fields["thinking"] = thinking
    if request.top_k is not None:
        if family.top_k is None:
            raise InvalidRequest(
                f"'top_k' is not supported by {family.name} models on Bedrock", param="top_k"
            )
        fields |= family.top_k(request.top_k)
    if betas:
        if not family.claude_fields:
            raise InvalidRequest(
                f"the anthropic-beta header ({', '.join(betas)}) asks for Claude's betas; "
                f"{family.name} models on Bedrock do not take them",
                param="anthropic-beta",
            )
        fields["anthropic_beta"] = list(betas)
    return fields


def _sub_object(
    body: dict[str, Any], key: str, known: frozenset[str], extra: dict[str, Any]
) -> dict[str, Any]:
    value = optional(body, key, dict) or {}
    if rest := {k: v for k, v in value.items() if k not in known}:
        extra[key] = rest
    return value


def _merge(body: dict[str, Any], key: str, fields: dict[str, Any]) -> None:
    if fields:
        body[key] = {**(body.get(key) or {}), **fields}


def _stop_from_wire(raw: Any) -> list[str] | None:
    if raw is None:
        return None
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        return list(raw)
    param = "inferenceConfig.stopSequences"
    raise InvalidRequest(f"'{param}' must be an array of strings", param=param)


def _system_from_wire(raw: Any) -> list[Message]:
    if raw is None:
        return []
    system = blocks(raw, "system")
    parts = [part_from_wire(block, f"system[{i}]") for i, block in enumerate(system)]
    return [Message(role="system", content=parts)]


def _messages_from_wire(raw: list[Any]) -> list[Message]:
    messages: list[Message] = []
    for index, item in enumerate(raw):
        param = f"messages[{index}]"
        obj = json_object(item, param)
        role = required(obj, "role", str, f"{param}.role")
        content = obj.get("content")
        if role == "assistant":
            messages.append(assistant_from_wire(content, f"{param}.content"))
        elif role == "user":
            messages.extend(user_from_wire(content, f"{param}.content"))
        else:
            raise InvalidRequest(
                f"'{param}.role' must be 'user' or 'assistant', not {role!r}",
                param=f"{param}.role",
            )
    return messages


def _tools_from_wire(raw: Any) -> list[Tool] | None:
    if raw is None:
        return None
    tools = []
    for index, entry in enumerate(blocks(raw, "toolConfig.tools")):
        param = f"toolConfig.tools[{index}]"
        kind = kind_of(entry)
        if kind != "toolSpec":  # cache points and system tools, kept as sent
            tools.append(Tool(name=kind, extra={"type": kind, **entry}))
            continue
        spec = json_object(entry["toolSpec"], f"{param}.toolSpec")
        schema = json_object(spec.get("inputSchema"), f"{param}.toolSpec.inputSchema")
        tools.append(
            Tool(
                name=required(spec, "name", str, f"{param}.toolSpec.name"),
                description=optional(spec, "description", str, f"{param}.toolSpec.description"),
                parameters=json_object(schema.get("json"), f"{param}.toolSpec.inputSchema.json"),
                strict=optional(spec, "strict", bool, f"{param}.toolSpec.strict"),
                extra={k: v for k, v in spec.items() if k not in _TOOL_SPEC_KEYS},
            )
        )
    return tools


def _tool_choice_from_wire(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    choice = json_object(raw, "toolConfig.toolChoice")
    kind = kind_of(choice)
    if kind not in _TOOL_CHOICES:
        param = "toolConfig.toolChoice"
        raise InvalidRequest(f"'{param}' must be one of auto, any or tool", param=param)
    name = None
    if kind == "tool":
        specific = json_object(choice["tool"], "toolConfig.toolChoice.tool")
        name = required(specific, "name", str, "toolConfig.toolChoice.tool.name")
    return ToolChoice(mode=_TOOL_CHOICES[kind], name=name)


def _text_format_from_wire(raw: Any) -> ResponseFormat | None:
    if raw is None:
        return None
    param = "outputConfig.textFormat.structure.jsonSchema"
    text_format = json_object(raw, "outputConfig.textFormat")
    structure = json_object(text_format.get("structure"), "outputConfig.textFormat.structure")
    definition = json_object(structure.get("jsonSchema"), param)
    try:
        schema = orjson.loads(required(definition, "schema", str, f"{param}.schema"))
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            f"'{param}.schema' must be JSON text", param=f"{param}.schema"
        ) from None
    json_schema = {**definition, "name": definition.get("name") or "response", "schema": schema}
    return ResponseFormat(type="json_schema", json_schema=json_schema)


def _system_to_wire(messages: list[Message], json_object: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if message.role not in ("system", "developer"):
            continue
        content = message.content
        # Converse's system blocks are text (a Converse client's guard content and cache
        # points are its own, kept as sent): no image, no document.
        if isinstance(content, list) and any(
            isinstance(p, (ImagePart, DocumentPart)) for p in content
        ):
            raise InvalidRequest(
                "system messages can only hold text for Bedrock models",
                param=f"messages[{index}].content",
            )
        out.extend(content_blocks(content, f"messages[{index}].content"))
    if json_object:
        out.append({"text": JSON_OBJECT_INSTRUCTION})
    return out


def _messages_to_wire(messages: list[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if message.role in ("system", "developer"):
            continue
        if message.role == "assistant":
            # Only Claude's signed reasoning is sent: Claude would refuse any other.
            replayed = without_parts(message, lambda part: part.signer == "claude")
            role, turn = "assistant", assistant_blocks(replayed, param)
            if not turn:
                # Nothing but blank text: Bedrock refuses a turn without content, and the
                # turn says nothing, so it is left out (the user turns around it join).
                continue
        elif message.role == "tool":
            role, turn = "user", [tool_result_to_wire(message, param), *cache_point(message.extra)]
        else:
            role, turn = "user", content_blocks(message.content, f"{param}.content")
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(turn)
        else:
            out.append({"role": role, "content": turn})
    return out


def _inference_to_wire(request: ChatRequest) -> dict[str, Any]:
    fields = {
        "maxTokens": request.max_tokens,
        "temperature": request.temperature,
        "topP": request.top_p,
        "stopSequences": request.stop,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _tool_config_to_wire(request: ChatRequest, foreign: bool) -> dict[str, Any]:
    """``toolConfig``; ``foreign``: the request is another format's, whose tools' schemas may
    leave out what Converse requires."""
    choice = request.tool_choice
    if not request.tools or (choice is not None and choice.mode == "none"):
        return {}  # no tools offered: the surest way to get none called
    check_names(request.tools, BEDROCK, _is_tool_spec)
    tools = [block for tool in request.tools for block in _tool_to_wire(tool, foreign)]
    out: dict[str, Any] = {"tools": tools}
    if choice is not None and choice.mode == "function":
        out["toolChoice"] = {"tool": {"name": choice.name}}
    elif choice is not None and choice.mode in ("auto", "required"):
        out["toolChoice"] = {"auto": {}} if choice.mode == "auto" else {"any": {}}
    return out


def _one_call_at_a_time(tool_config: dict[str, Any] | None) -> dict[str, Any]:
    """Claude's ``tool_choice.disable_parallel_tool_use``, for tools sent with a choice that
    lets the model call one. Bedrock makes ``toolConfig.toolChoice`` Claude's ``tool_choice``
    and merges this field into it: beside a ``toolChoice`` it may not say the choice's
    ``type`` again (a 400: it "conflicts with the existing field"), and without one it must
    (``auto``, the default)."""
    if not tool_config or not tool_config.get("tools"):
        return {}
    if "toolChoice" in tool_config:
        return {"tool_choice": {"disable_parallel_tool_use": True}}
    return {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}


def _is_tool_spec(tool: Tool) -> bool:
    """Whether ``tool`` is sent as a ``toolSpec`` (not a cache point or system tool)."""
    kind = tool.extra.get("type")
    return kind is None or kind not in tool.extra


def _tool_to_wire(tool: Tool, foreign: bool = False) -> list[dict[str, Any]]:
    """The tool's entry, and a cache point after it when a cache hint marks it."""
    if not _is_tool_spec(tool):  # a cache point or system tool, as it came
        kind = tool.extra["type"]
        return [{kind: tool.extra[kind]}]
    spec: dict[str, Any] = {k: v for k, v in without_hint(tool.extra).items() if k != "type"}
    spec["name"] = tool.name
    if tool.description is not None:
        spec["description"] = tool.description
    schema = tool.parameters if tool.parameters is not None else {"type": "object"}
    if foreign and "type" not in schema:
        # OpenAI and Gemini take a function's parameters without their "type"; Converse
        # refuses an inputSchema that does not say it is an object.
        schema = {"type": "object", **schema}
    spec["inputSchema"] = {"json": schema}
    if tool.strict is not None:
        spec["strict"] = tool.strict
    return [{"toolSpec": spec}, *cache_point(tool.extra)]


def _text_format_to_wire(fmt: ResponseFormat, foreign: bool, loosable: bool) -> dict[str, Any]:
    """``outputConfig.textFormat``; ``foreign``: another format's schema, whose objects are
    closed as Bedrock requires; ``loosable``: its format has a ``strict`` to turn off."""
    definition = dict(fmt.json_schema or {})
    # Converse has no such field; its output always conforms
    strict = definition.pop("strict", None) is True
    schema = definition.get("schema") or {"type": "object"}
    if foreign:
        schema = claude_schema(schema, strict, "Bedrock", loosable)
    definition["schema"] = orjson.dumps(schema).decode()
    definition.setdefault("name", "response")
    return {"type": "json_schema", "structure": {"jsonSchema": definition}}
