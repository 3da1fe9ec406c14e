"""A client's thinking request as Gemini's ``generationConfig.thinkingConfig``, by model.

Gemini 2.5 thinks within a token budget (``thinkingBudget``: 0 off, -1 dynamic); Gemini 3 and
later think at a level (``thinkingLevel``: ``MINIMAL``, ``LOW``, ``MEDIUM``, ``HIGH``, which
models take varies: Gemini 3 Pro refuses ``MINIMAL`` and ``MEDIUM``), cannot turn thinking
off, still take ``thinkingBudget`` for compatibility, and refuse both in one request. Which
kind a deployment's model is, is read from its name (``thinks_in_levels``: ``gemini-3...``,
``gemini-3.1-...`` and later, with or without a ``models/`` path); any other name (Gemini 2.5,
an alias such as ``gemini-flash-latest``) gets a budget, which every Gemini model takes.

- An Anthropic client's ``thinking`` asks to see the thoughts (``includeThoughts``; not with
  ``display: "omitted"``, Claude's thinking shown only as its signature) and names
  a budget: ``enabled`` with ``budget_tokens`` N is ``thinkingBudget: N`` for every model (the
  client's own number, which Gemini 3 takes too; a level would round it); ``adaptive`` is
  Gemini's dynamic thinking, ``thinkingBudget: -1`` on a budget model and no level on a level
  model (dynamic thinking is Gemini 3's default). Another type is a 400 naming ``thinking``.
- An OpenAI client's ``reasoning_effort`` (Responses: ``reasoning.effort``) names a level,
  without thoughts shown (OpenAI's API shows none): on a level model it is that level
  (``minimal``, ``low``, ``medium``, ``high``; ``none`` is ``LOW``, the least every Gemini 3
  model takes, since none can stop thinking, and so is ``minimal`` on a Pro model, which has
  no ``MINIMAL``); on a budget model it is the budget Google's own OpenAI-compatible endpoint
  gives it (``EFFORT_BUDGETS``), ``minimal`` the smallest budget the model thinks within
  (Google's ranges: 2.5 Pro 128 to 32768, 2.5 Flash 0 to 24576, 2.5 Flash-Lite 512 to 24576;
  512 for a name that does not say, which every 2.5 model takes) and ``none`` 0, but on a Pro
  model, which cannot stop thinking (0 is its 400), its smallest budget. Other levels are a
  400 naming the field.
- An Anthropic client's ``output_config.effort`` is the OpenAI level of its name (``xhigh``
  and ``max``: ``high``, Gemini's most), as above, without thoughts shown unless ``thinking``
  asks for them; beside ``adaptive`` thinking it says how much, beside ``enabled`` thinking
  the client's ``budget_tokens`` does.
- A Responses client's ``reasoning.summary`` (``ChatRequest.reasoning_summary``) asks to see a
  summary of the reasoning, which Gemini's thought summaries are: ``includeThoughts: true``,
  beside the effort's level or budget, or alone (the model thinks as it does by default).
  Thinking turned off (``reasoning.effort`` ``none`` on a budget model) shows nothing.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

from tollway.core.errors import InvalidRequest
from tollway.core.types import ChatRequest
from tollway.wire.anthropic_request import asks_for_thinking
from tollway.wire.effort import EFFORT_BUDGETS, take_effort, take_output_effort

_GENERATION = re.compile(r"(?:^|/)gemini-(\d+)(?:[.-]|$)")
_FIRST_LEVEL_GENERATION = 3
EFFORT_LEVELS = MappingProxyType(
    {"none": "LOW", "minimal": "MINIMAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH"}
)
"""``thinkingLevel`` per OpenAI ``reasoning_effort``, for models that think at a level."""
_PRO_LEVELS = MappingProxyType({**EFFORT_LEVELS, "minimal": "LOW"})
_PRO_FLOOR, _FLASH_FLOOR, _ANY_FLOOR = 128, 128, 512  # the least budget each model thinks within
_PRO_BUDGETS = MappingProxyType({**EFFORT_BUDGETS, "none": _PRO_FLOOR, "minimal": _PRO_FLOOR})
_FLASH_BUDGETS = MappingProxyType({**EFFORT_BUDGETS, "minimal": _FLASH_FLOOR})
_ANY_BUDGETS = MappingProxyType({**EFFORT_BUDGETS, "minimal": _ANY_FLOOR})
_TARGET = "a gemini deployment"
_OUTPUT_LEVELS = MappingProxyType(
    {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
)
"""The OpenAI level per Anthropic ``output_config.effort`` (``xhigh`` and ``max``: Gemini's
most, ``high``)."""


def thinks_in_levels(model: str) -> bool:
    """Whether ``model`` (a deployment's upstream model name) is Gemini 3 or later, which
    thinks at a ``thinkingLevel`` rather than within a ``thinkingBudget``."""
    generation = _GENERATION.search(model.lower())
    return generation is not None and int(generation.group(1)) >= _FIRST_LEVEL_GENERATION


def thinking_config(request: ChatRequest, model: str) -> tuple[ChatRequest, dict[str, Any] | None]:
    """The ``thinkingConfig`` for a client's ``thinking`` or ``reasoning_effort`` (see above)
    on ``model``, and the request without the effort (which ``request_for`` would refuse)."""
    levels = thinks_in_levels(model)
    request, effort = take_output_effort(request)
    asked = None if effort is None else _OUTPUT_LEVELS[effort]
    if asks_for_thinking(request):
        thinking = request.thinking or {}
        kind, budget = thinking.get("type"), thinking.get("budget_tokens")
        # ``display: "omitted"``: Claude's thinking without its text, only the signature.
        shown = {} if thinking.get("display") == "omitted" else {"includeThoughts": True}
        if kind == "adaptive" and asked is not None:  # the effort says how much
            return request, {**_effort_config(model, levels, asked), **shown}
        if kind == "adaptive":
            return request, (shown or None) if levels else {"thinkingBudget": -1, **shown}
        if kind == "enabled" and isinstance(budget, int) and not isinstance(budget, bool):
            return request, {"thinkingBudget": budget, **shown}  # the budget says how much
        raise InvalidRequest(
            f"'thinking' of type {kind!r} cannot be translated for {_TARGET}", param="thinking"
        )
    if asked is not None:
        return request, _effort_config(model, levels, asked)
    config: dict[str, Any] = {}
    if levels:
        named = _PRO_LEVELS if _is_pro(model) else EFFORT_LEVELS
        plain, level = take_effort(request, named, f"{_TARGET} of Gemini 3")
        if level is not None:
            config["thinkingLevel"] = level
    else:
        plain, budget = take_effort(request, _effort_budgets(model), _TARGET)
        if budget is not None:
            config["thinkingBudget"] = budget
    if request.reasoning_summary is not None and config.get("thinkingBudget") != 0:
        config["includeThoughts"] = True
    return plain, config or None


def _effort_config(model: str, levels: bool, effort: str) -> dict[str, Any]:
    """The ``thinkingConfig`` for an OpenAI ``reasoning_effort`` level on ``model``."""
    if levels:
        return {"thinkingLevel": (_PRO_LEVELS if _is_pro(model) else EFFORT_LEVELS)[effort]}
    return {"thinkingBudget": _effort_budgets(model)[effort]}


def _is_pro(model: str) -> bool:
    """Whether ``model`` is a Pro model (``gemini-2.5-pro``, ``gemini-3-pro-preview``,
    ``gemini-pro-latest``), which cannot stop thinking."""
    return "-pro" in model.lower()


def _effort_budgets(model: str) -> MappingProxyType[str, int]:
    """The budget per ``reasoning_effort`` for a Gemini 2.5 ``model`` (see above)."""
    if _is_pro(model):
        return _PRO_BUDGETS
    name = model.lower()
    return _FLASH_BUDGETS if "flash" in name and "flash-lite" not in name else _ANY_BUDGETS
