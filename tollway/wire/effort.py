"""OpenAI's ``reasoning_effort`` for providers that think within a token budget instead.

Gemini and Claude take a budget, not a level. A level is the budget Google's OpenAI-compatible
endpoint gives it for Gemini (``EFFORT_BUDGETS``), so one level asks the same of every family
that takes a budget; ``none`` turns thinking off. The codecs (``gemini_request.py``,
``claude_effort.py``) take the field out of the request with ``take_effort`` and send what
their provider calls a budget.
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
