"""A deployment's own limits, per attempt: the ticket each call on it holds, and what each
attempt used, which its deployment's limits are charged (the provider counts a prompt it
read against the deployment's own TPM, answer or none)."""

from __future__ import annotations

from tollway.core.context import Attempt, RequestContext
from tollway.core.errors import DeploymentBusy
from tollway.core.types import Deployment
from tollway.limits.backend import Refusal, Ticket
from tollway.limits.refusals import refused


def hold_deployment_ticket(
    ctx: RequestContext, deployment: Deployment, outcome: Ticket | Refusal
) -> None:
    """Keep the ticket the deployment's limits gave the attempt, or raise ``DeploymentBusy``
    (the router then tries the next candidate)."""
    if isinstance(outcome, Refusal):
        error = refused(outcome)
        raise DeploymentBusy(
            f"Deployment {deployment.id} is at its own rate limit; retry later.",
            code="rate_limit_exceeded",
            headers=error.headers,
        )
    if ctx.deployment_tickets is None:
        ctx.deployment_tickets = []
    ctx.deployment_tickets.append(outcome)


def attempt_tokens(ctx: RequestContext, attempt: Attempt) -> int:
    """The tokens ``attempt`` used, which its deployment's limits are charged: what a failed
    or cut call used all the same (``Attempt.spent``: the prompt its stream's head reported,
    or the prompt of a call a time limit or its client cut once sent), else the request's
    usage less what its other attempts used (the metering adds theirs to it), which is the
    answer's for the attempt that answered and nothing for one that used nothing."""
    if attempt.spent is not None:
        return attempt.spent.total_tokens
    if attempt.counting is not None:
        # Its prompt, still being counted off the event loop: admission's count, as a rule
        # (``on_attempt`` counts it for a deployment with limits of its own).
        return ctx.input_tokens_estimate or 0
    usage = ctx.usage
    if usage is None:
        return 0
    others = sum(a.spent.total_tokens for a in ctx.tries if a.spent and a is not attempt)
    return max(0, usage.total_tokens - others)


def ticket_tokens(ctx: RequestContext, ticket: Ticket) -> int:
    """What a deployment ticket still held at the end is settled with: what the latest
    attempt on its deployment used (none began: nothing)."""
    scope = ticket.claim.limits[0][0]
    for attempt in reversed(ctx.tries):
        if "deployment:" + attempt.deployment.id == scope:
            return attempt_tokens(ctx, attempt)
    return 0
