"""A field named in Chat Completions terms, as the Anthropic client sent it.

What refuses an Anthropic client's request after the parse (a provider's codec: Bedrock's Claude
refusing a schema keyword, ``claude_schema``) names the canonical request's fields, which are
Chat Completions': ``response_format.json_schema.schema``. ``client_param`` gives the Messages
request's path for such a name: ``output_config.format.schema``, or ``output_format.schema``
when the client used the structured output beta's top-level field; a tool's ``function`` field
(``tools[1].function.name``, a name another family refuses: ``tool_names``) is the tool's own
(``tools[1].name``; a Messages request's tools are the canonical ones, in the same order).
"""

from __future__ import annotations

import re
from typing import Any

_FORMAT = "response_format"
_SCHEMA = "response_format.json_schema.schema"
_TOOL = re.compile(r"(tools\[\d+\])\.function\.(name|description)")


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
    tool = _TOOL.fullmatch(param)
    if tool is not None:
        return f"{tool[1]}.{tool[2]}"
    return param
