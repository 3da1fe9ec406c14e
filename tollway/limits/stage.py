"""The admission stage: rate limits per key, user, team and model around each request.

Input tokens are counted by the local tokenizer of the model's first deployment. Budgets,
per-deployment limits (``on_attempt``) and the Redis backend are not wired here yet; see
docs/limits.md for what this stage covers today.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from tollway.config.schema import LimitsConfig, RateLimitConfig
from tollway.core.context import RequestContext
from tollway.core.errors import RateLimited
from tollway.core.pipeline import Reply, Stage
from tollway.limits.backend import Claim, Limiter, RateSpec, Ticket


def _spec(config: RateLimitConfig) -> RateSpec:
    return RateSpec(tpm=config.tpm, rpm=config.rpm, max_concurrent=config.max_concurrent)


def _or_inf(value: float | None) -> float:
    return math.inf if value is None else value


CountInput = Callable[[RequestContext], int]
"""The request's input tokens as the local tokenizer counts them (pricing/tokens.py)."""


class Admission(Stage):
    """Takes tokens and a request from every applicable bucket; 429 when one is empty."""

    name = "admission"

    def __init__(self, config: LimitsConfig, limiter: Limiter, count: CountInput) -> None:
        self._config = config
        self._limiter = limiter
        self._count = count
        # Precomputed so a request without limits does one dict lookup per scope.
        self._keys = {k: _spec(v) for k, v in config.keys.items()}
        self._users = {k: _spec(v) for k, v in config.users.items()}
        self._teams = {k: _spec(v) for k, v in config.teams.items()}
        self._models = {k: _spec(v) for k, v in config.models.items()}
        self._tickets: dict[int, Ticket] = {}

    def _scopes(self, ctx: RequestContext) -> list[tuple[str, RateSpec]]:
        scopes: list[tuple[str, RateSpec]] = []
        principal = ctx.principal
        if principal is not None:
            if (spec := self._keys.get(principal.id)) is not None:
                scopes.append((f"key:{principal.id}", spec))
            if principal.user and (spec := self._users.get(principal.user)) is not None:
                scopes.append((f"user:{principal.user}", spec))
            if principal.team and (spec := self._teams.get(principal.team)) is not None:
                scopes.append((f"team:{principal.team}", spec))
        if (spec := self._models.get(ctx.model)) is not None:
            scopes.append((f"model:{ctx.model}", spec))
        return scopes

    async def on_request(self, ctx: RequestContext) -> Reply | None:
        """Admit the request or raise ``RateLimited``."""
        scopes = self._scopes(ctx)
        if not scopes:
            return None
        estimate = ctx.input_tokens_estimate
        if estimate is None:
            estimate = ctx.input_tokens_estimate = self._count(ctx)
        max_output = self._config.default_max_output
        if ctx.chat is not None and ctx.chat.max_tokens is not None:
            max_output = ctx.chat.max_tokens
        elif ctx.embedding is not None:
            max_output = 0
        outcome = await self._limiter.admit(Claim(ctx.request_id, scopes, estimate + max_output))
        if not isinstance(outcome, Ticket):
            headers = {}
            if outcome.retry_after_s is not None:
                headers["retry-after"] = str(max(1, math.ceil(outcome.retry_after_s)))
            raise RateLimited(
                f"Rate limit exceeded for {outcome.scope.split(':', 1)[0]}; retry later.",
                code=outcome.code,
                headers=headers,
            )
        self._tickets[id(ctx)] = outcome
        self._headers(ctx, outcome)
        return None

    def _headers(self, ctx: RequestContext, ticket: Ticket) -> None:
        remaining = ticket.remaining
        scope, spec = min(
            ticket.claim.limits, key=lambda s: _or_inf(remaining.get(s[0], (None, None))[1])
        )
        requests, tokens = remaining.get(scope, (None, None))
        headers = ctx.response_headers
        if spec.rpm is not None and requests is not None:
            headers["x-ratelimit-limit-requests"] = str(spec.rpm)
            headers["x-ratelimit-remaining-requests"] = str(int(requests))
        if spec.tpm is not None and tokens is not None:
            headers["x-ratelimit-limit-tokens"] = str(spec.tpm)
            headers["x-ratelimit-remaining-tokens"] = str(int(tokens))

    async def on_complete(self, ctx: RequestContext) -> None:
        """Correct the buckets to the actual usage (nothing used when the request failed)."""
        ticket = self._tickets.pop(id(ctx), None)
        if ticket is None:
            return
        # A request no provider answered used nothing; a cut stream has its usage counted
        # by the metering (pricing/metering.py) before this runs.
        usage = ctx.usage
        await self._limiter.settle(ticket, usage.total_tokens if usage is not None else 0, 0)
