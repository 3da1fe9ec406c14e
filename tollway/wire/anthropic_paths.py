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
the canonical index says which turn it was. So does a content part: an assistant turn's parts
are its blocks but the ``tool_use`` ones, a user turn's its blocks but the ``tool_result``
ones, and a tool result's parts the blocks of that ``tool_result``'s ``content``
(``messages[2].content[1]`` may be ``messages[1].content[0].content[1]``); an image's
``image_url`` is its block's ``source``. The stop sequences (``stop``) are its
``stop_sequences``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_FORMAT = "response_format"
_SCHEMA = "response_format.json_schema.schema"
_TOOL = re.compile(r"(tools\[\d+\])\.function\.(name|description)")
_MESSAGE = re.compile(r"messages\[(\d+)\](.*)")
_CALL_REST = re.compile(r"\.tool_calls\[(\d+)\]\.function\.name")
_PART_REST = re.compile(r"\.content\[(\d+)\](.*)")
# A content part's fields in Chat Completions terms, and the Messages block's names for them
# (an image's URL or data is its ``source``); another field is named by its block.
_PART_FIELDS = {".image_url": ".source", ".image_url.url": ".source", ".text": ".text"}


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


def client_param(param: str, body: dict[str, Any], *, canonical: bool = True) -> str:
    """``param``, a field of the canonical request, as the path of the Messages ``body`` it
    came from (``param`` itself when it names nothing translated); ``canonical``: whether a
    ``messages[...]`` path in it counts the canonical messages (an error raised after the
    parse) and not the client's turns (the parse's own)."""
    if param == _FORMAT or param.startswith(_FORMAT + "."):
        where = format_field(body)
        if param.startswith(_SCHEMA):
            return f"{where}.schema{param[len(_SCHEMA) :]}"
        return where
    if param == "stop" or param.startswith("stop["):
        return "stop_sequences" + param[len("stop") :]
    tool = _TOOL.fullmatch(param)
    if tool is not None:
        return f"{tool[1]}.{tool[2]}"
    message = _MESSAGE.fullmatch(param) if canonical else None
    if message is not None:
        return _in_message(int(message[1]), message[2], body) or param
    return param


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where one canonical message came from: ``path``, the content it was made of in the
    Messages request (``messages[3].content``, ``system``, or a ``tool_result`` block's:
    ``messages[3].content[1].content``); ``parts``: the index in that content of each canonical
    content part (``None``: they are the same); ``calls``: the index in it of each
    ``tool_use`` block; ``result``: whether it is a ``tool_result``'s."""

    path: str
    parts: list[int] | None = None
    calls: list[int] = field(default_factory=list)
    result: bool = False


def _origins(body: dict[str, Any]) -> list[_Origin]:
    """The origin of each canonical message the parse makes of ``body``: a ``system`` message
    first when there is one; of each assistant turn one message, its ``tool_use`` blocks the
    calls and the others its parts; of a user turn one ``tool`` message per ``tool_result``
    block, then one of the rest (none when there is no rest)."""
    out = [] if body.get("system") is None else [_Origin("system")]
    messages = body.get("messages")
    for turn, message in enumerate(messages if isinstance(messages, list) else ()):
        path = f"messages[{turn}]"
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            out.append(_Origin(f"{path}.content"))
            continue
        kinds = [block.get("type") if isinstance(block, dict) else None for block in content]
        if message.get("role") == "assistant":
            uses = [place for place, kind in enumerate(kinds) if kind == "tool_use"]
            rest = [place for place, kind in enumerate(kinds) if kind != "tool_use"]
            out.append(_Origin(f"{path}.content", rest, uses))
            continue
        results = [place for place, kind in enumerate(kinds) if kind == "tool_result"]
        out += [_Origin(f"{path}.content[{place}].content", result=True) for place in results]
        rest = [place for place, kind in enumerate(kinds) if kind != "tool_result"]
        if rest or not results:
            out.append(_Origin(f"{path}.content", rest))
    return out


def _in_message(index: int, rest: str, body: dict[str, Any]) -> str | None:
    """The path of ``rest`` (``.content[1].image_url``, ``.tool_calls[0].function.name``,
    ...) within the turn or tool result canonical message ``index`` came from (``None`` when
    it names nothing there)."""
    origins = _origins(body)
    if index >= len(origins):
        return None
    origin = origins[index]
    call = _CALL_REST.fullmatch(rest)
    if call is not None:
        number = int(call[1])
        if number >= len(origin.calls):
            return None
        return f"{origin.path}[{origin.calls[number]}].name"
    if rest == ".tool_call_id" and origin.result:
        return origin.path.removesuffix(".content") + ".tool_use_id"
    part = _PART_REST.fullmatch(rest)
    if part is None:
        return origin.path if rest.startswith(".content") else None
    number = int(part[1])
    if origin.parts is not None:
        if number >= len(origin.parts):
            return origin.path
        number = origin.parts[number]
    return f"{origin.path}[{number}]{_PART_FIELDS.get(part[2], '')}"
