"""What a budget's policy does to a request instead of refusing it: ``shrink`` its max output
to what the budget still pays for, or, past its soft limit, ``downgrade`` it to a cheaper
model."""

from __future__ import annotations

import math
from collections.abc import Container, Sequence

from tollway.core.context import RequestContext
from tollway.core.types import ChatRequest, Price
from tollway.limits.backend import MICRO
from tollway.limits.budget import Budget, affordable_output
from tollway.limits.candidates import Candidates
from tollway.limits.service import LimitService
from tollway.pricing.cost import worst_case_usd
from tollway.pricing.tools import ToolUse
from tollway.wire.claude_effort import MIN_BUDGET
from tollway.wire.responses_request import MAX_OUTPUT_TOKENS

RESPONSES_LEAST_OUTPUT = int(MAX_OUTPUT_TOKENS[0])
"""The smallest ``max_output_tokens`` OpenAI's Responses API takes (16)."""


def affordable_tokens(
    prices: Sequence[tuple[Price, int]],
    inputs: Sequence[int],
    images: int,
    remaining: int,
    uses: Sequence[ToolUse] = (),
) -> int:
    """Output tokens ``remaining`` micro-dollars pay for on every candidate."""
    best = 1 << 30
    for price, way in prices:
        input_tokens = inputs[way]
        base = worst_case_usd(price, input_tokens, 0, images=images, tool_uses=uses) * MICRO
        per_token = (
            worst_case_usd(price, input_tokens, 1, images=images, tool_uses=uses) * MICRO - base
        )
        best = min(best, affordable_output(remaining, math.ceil(base), per_token))
    return best


def least_output(chat: ChatRequest, candidates: Candidates) -> int:
    """The smallest output limit ``shrink`` may send: OpenAI's Responses API refuses a
    ``max_output_tokens`` below 16 (a 400), and a Responses request may go to a candidate that
    speaks it; 1 for any other request."""
    if chat.responses_body is not None and any(candidates.speaks_responses):
        return RESPONSES_LEAST_OUTPUT
    return 1


def thinking_within(chat: ChatRequest, max_output: int) -> bool:
    """Whether the request's extended thinking fits under ``max_output`` (a shrunk
    ``max_tokens``), lowering its ``budget_tokens`` there if need be: Claude thinks within
    the budget, which must stay below ``max_tokens`` (else its 400) and take at least its
    least (1,024 tokens). ``False``: it cannot, and the budget cannot pay for the request."""
    thinking = chat.thinking
    if thinking is None or thinking.get("type") != "enabled":
        return True
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < max_output:
        return True
    if max_output - 1 < MIN_BUDGET:
        return False
    chat.thinking = {**thinking, "budget_tokens": max_output - 1}
    return True


def downgrade(
    ctx: RequestContext,
    budgets: Sequence[Budget],
    served: Container[str],
    service: LimitService,
) -> None:
    """Past a budget's soft limit, serve a cheaper model where its policy names one (among
    the model names ``served``)."""
    for budget in budgets:
        if budget.soft_ratio is None or ctx.model not in budget.downgrade:
            continue
        cheaper = budget.downgrade[ctx.model]
        if cheaper not in served:
            continue  # the config names a model this gateway does not serve
        principal = ctx.principal
        if principal is not None and not principal.may_use(cheaper):
            continue  # a budget's policy never widens what the caller's key allows
        spent = service.limiter.known_spent(service.account(budget))
        if spent is not None and spent >= budget.soft_ratio * budget.limit_micros:
            ctx.response_headers["x-tollway-downgraded-from"] = ctx.model
            ctx.model = cheaper
            if ctx.chat is not None:
                ctx.chat.model = cheaper
            ctx.input_tokens_estimate = None  # counted again for the new model
            return
