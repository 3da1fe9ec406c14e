"""Amazon Bedrock Converse API: ``/model/{modelId}/converse`` and ``.../converse-stream``.

Answers follow the Converse API reference: ``output.message``, ``stopReason``, ``usage``
(``inputTokens``, ``outputTokens``, ``totalTokens``; no cache counts, as without prompt
caching) and ``metrics.latencyMs``. Streams are AWS event streams of ``messageStart``, then
per content block ``contentBlockStart`` (tool use only; text blocks have none) /
``contentBlockDelta``s / ``contentBlockStop``, then ``messageStop`` and ``metadata``, each
payload padded with a ``p`` field as Bedrock does. Requests are validated as Bedrock does the
common mistakes: a first turn that is not the user's, turns that do not alternate, blank text,
tool blocks without ``toolConfig``.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from tollway.simulator import eventstream
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
from tollway.simulator.errors import Dialect, json_response, request_id_header
from tollway.simulator.exchange import Call, StreamParts, delay, send_stream
from tollway.simulator.state import SimulatorState

STREAM_HEADERS = {"Content-Type": eventstream.CONTENT_TYPE}
_STOP_REASON = {
    "stop": "end_turn",
    "length": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_calls": "tool_use",
}
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGH"
_MEDIA_BLOCKS = ("image", "document", "video")


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
            uses_tools = True
            tokens += word_count(orjson.dumps(block["toolUse"].get("input", {})).decode())
        elif isinstance(block.get("toolResult"), dict):
            uses_tools = True
            text = _result_text(block["toolResult"].get("content"))
            results = [*(results or []), text]
            tokens += word_count(text)
    return " ".join(texts), None if results is None else " ".join(results), tokens, uses_tools


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
    for tool in config.get("tools") or ():
        spec = tool.get("toolSpec") if isinstance(tool, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            schema = (spec.get("inputSchema") or {}).get("json")
            specs.append(ToolSpec(spec["name"], schema if isinstance(schema, dict) else None))
    return specs, config.get("toolChoice")


def _apply_tool_choice(prompt: Prompt, choice: Any) -> None:
    if not isinstance(choice, dict):
        return
    if "any" in choice:
        prompt.tool_mode = "required"
    elif isinstance(choice.get("tool"), dict) and isinstance(choice["tool"].get("name"), str):
        prompt.forced_tool = choice["tool"]["name"]


def _output_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    try:
        text = body["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["schema"]
    except (KeyError, TypeError):
        return None
    try:
        schema = orjson.loads(text)
    except (orjson.JSONDecodeError, TypeError):
        raise InvalidRequest("the JSON schema of outputConfig.textFormat is invalid", "") from None
    return schema if isinstance(schema, dict) else {}


def read_prompt(body: dict[str, Any], target_tokens: int) -> tuple[Prompt, int]:
    """Pull the generator's inputs and the input token count out of a Converse request."""
    messages = _check_turns(body.get("messages"))
    input_tokens = _system_tokens(body.get("system"))
    last_user, tool_result, uses_tools = "", None, False
    for index, message in enumerate(messages):
        text, tool_result, tokens, uses = _blocks_text(
            message.get("content"), f"messages.{index}.content"
        )
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
    prompt.json_schema = _output_schema(body)
    inference = body.get("inferenceConfig") or {}
    max_tokens = inference.get("maxTokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise InvalidRequest("inferenceConfig.maxTokens must be an integer >= 1", "maxTokens")
    prompt.max_tokens = max_tokens
    stops = inference.get("stopSequences")
    prompt.stop = [s for s in stops if isinstance(s, str)] if isinstance(stops, list) else []
    return prompt, input_tokens


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens,
    }


def _content(completion: Completion) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if completion.pieces:
        blocks.append({"text": completion.text})
    for call in completion.tool_calls:
        blocks.append({"toolUse": {"toolUseId": call.id, "name": call.name, "input": call.input()}})
    return blocks


async def handle_converse(
    request: web.Request, call: Call, state: SimulatorState, stream: bool
) -> web.StreamResponse:
    """Answer an admitted Converse (``stream``: ConverseStream) request."""
    prompt, input_tokens = read_prompt(call.body, call.output_tokens)
    completion = complete(prompt, 0, lambda: state.new_id("tooluse_"))
    usage = _usage(input_tokens, completion.output_tokens)
    latency = {"latencyMs": int((call.ttft + completion.output_tokens * call.tpot) * 1000)}
    if stream:
        headers = {**STREAM_HEADERS, request_id_header(Dialect.BEDROCK): call.request_id}
        parts = stream_parts(completion, usage, latency, call.finish_reason)
        return await send_stream(request, call, parts, headers)
    await delay(call, completion.output_tokens)
    answer = {
        "output": {"message": {"role": "assistant", "content": _content(completion)}},
        "stopReason": call.finish_reason or _STOP_REASON[completion.finish],
        "usage": usage,
        "metrics": latency,
    }
    return json_response(answer, call.request_id, Dialect.BEDROCK)


def _event(name: str, payload: dict[str, Any]) -> bytes:
    # Bedrock pads payloads (so their size does not tell the token); clients must ignore it.
    return eventstream.event(name, {**payload, "p": _PADDING})


def stream_parts(
    completion: Completion,
    usage: dict[str, int],
    latency: dict[str, int],
    stop_reason: str | None = None,
) -> StreamParts:
    """Every message of a ConverseStream answer; content deltas are the token parts.
    ``stop_reason``: what ``messageStop`` says instead of the completion's own reason."""
    parts: StreamParts = [(_event("messageStart", {"role": "assistant"}), False)]
    index = 0
    if completion.pieces:
        for piece in completion.pieces:
            delta = {"contentBlockIndex": index, "delta": {"text": piece}}
            parts.append((_event("contentBlockDelta", delta), True))
        parts.append((_event("contentBlockStop", {"contentBlockIndex": index}), False))
        index += 1
    for tool_call in completion.tool_calls:
        use = {"toolUseId": tool_call.id, "name": tool_call.name}
        start = {"contentBlockIndex": index, "start": {"toolUse": use}}
        parts.append((_event("contentBlockStart", start), False))
        for fragment in tool_call.fragments:
            delta = {"contentBlockIndex": index, "delta": {"toolUse": {"input": fragment}}}
            parts.append((_event("contentBlockDelta", delta), True))
        parts.append((_event("contentBlockStop", {"contentBlockIndex": index}), False))
        index += 1
    stop = {"stopReason": stop_reason or _STOP_REASON[completion.finish]}
    parts.append((_event("messageStop", stop), False))
    parts.append((_event("metadata", {"usage": usage, "metrics": latency}), False))
    return parts
