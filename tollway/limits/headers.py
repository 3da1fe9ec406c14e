"""The headers admission adds to an answer: the rate limits and the budget it has left."""

from __future__ import annotations

from collections.abc import Sequence

from tollway.core.context import RequestContext
from tollway.limits.backend import MICRO, RateSpec, Ticket


def limit_headers(ctx: RequestContext, ticket: Ticket) -> None:
    """Tell the client what the admitted request left of its rate limits and budgets."""
    headers = ctx.response_headers
    limits = ticket.claim.limits
    if limits:
        remaining = ticket.remaining
        if len(limits) == 1:  # the usual case, one scope
            scope, spec = limits[0]
            requests, tokens = remaining.get(scope, (None, None))
            rpm, tpm = spec.rpm, spec.tpm
        else:
            # Each pair of headers tells the scope with the least of it left: the requests
            # of one (a key's rpm) and the tokens of another (a model's tpm) may be what
            # refuses next.
            rpm, requests = tightest(limits, remaining, 0)
            tpm, tokens = tightest(limits, remaining, 1)
        if rpm is not None and requests is not None:
            headers["x-ratelimit-limit-requests"] = str(rpm)
            headers["x-ratelimit-remaining-requests"] = str(int(requests))
        if tpm is not None and tokens is not None:
            headers["x-ratelimit-limit-tokens"] = str(tpm)
            headers["x-ratelimit-remaining-tokens"] = str(int(tokens))
    if ticket.budget_remaining_micros is not None:
        headers["x-tollway-budget-remaining-usd"] = usd(ticket.budget_remaining_micros)


def budget_remaining_header(ctx: RequestContext, ticket: Ticket, micros: int) -> None:
    """Tell the client what its tightest budget has left once the request settled at
    ``micros``."""
    if ticket.budget_remaining_micros is not None:
        left = ticket.budget_remaining_micros + ticket.claim.reserve_micros - micros
        ctx.response_headers["x-tollway-budget-remaining-usd"] = usd(left)


def tightest(
    limits: Sequence[tuple[str, RateSpec]],
    remaining: dict[str, tuple[float | None, float | None]],
    which: int,
) -> tuple[int | None, float | None]:
    """Among ``limits``, the scope with the least left of requests (``which`` 0) or tokens
    (1) after admission: its limit per minute and what is left (``None``: no scope has one)."""
    least: tuple[int | None, float | None] = (None, None)
    for scope, spec in limits:
        left = remaining.get(scope, (None, None))[which]
        if left is not None and (least[1] is None or left < least[1]):
            least = (spec.rpm if which == 0 else spec.tpm, left)
    return least


def usd(micros: int) -> str:
    """Micro-dollars as dollars with six decimals, exactly: integer arithmetic, no float
    (formatting a float cost about 2,000 instructions a header, and loses cents past 2**53
    micro-dollars)."""
    dollars, rest = divmod(max(0, micros), MICRO)
    return f"{dollars}.{rest:06d}"
