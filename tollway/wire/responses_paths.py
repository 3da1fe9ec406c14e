"""A field named in Chat Completions terms, as the Responses client sent it.

A Responses request is a chat request inside the gateway, so what refuses it after the parse (a
crossing to another family, a provider's codec, an OpenAI-format upstream's own 400) names its
fields as Chat Completions has them: ``messages[2].tool_calls[0].function.arguments``,
``max_completion_tokens``, ``response_format``. ``client_param`` gives the client's path for
such a name (``input[3].arguments``, ``max_output_tokens``, ``text.format``) from where the
parse found each message (``responses_input.Origin``); a name it cannot place is the nearest
field it can (``input``), never one the client did not send. A tool is named by its index in
the client's ``tools``, which is not the canonical one when built-in tools come before it or an
``allowed_tools`` choice left others out. Only requests that failed pay for it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tollway.wire.responses_input import Origin, Origins

# OpenAI's own errors write an index after a dot at times: ``messages.[3].role``.
_MESSAGE = re.compile(r"messages\.?\[(\d+)\](.*)")
_CALL = re.compile(r"\.tool_calls\.?\[(\d+)\](.*)")
_PART = re.compile(r"\.content\.?\[(\d+)\](.*)")
# A top-level field with a Chat Completions name, and the Responses name it came from.
_FIELDS = {
    "messages": "input",
    "max_tokens": "max_output_tokens",
    "max_completion_tokens": "max_output_tokens",
    "reasoning_effort": "reasoning.effort",
    "verbosity": "text.verbosity",
    "logprobs": "include",
    "response_format": "text.format",
    "response_format.type": "text.format.type",
    "response_format.json_schema": "text.format",
    "tool_choice.function": "tool_choice",
    "tool_choice.function.name": "tool_choice.name",
}
_SCHEMA = "response_format.json_schema."
_TOOL = re.compile(r"tools\.?\[(\d+)\]\.function(.*)")
# A Responses tool's own field (its cache hint), or the tool itself.
_TOOL_FIELD = re.compile(r"tools\.?\[(\d+)\](|\.cache_control.*)")
# A tool call's fields and the function_call item's names for them.
_CALL_FIELDS = {
    ".function.arguments": ".arguments",
    ".arguments": ".arguments",
    ".function.name": ".name",
    ".name": ".name",
    ".id": ".call_id",
}
# A content part's fields and the Responses part's names for them.
_PART_FIELDS = {
    ".text": ".text",
    ".image_url": ".image_url",
    ".image_url.url": ".image_url",
    ".image_url.detail": ".detail",
    ".file.file_data": ".file_data",
    ".file.filename": ".filename",
}


def client_param(param: str, origins: Origins, tool_places: Sequence[int] = ()) -> str:
    """``param``, a field of the canonical request in Chat Completions terms, as the path of
    the Responses request it came from (``param`` itself when it names nothing translated);
    ``tool_places``: the index in the client's ``tools`` of each canonical tool."""
    named = _FIELDS.get(param)
    if named is not None:
        return named
    if param.startswith(_SCHEMA):
        return "text.format." + param[len(_SCHEMA) :]
    tool = _TOOL.fullmatch(param) or _TOOL_FIELD.fullmatch(param)
    if tool is not None:
        index = int(tool[1])
        place = tool_places[index] if index < len(tool_places) else index
        return f"tools[{place}]{tool[2]}"
    message = _MESSAGE.fullmatch(param)
    if message is None:
        return param
    index = int(message[1])
    if index >= len(origins):  # a message a later step added
        return "input"
    return _in_message(origins[index], message[2])


def _in_message(origin: Origin, rest: str) -> str:
    """The path of ``rest`` (``.content[1]``, ``.tool_calls[0].function.arguments``, ...)
    within the message that came from ``origin``."""
    call = _CALL.fullmatch(rest)
    if call is not None:
        index = int(call[1])
        if index >= len(origin.calls):
            return origin.path
        return origin.calls[index] + _CALL_FIELDS.get(call[2], "")
    if rest == ".tool_call_id":
        return origin.path + ".call_id"
    if rest == ".role" and origin.content == "content":
        return origin.path + ".role"
    if origin.content is None or not rest.startswith(".content"):
        return origin.path
    field = f"{origin.path}.{origin.content}"
    part = _PART.fullmatch(rest)
    if part is None:
        return field
    return f"{field}[{part[1]}]{_PART_FIELDS.get(part[2], '')}"
