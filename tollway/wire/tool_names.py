"""The names each family takes for a function tool, checked before a request crosses to it.

A client's API allows names another family refuses: OpenAI's and Gemini's clients may write
``my.tool``, which Anthropic and Bedrock refuse, Anthropic's may write 128 characters where
Bedrock and Gemini stop at 64, and only Gemini wants a letter or an underscore first. Sent as
it came, such a name fails upstream, in the provider's words and after a call; ``check_names``
makes it a 400 before any, naming the tool (``tools[1].function.name``, which each dialect
writes as its client's field) and the rule. The calls of the conversation's earlier turns are
sent too (Anthropic's ``tool_use.name``, Bedrock's ``toolUse.name``, Gemini's ``functionCall``
and the ``functionResponse`` that answers it), and a client of another API may have made them
with a name the family refuses; ``check_history`` makes that a 400 naming the call
(``messages[2].tool_calls[0].function.name``: ``input[3].name`` to a Responses client,
``messages[1].content[0].name`` to an Anthropic one). The rules, as each provider states them:

- Anthropic: ``^[a-zA-Z0-9_-]{1,128}$`` (its 400: ``tools.0.custom.name: String should match
  pattern ...``);
- Bedrock's Converse ``ToolSpecification.name``: ``[a-zA-Z0-9_-]+``, 1 to 64 characters;
- Gemini API and Vertex AI ``FunctionDeclaration.name``: a letter or underscore first, then
  letters, digits, underscores, dots, colons or dashes, 64 at most.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tollway.core.errors import InvalidRequest
from tollway.core.types import Message, Tool


@dataclass(frozen=True, slots=True)
class NameRule:
    """One family's rule for a function tool's name."""

    family: str
    """Whose rule it is, for the 400 (``Anthropic``)."""
    pattern: re.Pattern[str]
    """The whole name must match it."""
    words: str
    """The rule said for a person."""

    def takes(self, name: str) -> bool:
        """Whether ``name`` is a name this family takes."""
        return self.pattern.fullmatch(name) is not None


ANTHROPIC_PATTERN = "^[a-zA-Z0-9_-]{1,128}$"
ANTHROPIC = NameRule(
    "Anthropic",
    re.compile(ANTHROPIC_PATTERN[1:-1]),
    f"1 to 128 letters, digits, underscores or dashes ({ANTHROPIC_PATTERN})",
)
BEDROCK = NameRule(
    "Bedrock",
    re.compile("[a-zA-Z0-9_-]{1,64}"),
    "1 to 64 letters, digits, underscores or dashes (^[a-zA-Z0-9_-]{1,64}$)",
)
GEMINI = NameRule(
    "Gemini",
    re.compile("[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}"),
    "a letter or underscore, then letters, digits, underscores, dots, colons or dashes, "
    "64 at most (^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$)",
)


def check_names(
    tools: Sequence[Tool] | None, rule: NameRule, is_function: Callable[[Tool], bool]
) -> None:
    """A 400 naming the first of ``tools`` that ``is_function`` whose name ``rule`` refuses
    (the built-in tools a family names itself are not checked)."""
    for index, tool in enumerate(tools or ()):
        if is_function(tool) and not rule.takes(tool.name):
            param = f"tools[{index}].function.name"
            raise InvalidRequest(
                f"'{param}': {tool.name!r} is not a tool name {rule.family} models take: "
                f"a name is {rule.words}",
                code="invalid_value",  # OpenAI's, for a name outside its own pattern
                param=param,
            )


def check_history(messages: Sequence[Message], rule: NameRule) -> None:
    """A 400 naming the first call of the conversation's assistant turns whose function name
    ``rule`` refuses (a tool result names its call's function, so the call is the one named)."""
    for index, message in enumerate(messages):
        for number, call in enumerate(message.tool_calls or ()):
            if not rule.takes(call.name):
                param = f"messages[{index}].tool_calls[{number}].function.name"
                raise InvalidRequest(
                    f"'{param}': {call.name!r} is not a function name {rule.family} models "
                    f"take: a name is {rule.words}",
                    code="invalid_value",
                    param=param,
                )
