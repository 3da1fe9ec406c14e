"""Amazon Bedrock Converse API: ``/model/{modelId}/converse`` and ``.../converse-stream``.

Answers follow the Converse API reference: ``output.message``, ``stopReason``, ``usage``
(``inputTokens``, ``outputTokens``, ``totalTokens``) and ``metrics.latencyMs``. Streams are
AWS event streams of ``messageStart``, then per content block ``contentBlockStart`` (tool use
only; text blocks have none) / ``contentBlockDelta``s / ``contentBlockStop``, then
``messageStop`` and ``metadata``, each payload padded with a ``p`` field as Bedrock does
(``x-sim-events`` reorders or leaves out the last two).
Requests are validated as Bedrock does the common mistakes: a first turn that is not the
user's, turns that do not alternate, blank text, tool blocks without ``toolConfig``, tool
calls and results that do not pair up (``bedrock_tool_pairs``), images and documents Bedrock
refuses, two documents of one name among them, a system block other than text
(``bedrock_media``), a tool whose
``inputSchema.json`` does not say ``"type": "object"``, a structured output schema with an
object that does not say ``"additionalProperties": false``.

Prompt caching: a request holding a ``cachePoint`` block (in ``system``, a message or
``toolConfig.tools``; ``type`` ``default``, an optional ``ttl`` of ``5m`` or ``1h``, else a
``ValidationException``) reports its whole prompt as written to the cache
(``cacheWriteInputTokens``, ``inputTokens`` 0), at the longest ``ttl`` its points name
(``cacheDetails``: ``[{"ttl": "1h", "inputTokens": N}]``, as Bedrock splits writes by time to
live). The simulator keeps no cache: ``x-sim-cached-tokens`` says how much of the prompt was
read from it (``cacheReadInputTokens``), ``x-sim-cache-write-tokens`` how much was written;
``inputTokens`` is the rest (``prompt_cache.py``), streamed in the ``metadata`` event. Without
a cache point or those knobs there are no cache counts, as Bedrock answers.

``additionalModelResponseFieldPaths`` naming ``/stop_sequence`` (Claude's own response field)
gets ``additionalModelResponseFields: {"stop_sequence": ...}``, the sequence the answer stopped
at or null, on the answer or its ``messageStop``, as Claude on Bedrock answers it.

Citations: a plain-text ``document`` with ``citations: {"enabled": true}`` is quoted in a
``citationsContent`` block (``bedrock_citations``).

Model families, by the model id (``anthropic.claude`` in it: Claude; ``amazon.nova``: Nova;
an ARN naming no model, by its own id's start: ``application-inference-profile/claude-...``):
``additionalModelRequestFields`` a family does not take (Claude's ``thinking``, ``top_k``,
``anthropic_beta``, which must be a list of strings; Nova's ``inferenceConfig``) is the
model's ``ValidationException``, and so are a cache point or a tool result's ``status`` for a
model other than Claude or Nova (``check_model_fields``).

Extended thinking, as Claude on Bedrock does it: ``additionalModelRequestFields.thinking``
(``{"type": "enabled", "budget_tokens": N}``, N at least 1,024 and below ``maxTokens``, or
``adaptive``) makes the answer open with a ``reasoningContent`` block (its ``reasoningText``
signed: ``signature``), then a ``redactedContent`` one when the prompt says "redacted";
streamed as ``reasoningContent`` deltas (text per token, then the signature; the redacted
data whole), each block closed by its ``contentBlockStop``. Reasoning sent back in an
assistant turn must be as it was given (a signature that does not match its text, or redacted
data the simulator did not give, is Claude's 400), and with thinking on, the assistant turn
whose tool calls the request answers must start with its reasoning, as Claude requires.
Nova 2's ``reasoningConfig`` (``bedrock_nova``) makes the answer open with an unsigned
``reasoningContent`` block (no signature delta in a stream), and holds it to no such rule.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import orjson
from aiohttp import web

from tollway.simulator import eventstream
from tollway.simulator.bedrock_citations import block_deltas, cited_blocks
from tollway.simulator.bedrock_media import check_media, check_system
from tollway.simulator.bedrock_nova import REASONING_CONFIG, nova_reasoning, reasons_by_level
from tollway.simulator.bedrock_tool_pairs import check_tool_pairs
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
    word_count,
)
from tollway.simulator.errors import Dialect, json_response, request_id_header
from tollway.simulator.exchange import Call, StreamParts, delay, send_stream
from tollway.simulator.prompt_cache import PromptCache, prompt_cache
from tollway.simulator.state import SimulatorState
from tollway.simulator.tool_names import check_bedrock, check_bedrock_use

STREAM_HEADERS = {"Content-Type": eventstream.CONTENT_TYPE}
_STOP_REASON = {
    "stop": "end_turn",
    "length": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_calls": "tool_use",
}
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGH"
_MEDIA_BLOCKS = ("image", "document", "video")
_MOST_STOPS = 2500
"""The most ``inferenceConfig.stopSequences`` Converse takes (more: its ValidationException)."""
REDACTED_THINKING = base64.b64encode(b"tollway simulated redacted thinking").decode()
"""The ``redactedContent`` the simulator gives (the base64 text its JSON carries)."""
_REDACTED = re.compile(r"\bredacted\b", re.IGNORECASE)
_MIN_BUDGET = 1024
_MODEL_FIELDS = {
    "claude": frozenset({"thinking", "top_k", "anthropic_beta", "tool_choice", "output_config"}),
    "nova": frozenset({"inferenceConfig", "reasoningConfig"}),
    "other": frozenset(),
}
"""The ``additionalModelRequestFields`` each family of models takes (the others are the
model's 400)."""


def thinking_signature(text: str) -> str:
    """The signature the simulator gives reasoning ``text`` (and checks when it comes back)."""
    digest = hashlib.sha256(b"tollway-sim-thinking\0" + text.encode()).digest()
    return base64.b64encode(digest).decode()


def _blocks_text(content: Any, param: str) -> tuple[str, str | None, int, bool]:
    """Text, tool-result text (None without results), tokens, and whether tools are used."""
    if not isinstance(content, list) or not content:
        raise InvalidRequest(f"{param} must be a non-empty list of content blocks", param)
    texts: list[str] = []
    results: list[str] | None = None
    tokens = 0
    uses_tools = False
    for index, block in enumerate(content):
        if not isinstance(block, dict):
            raise InvalidRequest(f"{param}.{index} must be an object", param)
        if isinstance(block.get("text"), str):
            if not block["text"].strip():
                raise InvalidRequest(
                    f"The text field in the ContentBlock object at {param}.{index} is blank. "
                    "Add text to the text field, and try again.",
                    param,
                )
            texts.append(block["text"])
            tokens += word_count(block["text"])
        elif any(kind in block for kind in _MEDIA_BLOCKS):
            tokens += IMAGE_TOKENS
        elif isinstance(block.get("toolUse"), dict):
            _check_call_id(block["toolUse"], f"{param}.{index}.toolUse")
            uses_tools = True
            tokens += word_count(orjson.dumps(block["toolUse"].get("input", {})).decode())
        elif isinstance(block.get("toolResult"), dict):
            _check_call_id(block["toolResult"], f"{param}.{index}.toolResult")
            uses_tools = True
            text = _result_text(block["toolResult"].get("content"))
            results = [*(results or []), text]
            tokens += word_count(text)
    return " ".join(texts), None if results is None else " ".join(results), tokens, uses_tools


_CALL_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def _check_call_id(block: dict[str, Any], param: str) -> None:
    """Converse's constraint on a ``toolUseId``, in Bedrock's words."""
    value = block.get("toolUseId")
    if isinstance(value, str) and not _CALL_ID.fullmatch(value):
        raise InvalidRequest(
            f"1 validation error detected: Value at '{param}.toolUseId' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+ and "
            "have length less than or equal to 64",
            "toolUseId",
        )


def _result_text(content: Any) -> str:
    parts: list[str] = []
    for block in content if isinstance(content, list) else ():
        if isinstance(block, dict) and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif isinstance(block, dict) and "json" in block:
            parts.append(orjson.dumps(block["json"]).decode())
    return " ".join(parts)


def _system_tokens(system: Any) -> int:
    if not isinstance(system, list):
        return 0
    words = sum(word_count(b["text"]) for b in system if isinstance(b, dict) and "text" in b)
    return MESSAGE_OVERHEAD + words if words else 0


def _check_turns(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must contain at least one message", "messages")
    previous = None
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise InvalidRequest("each message needs role user or assistant", "messages")
        if previous is None and role != "user":
            raise InvalidRequest(
                "A conversation must start with a user message. Try again with a conversation "
                "that starts with a user message.",
                "messages",
            )
        if role == previous:
            raise InvalidRequest(
                "A conversation must alternate between user and assistant roles. Make sure the "
                "conversation alternates between user and assistant roles and try again.",
                "messages",
            )
        previous = role
    return messages


def _tools(body: dict[str, Any]) -> tuple[list[ToolSpec], Any]:
    config = body.get("toolConfig")
    if not isinstance(config, dict):
        return [], None
    specs = []
    for index, tool in enumerate(config.get("tools") or ()):
        spec = tool.get("toolSpec") if isinstance(tool, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            check_bedrock(spec["name"], index)
            schema = (spec.get("inputSchema") or {}).get("json")
            if isinstance(schema, dict) and schema.get("type") != "object":
                param = f"toolConfig.tools.{index}.toolSpec.inputSchema.json.type"
                raise InvalidRequest(
                    f"The value at {param} must be one of the following: object.", param
                )
            specs.append(ToolSpec(spec["name"], schema if isinstance(schema, dict) else None))
    return specs, config.get("toolChoice")


def _apply_tool_choice(prompt: Prompt, choice: Any) -> None:
    if not isinstance(choice, dict):
        return
    if "any" in choice:
        prompt.tool_mode = "required"
    elif isinstance(choice.get("tool"), dict) and isinstance(choice["tool"].get("name"), str):
        prompt.forced_tool = choice["tool"]["name"]


def _claude_tool_choice(body: dict[str, Any], choice: Any) -> bool:
    """Whether Claude's own ``tool_choice`` (``additionalModelRequestFields``) turns parallel
    calls off, checked as Bedrock merges it into ``toolConfig.toolChoice``: its ``type``
    conflicts with a ``toolChoice``, and is required without one."""
    fields = body.get("additionalModelRequestFields")
    extra = fields.get("tool_choice") if isinstance(fields, dict) else None
    if extra is None:
        return False
    if not isinstance(extra, dict):
        raise InvalidRequest("tool_choice: Input should be an object", "tool_choice")
    if "type" in extra and choice is not None:
        kind = next(iter(choice), "") if isinstance(choice, dict) else ""
        raise InvalidRequest(
            f"The additional field tool_choice/type conflicts with the existing field "
            f"toolConfig.toolChoice.{kind}. Remove tool_choice/type and try again.",
            "tool_choice",
        )
    if "type" not in extra and choice is None:
        raise InvalidRequest("tool_choice.type: Field required", "tool_choice")
    return extra.get("disable_parallel_tool_use") is True


def _output_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    try:
        text = body["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["schema"]
    except (KeyError, TypeError):
        return None
    try:
        schema = orjson.loads(text)
    except (orjson.JSONDecodeError, TypeError):
        raise InvalidRequest("the JSON schema of outputConfig.textFormat is invalid", "") from None
    check_closed(schema, "outputConfig.textFormat.structure.jsonSchema.schema")
    return schema if isinstance(schema, dict) else {}


def read_prompt(body: dict[str, Any], target_tokens: int) -> tuple[Prompt, int]:
    """Pull the generator's inputs and the input token count out of a Converse request."""
    messages = _check_turns(body.get("messages"))
    check_media(messages)
    check_system(body.get("system"))
    input_tokens = _system_tokens(body.get("system"))
    last_user, tool_result, uses_tools = "", None, False
    for index, message in enumerate(messages):
        text, tool_result, tokens, uses = _blocks_text(
            message.get("content"), f"messages.{index}.content"
        )
        for number, block in enumerate(message.get("content") or ()):
            use = block.get("toolUse")
            if isinstance(use, dict) and isinstance(use.get("name"), str):
                check_bedrock_use(use["name"], index, number)
        input_tokens += MESSAGE_OVERHEAD + tokens
        uses_tools = uses_tools or uses
        if message["role"] == "user" and tool_result is None:
            last_user = text
    tools, choice = _tools(body)
    if uses_tools and "toolConfig" not in body:
        raise InvalidRequest(
            "The toolConfig field must be defined when using toolUse and toolResult content "
            "blocks.",
            "toolConfig",
        )
    check_tool_pairs(messages)
    last_is_user = messages[-1]["role"] == "user"
    prompt = Prompt(
        last_user_text=last_user,
        tool_result_text=tool_result if last_is_user else None,
        last_is_user=last_is_user,
        tools=tools,
        target_tokens=target_tokens,
    )
    input_tokens += TOOL_TOKENS * len(tools)
    _apply_tool_choice(prompt, choice)
    if _claude_tool_choice(body, choice):
        prompt.parallel_tools = False
    prompt.json_schema = _output_schema(body)
    inference = body.get("inferenceConfig") or {}
    max_tokens = inference.get("maxTokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise InvalidRequest("inferenceConfig.maxTokens must be an integer >= 1", "maxTokens")
    prompt.max_tokens = max_tokens
    prompt.reasoning = _thinking(body, max_tokens)
    _check_reasoning(messages, prompt.reasoning)
    stops = inference.get("stopSequences")
    if isinstance(stops, list) and len(stops) > _MOST_STOPS:
        raise InvalidRequest(
            "1 validation error detected: Value at 'inferenceConfig.stopSequences' failed to "
            f"satisfy constraint: Member must have length less than or equal to {_MOST_STOPS}",
            "stopSequences",
        )
    prompt.stop = [s for s in stops if isinstance(s, str)] if isinstance(stops, list) else []
    return prompt, input_tokens


def _thinking(body: dict[str, Any], max_tokens: int | None) -> bool:
    """Whether ``additionalModelRequestFields.thinking`` turns thinking on (checked as
    Claude checks it)."""
    fields = body.get("additionalModelRequestFields")
    thinking = fields.get("thinking") if isinstance(fields, dict) else None
    return claude_thinking(thinking, max_tokens)


def claude_thinking(thinking: Any, max_tokens: int | None) -> bool:
    """Whether Claude's ``thinking`` field turns thinking on (checked as Claude checks it)."""
    if thinking is None:
        return False
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind in ("disabled", "adaptive"):
        return bool(kind == "adaptive")
    if kind != "enabled":
        raise InvalidRequest(
            "thinking.type must be 'enabled', 'disabled' or 'adaptive'", "thinking"
        )
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < _MIN_BUDGET:
        raise InvalidRequest(
            f"thinking.enabled.budget_tokens: must be an integer of at least {_MIN_BUDGET}",
            "thinking",
        )
    if max_tokens is not None and budget >= max_tokens:
        raise InvalidRequest("max_tokens must be greater than thinking.budget_tokens", "thinking")
    return True


def _check_reasoning(messages: list[dict[str, Any]], thinking: bool) -> None:
    """Reasoning given back must be as the simulator gave it; with thinking on, the turn whose
    tool calls the request answers must start with its reasoning."""
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        for position, block in enumerate(message["content"]):
            reasoning = block.get("reasoningContent") if isinstance(block, dict) else None
            if isinstance(reasoning, dict):
                _check_reasoning_block(reasoning, f"messages.{index}.content.{position}")
    if not thinking or len(messages) < 2:
        return
    last, answered = messages[-1], messages[-2]
    results = any(isinstance(b, dict) and "toolResult" in b for b in last["content"])
    if last["role"] == "user" and results and answered["role"] == "assistant":
        first = answered["content"][0]
        if not (isinstance(first, dict) and "reasoningContent" in first):
            found = next(iter(first), "nothing") if isinstance(first, dict) else "nothing"
            raise InvalidRequest(
                f"messages.{len(messages) - 2}.content.0.type: Expected thinking or "
                f"redacted_thinking, but found {found}. When thinking is enabled, a final "
                "assistant message must start with a thinking block.",
                "messages",
            )


def _check_reasoning_block(reasoning: dict[str, Any], where: str) -> None:
    if "redactedContent" in reasoning:
        if reasoning["redactedContent"] != REDACTED_THINKING:
            raise InvalidRequest(f"{where}: Invalid data in redacted_thinking block", "messages")
        return
    text = reasoning.get("reasoningText")
    if not isinstance(text, dict) or not isinstance(text.get("text"), str):
        raise InvalidRequest(f"{where}.reasoningContent: reasoningText.text is required", where)
    if text.get("signature") != thinking_signature(text["text"]):
        raise InvalidRequest(f"{where}: Invalid signature in thinking block", "messages")


def _reasoning_blocks(
    completion: Completion, redacted: bool, signed: bool = True
) -> list[dict[str, Any]]:
    """The answer's reasoning blocks; ``signed``: Claude's (Nova signs none)."""
    if not completion.reasoning:
        return []
    text = "".join(completion.reasoning)
    reasoning: dict[str, Any] = {"text": text}
    if signed:
        reasoning["signature"] = thinking_signature(text)
    blocks: list[dict[str, Any]] = [{"reasoningContent": {"reasoningText": reasoning}}]
    if redacted and signed:
        blocks.append({"reasoningContent": {"redactedContent": REDACTED_THINKING}})
    return blocks


def _family(model: str) -> str:
    """``claude``, ``nova`` or ``other``, as the model id names it (inference profiles too);
    an ARN naming no model (an application inference profile's, a provisioned model's) is the
    family its own id starts with (``.../application-inference-profile/claude-x``), as the
    simulator's stand-in for the model AWS knows behind it."""
    if "anthropic.claude" in model:
        return "claude"
    if "amazon.nova" in model:
        return "nova"
    resource = model.rsplit("/", 1)[-1]
    if model.startswith("arn:") and "." not in resource:
        return next((f for f in ("claude", "nova") if resource.startswith(f)), "other")
    return "other"


def check_model_fields(body: dict[str, Any], model: str) -> bool:
    """What only some models take, refused as those that do not take it refuse it: the
    model's own fields (Claude's ``thinking``, ``top_k``, ``anthropic_beta``; Nova's
    ``inferenceConfig``, Nova 2's ``reasoningConfig``), cache points (Claude and Nova) and a
    tool result's ``status``. Whether Nova 2's ``reasoningConfig`` turns reasoning on."""
    family = _family(model)
    fields = body.get("additionalModelRequestFields")
    known = _MODEL_FIELDS[family]
    if family == "nova" and not reasons_by_level(model):
        known = known - {REASONING_CONFIG}  # Nova's first models do not reason
    for key in fields if isinstance(fields, dict) else ():
        if key not in known:
            raise InvalidRequest(
                "The model returned the following errors: Malformed input request: "
                f"extraneous key [{key}] is not permitted, please reformat your input and "
                "try again.",
                "additionalModelRequestFields",
            )
    betas = fields.get("anthropic_beta") if isinstance(fields, dict) else None
    if betas is not None and not (
        isinstance(betas, list) and all(isinstance(b, str) for b in betas)
    ):
        raise InvalidRequest("anthropic_beta: Input should be a valid list", "anthropic_beta")
    if family == "other" and caches(body) is not None:
        raise InvalidRequest(
            f"You invoked an unsupported model or your request did not allow prompt caching. "
            f"The model {model} does not support prompt caching.",
            "cachePoint",
        )
    if family == "other" and _states_results(body.get("messages")):
        raise InvalidRequest(
            "This model doesn't support the toolResult.status field. Remove toolResult.status "
            "and try again.",
            "toolResult.status",
        )
    return family == "nova" and isinstance(fields, dict) and nova_reasoning(fields)


def _states_results(messages: Any) -> bool:
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else ():
            result = block.get("toolResult") if isinstance(block, dict) else None
            if isinstance(result, dict) and "status" in result:
                return True
    return False


def caches(body: dict[str, Any]) -> str | None:
    """The longest time to live of the request's cache points (each checked as Bedrock
    checks it); ``None`` when it holds none."""
    found: str | None = None
    messages = body.get("messages")
    config = body.get("toolConfig")
    lists = [body.get("system"), config.get("tools") if isinstance(config, dict) else None]
    for message in messages if isinstance(messages, list) else ():
        lists.append(message.get("content") if isinstance(message, dict) else None)
    for entries in lists:
        for block in entries if isinstance(entries, list) else ():
            if not isinstance(block, dict) or "cachePoint" not in block:
                continue
            point = block["cachePoint"]
            if not isinstance(point, dict) or point.get("type") != "default":
                raise InvalidRequest("cachePoint.type must be 'default'", "cachePoint")
            ttl = point.get("ttl", "5m")
            if ttl not in ("5m", "1h") or set(point) - {"type", "ttl"}:
                raise InvalidRequest("cachePoint: ttl must be '5m' or '1h'", "cachePoint")
            found = "1h" if "1h" in (ttl, found) else ttl
    return found


def _usage(
    input_tokens: int, output_tokens: int, cache: PromptCache, ttl: str | None
) -> dict[str, Any]:
    """A Converse usage object; ``input_tokens`` is the whole prompt, of which Bedrock's
    ``inputTokens`` says only what was neither read from nor written to the cache (its
    ``totalTokens`` counts them all). Cache counts only when the request used the cache."""
    usage: dict[str, Any] = {
        "inputTokens": input_tokens - cache.reads - cache.writes,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens,
    }
    if ttl is None and not cache.reads and not cache.writes:
        return usage
    usage["cacheReadInputTokens"] = cache.reads
    usage["cacheWriteInputTokens"] = cache.writes
    if cache.writes:
        usage["cacheDetails"] = [{"ttl": ttl or "5m", "inputTokens": cache.writes}]
    return usage


def _content(
    completion: Completion, redacted: bool, cited: list[dict[str, Any]] | None, signed: bool
) -> list[dict[str, Any]]:
    blocks = _reasoning_blocks(completion, redacted, signed)
    if cited is not None:
        blocks.extend(cited)
    elif completion.pieces:
        blocks.append({"text": completion.text})
    for call in completion.tool_calls:
        blocks.append({"toolUse": {"toolUseId": call.id, "name": call.name, "input": call.input()}})
    return blocks


async def handle_converse(
    request: web.Request, call: Call, state: SimulatorState, stream: bool
) -> web.StreamResponse:
    """Answer an admitted Converse (``stream``: ConverseStream) request."""
    nova_reasons = check_model_fields(call.body, request.match_info["model_id"])
    prompt, input_tokens = read_prompt(call.body, call.output_tokens)
    prompt.reasoning = prompt.reasoning or nova_reasons
    completion = complete(prompt, 0, lambda: state.new_id("tooluse_"))
    redacted = bool(_REDACTED.search(prompt.last_user_text))
    signed = not nova_reasons
    ttl = caches(call.body)
    cache = prompt_cache(call, input_tokens, ttl)
    usage = _usage(input_tokens, completion.output_tokens, cache, ttl)
    latency = {"latencyMs": int((call.ttft + completion.output_tokens * call.tpot) * 1000)}
    fields = _response_fields(call.body, completion)
    cited = None if completion.tool_calls else cited_blocks(call.body)
    if stream:
        headers = {**STREAM_HEADERS, request_id_header(Dialect.BEDROCK): call.request_id}
        parts = stream_parts(
            completion, usage, latency, call.finish_reason, redacted, fields, cited, signed
        )
        parts = _reordered(parts, call.events)
        return await send_stream(request, call, parts, headers)
    await delay(call, completion.output_tokens)
    content = _content(completion, redacted, cited, signed)
    answer = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": call.finish_reason or _STOP_REASON[completion.finish],
        "usage": usage,
        "metrics": latency,
        **fields,
    }
    return json_response(answer, call.request_id, Dialect.BEDROCK)


def _response_fields(body: dict[str, Any], completion: Completion) -> dict[str, Any]:
    """``additionalModelResponseFields`` when the request asks for Claude's ``stop_sequence``."""
    paths = body.get("additionalModelResponseFieldPaths")
    if not isinstance(paths, list) or "/stop_sequence" not in paths:
        return {}
    return {"additionalModelResponseFields": {"stop_sequence": completion.stop_sequence}}


def _reordered(parts: StreamParts, events: str | None) -> StreamParts:
    """``parts`` (ending ``messageStop``, ``metadata``) ended as ``x-sim-events`` asks."""
    if events is None:
        return parts
    *head, stop, metadata = parts
    if events == "metadata-first":
        return [*head, metadata, stop]
    return [*head, metadata] if events == "no-stop" else [*head, stop]


def _event(name: str, payload: dict[str, Any]) -> bytes:
    # Bedrock pads payloads (so their size does not tell the token); clients must ignore it.
    return eventstream.event(name, {**payload, "p": _PADDING})


def stream_parts(
    completion: Completion,
    usage: dict[str, Any],
    latency: dict[str, int],
    stop_reason: str | None = None,
    redacted: bool = False,
    fields: dict[str, Any] | None = None,
    cited: list[dict[str, Any]] | None = None,
    signed: bool = True,
) -> StreamParts:
    """Every message of a ConverseStream answer; content deltas are the token parts.
    ``stop_reason``: what ``messageStop`` says instead of the completion's own reason;
    ``redacted``: a redacted reasoning block follows the reasoning (if there is any);
    ``fields``: what ``messageStop`` adds (``additionalModelResponseFields``); ``cited``: the
    blocks of a cited answer, said instead of the completion's text; ``signed``: the reasoning
    ends with its signature (Claude's; Nova signs none)."""
    parts: StreamParts = [(_event("messageStart", {"role": "assistant"}), False)]
    index = 0
    for block in _reasoning_blocks(completion, redacted, signed):
        reasoning = block["reasoningContent"]
        if "redactedContent" in reasoning:
            deltas = [(reasoning, False)]
        else:
            said = reasoning["reasoningText"]
            deltas = [({"text": piece}, True) for piece in completion.reasoning]
            if "signature" in said:
                deltas.append(({"signature": said["signature"]}, False))
        for delta, is_token in deltas:
            event = {"contentBlockIndex": index, "delta": {"reasoningContent": delta}}
            parts.append((_event("contentBlockDelta", event), is_token))
        parts.append((_event("contentBlockStop", {"contentBlockIndex": index}), False))
        index += 1
    text_blocks: list[list[dict[str, Any]]] = (
        [[{"text": piece} for piece in completion.pieces]] if completion.pieces else []
    )
    if cited is not None:
        text_blocks = [block_deltas(block) for block in cited]
    for block_delta in text_blocks:
        for text_delta in block_delta:
            event = {"contentBlockIndex": index, "delta": text_delta}
            parts.append((_event("contentBlockDelta", event), "text" in text_delta))
        parts.append((_event("contentBlockStop", {"contentBlockIndex": index}), False))
        index += 1
    for tool_call in completion.tool_calls:
        use = {"toolUseId": tool_call.id, "name": tool_call.name}
        start = {"contentBlockIndex": index, "start": {"toolUse": use}}
        parts.append((_event("contentBlockStart", start), False))
        # A call without arguments streams its input as one empty fragment, as Claude on
        # Bedrock streams it (Anthropic's empty partial_json).
        fragments = [""] if tool_call.input() == {} else tool_call.fragments
        for fragment in fragments:
            delta = {"contentBlockIndex": index, "delta": {"toolUse": {"input": fragment}}}
            parts.append((_event("contentBlockDelta", delta), True))
        parts.append((_event("contentBlockStop", {"contentBlockIndex": index}), False))
        index += 1
    stop = {"stopReason": stop_reason or _STOP_REASON[completion.finish], **(fields or {})}
    parts.append((_event("messageStop", stop), False))
    parts.append((_event("metadata", {"usage": usage, "metrics": latency}), False))
    return parts
