"""OpenAI's ``reasoning_effort`` for providers that think within a token budget instead.

Gemini and Claude take a budget, not a level. A level is the budget Google's OpenAI-compatible
endpoint gives it for Gemini (``EFFORT_BUDGETS``), so one level asks the same of every family
that takes a budget; ``none`` turns thinking off. The codecs (``gemini_request.py``,
``claude_effort.py``) take the field out of the request with ``take_effort`` and send what
their provider calls a budget.

Anthropic's ``output_config.effort`` (``low``, ``medium``, ``high``, ``xhigh``, ``max``: how
much the model spends on its answer, thinking included) is taken out of an Anthropic client's
request by the codecs of families with an equivalent (``take_output_effort``) and sent as
theirs: an OpenAI-format deployment's ``reasoning_effort`` of the same name
(``REASONING_EFFORTS``: ``max``, which OpenAI lacks, is its most, ``xhigh``), Gemini's
thinking level or budget for the OpenAI level it names (``gemini_thinking``), Claude on
Bedrock's own ``output_config``. A family without one leaves it in the request, which
``crossing.request_for`` refuses naming ``output_config.effort``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import TypeVar

from tollway.core.errors import InvalidRequest
from tollway.core.types import ChatRequest

EFFORT = "reasoning_effort"
EFFORT_BUDGETS = MappingProxyType({"none": 0, "low": 1024, "medium": 8192, "high": 24576})
"""Thinking budget per OpenAI ``reasoning_effort`` (0: no thinking)."""
_Value = TypeVar("_Value")
OUTPUT_EFFORT = "output_config.effort"
OUTPUT_EFFORTS = ("low", "medium", "high", "xhigh", "max")
"""Anthropic's ``output_config.effort`` levels."""
REASONING_EFFORTS = MappingProxyType(
    {"low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "xhigh"}
)
"""OpenAI's ``reasoning_effort`` per Anthropic ``output_config.effort``."""


def take_output_effort(request: ChatRequest) -> tuple[ChatRequest, str | None]:
    """``request`` without an Anthropic client's ``output_config.effort`` (checked on parsing),
    and its level (``None``: none asked)."""
    config = request.extra.get("output_config") if request.wire_format == "anthropic" else None
    if not isinstance(config, dict) or "effort" not in config:
        return request, None
    extra = {k: v for k, v in request.extra.items() if k != "output_config"}
    if rest := {k: v for k, v in config.items() if k != "effort"}:
        extra["output_config"] = rest
    effort = config["effort"]
    return replace(request, extra=extra), effort if isinstance(effort, str) else None


def take_effort(
    request: ChatRequest, budgets: Mapping[str, _Value], target: str
) -> tuple[ChatRequest, _Value | None]:
    """``request`` without an OpenAI client's ``reasoning_effort``, and the budget (or the
    provider's own level) its level names in ``budgets`` (``None``: no level asked); a level
    ``budgets`` lacks is a 400 naming the field and ``target`` (e.g. "a gemini deployment")."""
    if request.wire_format != "openai" or EFFORT not in request.extra:
        return request, None
    effort = request.extra[EFFORT]
    plain = replace(request, extra={k: v for k, v in request.extra.items() if k != EFFORT})
    if effort is None:
        return plain, None
    if not isinstance(effort, str) or effort not in budgets:
        raise InvalidRequest(
            f"'{EFFORT}' {effort!r} cannot be translated for {target} "
            f"(it takes {', '.join(budgets)})",
            param=EFFORT,
        )
    return plain, budgets[effort]
