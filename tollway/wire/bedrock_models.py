"""What each family of models on Bedrock takes beyond Converse's common fields.

Converse is one shape for every model, but ``additionalModelRequestFields`` is the model's
own request, and some blocks only some models take. A deployment's model id says the family:
``anthropic.claude-...`` (with an inference profile's region prefix, ``us.``, ``global.``, or
inside an ARN: ``.../inference-profile/us.anthropic.claude-...``) is Claude, ``amazon.nova-...``
Amazon Nova, and any other ``provider.model`` id a family that takes none of Claude's fields
(Meta's Llama, Mistral, Cohere, DeepSeek, ...). An id that names no model (an application
inference profile's or a provisioned model's ARN, an imported model) says nothing: the
deployment may declare it (``bedrock_family``: ``claude``, ``nova`` or ``other``), else its
request is sent as the client asked, and the model's own 400 says what it does not take.

- Claude's own fields (``thinking``, ``anthropic_beta``, ``top_k``, and Claude's
  ``stop_sequence`` response field) are Claude's alone; another family refuses them, so a
  client asking for thinking, a beta or ``top_k`` gets a 400 naming it before any call
  (Nova takes ``top_k`` as its own ``inferenceConfig.topK``).
- Extended thinking by level (``reasoningConfig``) is Nova 2's (``amazon.nova-2-...``,
  ``NOVA_2``): a client's effort becomes it (``nova_effort``); Nova's first models have none.
- Cache points (prompt caching) are Claude's and Nova's: for other families a client's cache
  hint is left out, as it is for the families outside Anthropic and Bedrock (``crossing``).
- A tool result's ``status`` (a failed call) is Claude's and Nova's (AWS's
  ``ToolResultBlock``); other families are told in the result's text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TopK = Callable[[int], dict[str, Any]]


def _claude_top_k(value: int) -> dict[str, Any]:
    return {"top_k": value}


def _nova_top_k(value: int) -> dict[str, Any]:
    return {"inferenceConfig": {"topK": value}}


@dataclass(frozen=True, slots=True)
class BedrockFamily:
    """What a family of models on Bedrock takes beyond Converse's common fields."""

    name: str
    """How errors name the family (``Meta Llama models on Bedrock do not take ...``)."""
    claude_fields: bool
    """Takes Claude's own ``thinking``, ``anthropic_beta`` and ``stop_sequence`` fields."""
    top_k: TopK | None
    """``additionalModelRequestFields`` for a ``top_k``; ``None``: the family has none."""
    cache_points: bool
    """Takes ``cachePoint`` blocks (prompt caching)."""
    tool_status: bool
    """Takes a tool result's ``status``."""
    reasoning_levels: bool = False
    """Reasons at a level (Nova 2's ``reasoningConfig``, ``nova_effort``)."""


CLAUDE = BedrockFamily("Claude", True, _claude_top_k, cache_points=True, tool_status=True)
NOVA = BedrockFamily("Amazon Nova", False, _nova_top_k, cache_points=True, tool_status=True)
NOVA_2 = BedrockFamily(
    "Amazon Nova 2", False, _nova_top_k, cache_points=True, tool_status=True,
    reasoning_levels=True,
)  # fmt: skip
"""Nova's second generation (``amazon.nova-2-...``): Nova's fields, and reasoning by level."""
UNKNOWN = BedrockFamily("unknown", True, _claude_top_k, cache_points=True, tool_status=True)
"""A model id that names no model: everything is sent as asked, the model judges."""
OTHER = BedrockFamily("non-Claude, non-Nova", False, None, cache_points=False, tool_status=False)
"""A deployment's declared ``bedrock_family: other``: a family that takes none of the extras."""
DECLARED = {"claude": CLAUDE, "nova": NOVA, "other": OTHER}
"""The families a deployment may declare (``bedrock_family``) for an id that names none."""

_PROVIDER_NAMES = {
    "meta": "Meta Llama",
    "mistral": "Mistral",
    "cohere": "Cohere",
    "ai21": "AI21",
    "deepseek": "DeepSeek",
    "openai": "OpenAI",
    "qwen": "Qwen",
    "writer": "Writer",
    "amazon": "Amazon",
}


def deployment_family(model: str, declared: str | None) -> BedrockFamily:
    """The family a deployment's id names, else the one it declares (``bedrock_family``,
    which must agree with a named one: ``declared_family_conflict``)."""
    named = family_of(model)
    return DECLARED[declared] if named is UNKNOWN and declared is not None else named


def declared_family_conflict(model: str, declared: str) -> str | None:
    """Why ``declared`` cannot be the family of ``model``, if its id names another."""
    named = family_of(model)
    if named is UNKNOWN:
        return None
    named = NOVA if named is NOVA_2 else named
    if declared == "other":
        agrees = named is not CLAUDE and named is not NOVA
    else:
        agrees = named is DECLARED[declared]
    return None if agrees else f"model {model!r} is a {named.name} model, not {declared!r}"


def family_of(model: str) -> BedrockFamily:
    """The family of a deployment's Bedrock model id (an ARN's too)."""
    resource = model.rsplit("/", 1)[-1]
    parts = resource.split(".")
    if len(parts) < 2:
        return UNKNOWN  # an application inference profile, a provisioned or imported model
    # An inference profile's id starts with where it routes (us., eu., apac., global., ...).
    provider, rest = parts[0], parts[1:]
    if provider not in _PROVIDER_NAMES and provider != "anthropic" and len(parts) > 2:
        provider, rest = parts[1], parts[2:]
    if provider == "anthropic":
        return CLAUDE
    if provider == "amazon" and rest[0].startswith("nova"):
        return NOVA_2 if rest[0].startswith("nova-2-") else NOVA
    name = _PROVIDER_NAMES.get(provider, provider)
    return BedrockFamily(f"{name}", False, None, cache_points=False, tool_status=False)


def fitted(body: dict[str, Any], family: BedrockFamily) -> dict[str, Any]:
    """``body`` without the cache points and tool result statuses ``family`` does not take
    (a failed call is then said in its result's text, as for families with no status)."""
    if family.cache_points and family.tool_status:
        return body
    if not family.cache_points:
        if "system" in body:
            body["system"] = _uncached(body["system"])
        tools = body.get("toolConfig", {}).get("tools")
        if tools is not None:
            body["toolConfig"]["tools"] = _uncached(tools)
    for turn in body["messages"]:
        content = turn["content"] if family.cache_points else _uncached(turn["content"])
        turn["content"] = content if family.tool_status else [_unstated(b) for b in content]
    return body


def _uncached(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [block for block in blocks if "cachePoint" not in block]


def _unstated(block: dict[str, Any]) -> dict[str, Any]:
    result = block.get("toolResult")
    if not isinstance(result, dict) or "status" not in result:
        return block
    result = {k: v for k, v in result.items() if k != "status"}
    if block["toolResult"]["status"] == "error":
        result["content"] = [{"text": "Error:"}, *result.get("content", [])]
    return {"toolResult": result}
