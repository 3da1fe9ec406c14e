"""A field named in Chat Completions terms, as the Anthropic client sent it.

What refuses an Anthropic client's request after the parse (a provider's codec: Bedrock's Claude
refusing a schema keyword, ``claude_schema``) names the canonical request's fields, which are
Chat Completions': ``response_format.json_schema.schema``. ``client_param`` gives the Messages
request's path for such a name: ``output_config.format.schema``, or ``output_format.schema``
when the client used the structured output beta's top-level field; a tool's ``function`` field
(``tools[1].function.name``, a name another family refuses: ``tool_names``) is the tool's own
(``tools[1].name``; a Messages request's tools are the canonical ones, in the same order). A
call of an earlier turn (``messages[3].tool_calls[0].function.name``) is its ``tool_use`` block
(``messages[1].content[0].name``): the parse makes one canonical message of each assistant
turn, a ``system`` message first when there is one, and of a user turn one ``tool`` message
per ``tool_result`` block and a user message for the rest (none when there is no rest), so
the canonical index says which turn it was. The stop sequences (``stop``) are its
``stop_sequences``.
"""

from __future__ import annotations

import re
from typing import Any

_FORMAT = "response_format"
_SCHEMA = "response_format.json_schema.schema"
_TOOL = re.compile(r"(tools\[\d+\])\.function\.(name|description)")
_CALL = re.compile(r"messages\[(\d+)\]\.tool_calls\[(\d+)\]\.function\.name")


def format_field(body: dict[str, Any]) -> str:
    """Where ``body`` asked for structured output: ``output_format`` (the beta's field) only
    when ``output_config.format`` did not (the parse reads it so: ``_output_config_from_wire``)."""
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return "output_config.format"
    beta = body.get("output_format")
    if isinstance(beta, dict) and beta.get("type") == "json_schema":
        return "output_format"
    return "output_config.format"


def client_param(param: str, body: dict[str, Any]) -> str:
    """``param``, a field of the canonical request, as the path of the Messages ``body`` it
    came from (``param`` itself when it names nothing translated)."""
    if param == _FORMAT or param.startswith(_FORMAT + "."):
        field = format_field(body)
        if param.startswith(_SCHEMA):
            return f"{field}.schema{param[len(_SCHEMA) :]}"
        return field
    if param == "stop" or param.startswith("stop["):
        return "stop_sequences" + param[len("stop") :]
    tool = _TOOL.fullmatch(param)
    if tool is not None:
        return f"{tool[1]}.{tool[2]}"
    call = _CALL.fullmatch(param)
    if call is not None:
        return _tool_use_name(int(call[1]), int(call[2]), body) or param
    return param


def _tool_use_name(index: int, number: int, body: dict[str, Any]) -> str | None:
    """The path of the name of the ``number``-th ``tool_use`` block of the turn that became
    canonical message ``index`` (``None`` when no assistant turn did)."""
    first = 0 if body.get("system") is None else 1
    messages = body.get("messages")
    for turn, message in enumerate(messages if isinstance(messages, list) else ()):
        content = message.get("content") if isinstance(message, dict) else None
        if index == first and isinstance(content, list) and message["role"] == "assistant":
            uses = [
                place
                for place, block in enumerate(content)
                if isinstance(block, dict) and block.get("type") == "tool_use"
            ]
            return f"messages[{turn}].content[{uses[number]}].name" if number < len(uses) else None
        first += _canonical_count(message)
        if first > index:
            return None
    return None


def _canonical_count(message: Any) -> int:
    """How many canonical messages the parse makes of one Messages turn."""
    if not isinstance(message, dict) or message.get("role") != "user":
        return 1
    content = message.get("content")
    if not isinstance(content, list):
        return 1
    results = sum(1 for b in content if isinstance(b, dict) and b.get("type") == "tool_result")
    return results + (0 if results and results == len(content) else 1)
