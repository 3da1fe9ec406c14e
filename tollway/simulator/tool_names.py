"""A function tool's name, refused as each provider refuses it, in its words.

- OpenAI (Chat Completions and the Responses API): ``^[a-zA-Z0-9_-]+$``, at most 64 characters
  (``Invalid 'tools[1].function.name': string does not match pattern. ...``, code
  ``invalid_value``; ``... string too long. ...``, code ``string_above_max_length``);
- Anthropic: ``^[a-zA-Z0-9_-]{1,128}$`` (``tools.1.custom.name: String should match pattern
  '^[a-zA-Z0-9_-]{1,128}$'``);
- Bedrock's Converse: ``[a-zA-Z0-9_-]+`` of 1 to 64 (a ``ValidationException``: ``1 validation
  error detected: Value 'my.tool' at 'toolConfig.tools.2.member.toolSpec.name' failed to
  satisfy constraint: ...``, its list counted from 1);
- Gemini API and Vertex AI: a letter or an underscore, then letters, digits, underscores,
  dots, colons or dashes, 64 at most (``* GenerateContentRequest.tools[0]
  .function_declarations[1].name: Invalid function name. ...``).

A call of an earlier turn names its function too (Anthropic's ``tool_use.name``, Converse's
``toolUse.name``, Gemini's ``functionCall.name`` and ``functionResponse.name``), under the same
rule: Converse's ``ToolUseBlock.name`` is documented with the tool's constraints, and a name
the model could not have been offered is one it could not have called.
"""

from __future__ import annotations

import re

from tollway.simulator.content import InvalidRequest

_OPENAI = re.compile("[a-zA-Z0-9_-]+")
_OPENAI_LONGEST = 64
ANTHROPIC_PATTERN = "^[a-zA-Z0-9_-]{1,128}$"
_ANTHROPIC = re.compile(ANTHROPIC_PATTERN[1:-1])
_BEDROCK = "[a-zA-Z0-9_-]+"
_BEDROCK_LONGEST = 64
_GEMINI = re.compile("[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}")
_GEMINI_RULE = (
    "Invalid function name. Must start with a letter or an underscore. Must be a-z, A-Z, 0-9, "
    "or contain underscores (_), dots (.), colons (:), or dashes (-), with a maximum length "
    "of 64."
)


def check_openai(name: str, param: str) -> None:
    """OpenAI's 400 for a function's ``name`` at ``param`` (``tools[1].function.name``)."""
    if len(name) > _OPENAI_LONGEST:
        raise InvalidRequest(
            f"Invalid '{param}': string too long. Expected a string with maximum length "
            f"{_OPENAI_LONGEST}, but got a string with length {len(name)} instead.",
            param,
            "string_above_max_length",
        )
    if _OPENAI.fullmatch(name) is None:
        raise InvalidRequest(
            f"Invalid '{param}': string does not match pattern. Expected a string that "
            f"matches the pattern '^{_OPENAI.pattern}$'.",
            param,
            "invalid_value",
        )


def check_anthropic(name: str, index: int) -> None:
    """Anthropic's 400 for the name of custom tool ``index``."""
    if _ANTHROPIC.fullmatch(name) is None:
        param = f"tools.{index}.custom.name"
        raise InvalidRequest(f"{param}: String should match pattern '{ANTHROPIC_PATTERN}'", param)


def check_anthropic_use(name: str, message: int, block: int) -> None:
    """Anthropic's 400 for the name of ``tool_use`` block ``block`` of ``messages[message]``."""
    if _ANTHROPIC.fullmatch(name) is None:
        param = f"messages.{message}.content.{block}.tool_use.name"
        raise InvalidRequest(f"{param}: String should match pattern '{ANTHROPIC_PATTERN}'", param)


def check_bedrock(name: str, index: int) -> None:
    """Bedrock's ``ValidationException`` for the name of ``toolConfig.tools[index]``."""
    _check_bedrock_name(name, f"toolConfig.tools.{index + 1}.member.toolSpec.name")


def check_bedrock_use(name: str, message: int, block: int) -> None:
    """Bedrock's ``ValidationException`` for the name of the ``toolUse`` block ``block`` of
    ``messages[message]``."""
    where = f"messages.{message + 1}.member.content.{block + 1}.member.toolUse.name"
    _check_bedrock_name(name, where)


def _check_bedrock_name(name: str, where: str) -> None:
    """Converse's constraint on a name at ``where`` (its lists counted from 1), in its words."""
    if re.fullmatch(_BEDROCK, name) is not None and len(name) <= _BEDROCK_LONGEST:
        return
    if not name:
        constraint = "Member must have length greater than or equal to 1"
    elif len(name) > _BEDROCK_LONGEST:
        constraint = f"Member must have length less than or equal to {_BEDROCK_LONGEST}"
    else:
        constraint = f"Member must satisfy regular expression pattern: {_BEDROCK}"
    raise InvalidRequest(
        f"1 validation error detected: Value '{name}' at '{where}' failed to satisfy "
        f"constraint: {constraint}",
        where,
    )


def check_gemini(name: str, tool: int, declaration: int) -> None:
    """Google's 400 for the name of ``tools[tool].functionDeclarations[declaration]``."""
    if _GEMINI.fullmatch(name) is None:
        where = f"tools[{tool}].function_declarations[{declaration}].name"
        raise InvalidRequest(f"* GenerateContentRequest.{where}: {_GEMINI_RULE}", where)


def check_gemini_part(name: str, content: int, part: int, kind: str) -> None:
    """Google's 400 for the name of ``contents[content].parts[part]``'s ``kind``
    (``function_call`` or ``function_response``)."""
    if _GEMINI.fullmatch(name) is None:
        where = f"contents[{content}].parts[{part}].{kind}.name"
        raise InvalidRequest(f"* GenerateContentRequest.{where}: {_GEMINI_RULE}", where)
