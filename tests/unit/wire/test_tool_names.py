"""The names each family takes for a function tool, and the 400 for one it refuses."""

from __future__ import annotations

import pytest

from tollway.core.errors import InvalidRequest
from tollway.core.types import Tool
from tollway.wire.tool_names import ANTHROPIC, BEDROCK, GEMINI, NameRule, check_names

TAKEN = {
    "get_weather": (ANTHROPIC, BEDROCK, GEMINI),
    "get-weather-2": (ANTHROPIC, BEDROCK, GEMINI),
    "1st": (ANTHROPIC, BEDROCK),
    "-x": (ANTHROPIC, BEDROCK),
    "my.tool": (GEMINI,),
    "ns:tool": (GEMINI,),
    "_private": (ANTHROPIC, BEDROCK, GEMINI),
    "x" * 64: (ANTHROPIC, BEDROCK, GEMINI),
    "x" * 65: (ANTHROPIC,),
    "x" * 128: (ANTHROPIC,),
    "x" * 129: (),
    "tools/search": (),
    "with space": (),
    "ünï": (),
    "": (),
    "name\n": (),
}


@pytest.mark.parametrize("name", list(TAKEN), ids=repr)
@pytest.mark.parametrize("rule", [ANTHROPIC, BEDROCK, GEMINI], ids=lambda rule: rule.family)
def test_each_family_takes_the_names_its_rule_allows(name: str, rule: NameRule) -> None:
    assert rule.takes(name) is (rule in TAKEN[name])


def test_the_first_function_refused_is_a_400_naming_its_place_and_the_rule() -> None:
    tools = [Tool("ok"), Tool("web search", extra={"type": "builtin"}), Tool("my.tool")]
    with pytest.raises(InvalidRequest) as caught:
        check_names(tools, BEDROCK, lambda tool: "type" not in tool.extra)
    assert caught.value.param == "tools[2].function.name"
    assert caught.value.message.startswith("'tools[2].function.name': 'my.tool' is not")
    assert "Bedrock" in caught.value.message and "^[a-zA-Z0-9_-]{1,64}$" in caught.value.message
    check_names(tools[:2], BEDROCK, lambda tool: "type" not in tool.extra)
    check_names(None, GEMINI, lambda tool: True)
