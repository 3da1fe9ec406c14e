"""The errors admission raises: a limit or budget that refuses (429), a limiter that cannot
be reached (503), a request whose cost a budget cannot bound (400), and one under a budget
that only unpriced deployments could serve (403, ``limits.unpriced: refuse``)."""

from __future__ import annotations

from tollway.core.errors import (
    InvalidRequest,
    LimiterDown,
    PermissionDenied,
    RateLimited,
    wait_headers,
    wait_value,
)
from tollway.core.types import Deployment
from tollway.limits.backend import Refusal


def limiter_down() -> LimiterDown:
    """The answer when the shared limiter (Redis) cannot be reached and nothing may pass."""
    return LimiterDown(
        "Limits cannot be checked right now (the shared limiter is unreachable); retry shortly.",
        code="limiter_unavailable",
        headers={"retry-after": "1"},
    )


def refused(refusal: Refusal) -> RateLimited:
    """The 429 of the backend's ``refusal``: a budget's or a rate limit's."""
    # A bucket's refill is known to the millisecond: retry-after-ms lets the openai and
    # anthropic SDKs (which read it first) come back then, not at the next whole second.
    # A budget's refusal and a concurrency cap's have no wait: none is known (in-flight
    # requests may free either at any moment; a budget's period end is no promise, and
    # days of it would hold the anthropic SDK asleep, which caps a wait only at ~50 days).
    wait = refusal.retry_after_s
    headers = {} if wait is None else wait_headers(wait_value(wait))
    if refusal.code == "budget_exceeded":
        scope = refusal.scope.split(":", 1)[0]
        return RateLimited(
            f"Budget exceeded: the {scope} budget cannot cover this request's worst-case "
            "cost. Lower max_tokens, use a cheaper model, or ask an admin to raise the budget.",
            code="budget_exceeded",
            headers=headers,
        )
    return RateLimited(
        f"Rate limit exceeded for {refusal.scope.split(':', 1)[0]}; retry later.",
        code="rate_limit_exceeded",
        headers=headers,
    )


def unbounded_input(param: str, deployment: Deployment) -> InvalidRequest:
    """The 400 of a request whose input the upstream adds (a stored conversation, a built-in
    tool's results) on a deployment whose context window, the only bound, is not known."""
    return InvalidRequest(
        f"'{param}' makes the upstream add input the gateway cannot count (a stored "
        "conversation, a built-in tool's results), which a budget bounds by the deployment's "
        f"context window; deployment '{deployment.id}' of model '{deployment.group}' states "
        "none, so this request's cost has no bound and it is refused. Send the whole "
        "conversation instead, or ask an admin to set the deployment's context_window.",
        code="cost_unbounded",
        param=param,
    )


def unbounded_output(model: str) -> InvalidRequest:
    """The 400 of a compaction under a budget on a model whose max output is not known: its
    output, which it takes no limit for, has no bound."""
    return InvalidRequest(
        f"A compaction takes no output limit, so under a budget it is reserved for the most "
        f"its model can generate; a deployment of model '{model}' states no max_output, so "
        "this request's cost has no bound and it is refused. Ask an admin to set the "
        "deployment's max_output.",
        code="cost_unbounded",
        param="model",
    )


def unpriced_model(model: str) -> PermissionDenied:
    """The 403 of a request under a budget for a model only unpriced deployments serve, where
    ``limits.unpriced`` is ``refuse``: what they cost is not known, so no budget bounds it.
    A 403, as for a model the caller's key may not use: the request is sound, this caller
    may not have it served, and asking again (a 429's promise) changes nothing."""
    return PermissionDenied(
        f"Model '{model}' has no price (none in config or the price catalog) and a budget is "
        "in force for this request: its cost could not be counted against the budget, so the "
        "gateway refuses it (limits.unpriced: refuse). Use a priced model, or ask an admin to "
        "set the deployment's price (0 for a model that really is free).",
        code="model_unpriced",
        param="model",
    )
