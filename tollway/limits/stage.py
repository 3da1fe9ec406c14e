"""The admission stage: rate limits and budgets around every request that costs money.

``on_request`` takes, in one atomic step of the backend, from every rate-limited scope of
the request (key, user, team, model) and reserves its worst-case cost from every budget it
is charged to (org, key, user, team). The worst case is the request's input as each
deployment that may serve it (its group's and its fallback chain's) counts it, with a margin where
that count is an estimate, plus the max output, priced at that deployment: the dearest of
them is reserved. Under a budget a request
without ``max_tokens`` gets ``limits.default_max_output``, so the reservation bounds what
the provider can bill; likewise a request offering a server-side tool billed per call (web
search) without a bound on its calls gets ``limits.default_max_tool_calls``, and the calls
are reserved at the dearest candidate's fee (``pricing/tools.py``; Gemini's Google Search,
which takes no bound, is reserved that many queries). ``on_attempt`` applies
per-deployment limits (a refusal moves on to the next candidate). Settlement replaces every
reservation with the actual cost: for a complete answer (chat or embeddings) once it is
costed, before it is sent (so ``x-tollway-budget-remaining-usd`` is exact), else in
``on_complete``, which runs whatever ended the request.

With ``limits.unpriced: refuse``, a request under a budget is served by priced deployments
only: the router skips the unpriced candidates (``ctx.priced_only``), and a model only
unpriced ones serve is refused (403) before anything is taken.

Beside it: what a request may cost on its candidates (``candidates.py``), what a budget's
policy does instead of refusing (``budget_policy.py``: shrink, downgrade), a deployment's
own limits per attempt (``deployment_limits.py``), the headers admission adds
(``headers.py``) and the errors it raises (``refusals.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

from tollway.core.context import Attempt, RequestContext
from tollway.core.pipeline import Reply, Stage
from tollway.core.types import Deployment
from tollway.limits.backend import (
    BudgetClaim,
    Claim,
    LimiterUnavailable,
    RateSpec,
    Refusal,
    Ticket,
    nearest_micros,
)
from tollway.limits.budget import Budget
from tollway.limits.budget_policy import affordable_tokens, downgrade, least_output, thinking_within
from tollway.limits.candidates import (
    Candidates,
    CountInput,
    candidates_of,
    chain_names,
    choices,
    group_candidates,
    held_input,
    priced_inputs,
    worst_case_micros,
)
from tollway.limits.deployment_limits import attempt_tokens, hold_deployment_ticket, ticket_tokens
from tollway.limits.headers import budget_remaining_header, limit_headers
from tollway.limits.refusals import limiter_down, refused, unbounded_output, unpriced_model
from tollway.limits.service import LimitService
from tollway.pricing.metering import image_count
from tollway.pricing.tools import bound_tool_calls, tool_uses
from tollway.routing.table import RoutingTable

_COMPACTION = "/compact"
"""``ChatRequest.responses_route`` of a compaction (``POST /v1/responses/compact``)."""


class Admission(Stage):
    """Admits, shrinks, downgrades or refuses requests; settles what they took."""

    name = "admission"
    reads_answers = False  # settles from the context's usage
    counts_input = True

    def __init__(self, service: LimitService, table: RoutingTable, count: CountInput) -> None:
        self._service = service
        self._table = table
        self._count = count
        self._candidates = candidates_of(table)
        self._narrowed: dict[tuple[str, tuple[str, ...]], Candidates] = {}
        """Candidates without the fallbacks a key may not use, by model and those left."""

    # --- admission ----------------------------------------------------------------------

    def on_request(self, ctx: RequestContext) -> Awaitable[Reply | None] | None:
        """Admit the request, or raise ``RateLimited`` (429) / ``LimiterDown`` (503).

        Nothing to wait for (``None``) when no limit or budget applies to the request, or
        when the backend is in memory and admits it at once.
        """
        service = self._service
        book = service.book
        if book.empty:
            return None
        principal = ctx.principal
        budgets = book.budgets_for(principal)
        if budgets:
            downgrade(ctx, budgets, self._candidates, service)
            if service.config.unpriced == "refuse":
                self._priced_only(ctx)
        scopes = book.scopes(principal, ctx.model)
        if not scopes and not budgets:
            return None
        claim = self._claim(ctx, scopes, budgets)
        immediate = service.immediate
        if immediate is None:
            return self._admit_request(ctx, claim, budgets)
        outcome = immediate.admit_now(claim)
        if isinstance(outcome, Ticket):
            self._admitted(ctx, outcome, budgets)
            return None
        return self._decide(ctx, claim, budgets, outcome)  # a refusal: shrink or refuse

    def _claim(
        self, ctx: RequestContext, scopes: list[tuple[str, RateSpec]], budgets: list[Budget]
    ) -> Claim:
        """What the request takes: its scopes' tokens, and under budgets its worst case (a
        request without ``max_tokens`` is given one, so the reservation bounds the bill)."""
        estimate = self._estimate(ctx)
        chat = ctx.chat
        config = self._service.config
        max_output = 0
        if chat is not None:
            # 0 (a cache warm-up: nothing generated) is a limit like any other, not unset.
            max_output = config.default_max_output if chat.max_tokens is None else chat.max_tokens
        if not budgets:
            held = held_input(estimate, self._candidates.get(ctx.model))
            tokens = held + max_output * choices(ctx)
            return Claim(ctx.request_id, scopes, tokens, hold_s=config.hold)
        candidates = self._candidates_for(ctx)
        if chat is not None and chat.responses_route == _COMPACTION:
            # A compaction takes no output limit (none is sent): only the model's own bounds
            # what it generates, so that is reserved, and no policy can shrink it.
            most = None if candidates is None else candidates.most_output
            if most is None:
                raise unbounded_output(ctx.model)
            max_output = most
        elif chat is not None and chat.max_tokens is None:
            if candidates is not None and candidates.max_output:
                max_output = min(max_output, candidates.max_output)
            chat.max_tokens = max_output
        if chat is not None and candidates is not None and candidates.tool_fees:
            # As ``max_tokens``: the provider stops where the reservation does.
            bound_tool_calls(chat, config.default_max_tool_calls)
        return self._budget_claim(ctx, scopes, budgets, candidates, estimate, max_output)

    async def _admit_request(
        self, ctx: RequestContext, claim: Claim, budgets: list[Budget]
    ) -> None:
        await self._decide(ctx, claim, budgets, await self._admit(claim))

    async def _decide(
        self,
        ctx: RequestContext,
        claim: Claim,
        budgets: list[Budget],
        outcome: Ticket | Refusal,
    ) -> None:
        """After the first answer of the backend: shrink and ask again where a refusing
        budget's policy says so, then refuse or hold the ticket (fail-open: one that holds
        nothing, so the request's cost is still charged)."""
        chat = ctx.chat
        estimate = ctx.input_tokens_estimate or 0
        refused_by: set[str] = set()
        while (
            isinstance(outcome, Refusal)
            and outcome.code == "budget_exceeded"
            and chat is not None
            and chat.max_tokens is not None  # set by ``_claim`` under a budget
            and outcome.scope not in refused_by
        ):
            # ``shrink``: lower max output to what the refusing budget still pays for.
            refused_by.add(outcome.scope)
            pairs = zip(budgets, claim.budgets, strict=True)
            budget = next(b for b, c in pairs if c.account == outcome.scope)
            candidates = self._candidates_for(ctx)
            if budget.policy != "shrink" or candidates is None:
                break
            config = self._service.config
            margin = config.estimate_margin
            prices, inputs = priced_inputs(ctx, estimate, candidates, self._count, margin)
            images = image_count(ctx) if candidates.per_image else 0
            unbounded = config.default_max_tool_calls
            uses = tool_uses(chat, unbounded) if candidates.tool_fees else ()
            left = outcome.remaining_micros or 0
            answers = max(1, chat.n or 1)
            affordable = affordable_tokens(prices, inputs, images, left, uses) // answers
            if affordable < least_output(chat, candidates):
                break  # as unaffordable as no output at all
            max_output = min(chat.max_tokens, affordable)
            if not thinking_within(chat, max_output):
                break
            chat.max_tokens = max_output
            ctx.response_headers["x-tollway-budget-max-tokens"] = str(max_output)
            claim = self._budget_claim(ctx, claim.limits, budgets, candidates, estimate, max_output)
            outcome = await self._admit(claim)
        if isinstance(outcome, Refusal):
            raise refused(outcome)
        self._admitted(ctx, outcome, budgets)

    def _admitted(self, ctx: RequestContext, ticket: Ticket, budgets: list[Budget]) -> None:
        ctx.ticket = ticket
        ctx.budgets = tuple(budgets)
        limit_headers(ctx, ticket)

    async def _admit(self, claim: Claim) -> Ticket | Refusal:
        try:
            return await self._service.admit(claim)
        except LimiterUnavailable:
            raise limiter_down() from None

    def _priced_only(self, ctx: RequestContext) -> None:
        """Under a budget with ``limits.unpriced: refuse``: leave the unpriced candidates to
        the router to skip, or refuse (403) when only unpriced ones could serve. Before the
        claim, so a refused request takes nothing from any limit or budget."""
        candidates = self._candidates_for(ctx)
        if candidates is None or not candidates.unpriced:
            return  # an unknown model is routing's to refuse
        if not candidates.priced:
            raise unpriced_model(ctx.model)
        ctx.priced_only = True

    def _candidates_for(self, ctx: RequestContext) -> Candidates | None:
        """The candidates that may serve the request: the router passes over the fallbacks
        the caller's key may not use, so their prices bound nothing it can cost."""
        candidates = self._candidates.get(ctx.model)
        principal = ctx.principal
        if (
            candidates is None
            or not candidates.fallbacks
            or principal is None
            or principal.allowed_models is None
        ):
            return candidates
        allowed = chain_names(self._table.fallback_chain(ctx.model, principal.may_use))
        if allowed == candidates.fallbacks:
            return candidates
        narrowed = self._narrowed.get((ctx.model, allowed))
        if narrowed is None:
            group = self._table.get(ctx.model)
            if group is None:
                return candidates
            narrowed = group_candidates(self._table, group, allowed)
            self._narrowed[(ctx.model, allowed)] = narrowed
        return narrowed

    def _estimate(self, ctx: RequestContext) -> int:
        """``ctx.input_tokens_estimate``: the input as the model's first deployment counts it
        (counted now, and kept, when nothing has counted it yet)."""
        estimate = ctx.input_tokens_estimate
        if estimate is None:
            candidates = self._candidates.get(ctx.model)
            first = candidates.counters[0] if candidates is not None else None
            estimate = ctx.input_tokens_estimate = self._count(ctx, first)
        return estimate

    def _budget_claim(
        self,
        ctx: RequestContext,
        scopes: Sequence[tuple[str, RateSpec]],
        budgets: Sequence[Budget],
        candidates: Candidates | None,
        estimate: int,
        max_output: int,
    ) -> Claim:
        reserve = 0
        # Every one of ``n`` choices may use the whole max output.
        output = max_output * choices(ctx)
        service = self._service
        config = service.config
        if candidates is not None:
            images = image_count(ctx) if candidates.per_image else 0
            margin = config.estimate_margin
            prices, inputs = priced_inputs(ctx, estimate, candidates, self._count, margin)
            unbounded = config.default_max_tool_calls
            uses = tool_uses(ctx.chat, unbounded) if candidates.tool_fees else ()
            reserve = worst_case_micros(prices, inputs, output, images, uses)
        account = service.account
        accounts = [BudgetClaim(account(b), b.limit_micros) for b in budgets]
        tokens = held_input(estimate, candidates) + output
        return Claim(ctx.request_id, scopes, tokens, accounts, reserve, config.hold)

    # --- per-deployment limits ----------------------------------------------------------

    def on_attempt(self, ctx: RequestContext, deployment: Deployment) -> Awaitable[None] | None:
        """Take from the deployment's own limits; a refusal tries the next candidate.

        Called before each call, a retry on the same deployment's too: a failed call gave
        back what it had taken but for what it used (``on_attempt_end``), so each call runs
        under a claim of its own, and what each uses is charged."""
        spec = self._service.book.deployment(deployment.id)
        if spec is None:
            return None
        tokens = self._estimate(ctx)
        window = deployment.context_window
        if window is not None:  # all it can read: over it, refused, and nothing used
            tokens = min(tokens, window)
        if ctx.chat is not None:
            most = ctx.chat.max_tokens
            most = self._service.config.default_max_output if most is None else most
            tokens += most * choices(ctx)
        scope = "deployment:" + deployment.id
        claim = Claim(ctx.request_id, [(scope, spec)], tokens, hold_s=self._service.config.hold)
        immediate = self._service.immediate
        if immediate is None:
            return self._take_deployment(ctx, deployment, claim)
        hold_deployment_ticket(ctx, deployment, immediate.admit_now(claim))
        return None

    async def _take_deployment(
        self, ctx: RequestContext, deployment: Deployment, claim: Claim
    ) -> None:
        hold_deployment_ticket(ctx, deployment, await self._admit(claim))

    def on_attempt_end(self, ctx: RequestContext, attempt: Attempt) -> Awaitable[None] | None:
        """A failed attempt gives its deployment's limits back now, keeping only what it
        used (``attempt_tokens``): the provider counts a prompt it read against the
        deployment's own TPM, answer or none."""
        if attempt.error is None or not ctx.deployment_tickets:
            return None
        scope = "deployment:" + attempt.deployment.id
        held = [
            t for t in ctx.deployment_tickets if not t.settled and t.claim.limits[0][0] == scope
        ]
        tokens = attempt_tokens(ctx, attempt)
        if self._service.immediate is None:
            return self._give_back(held, tokens)
        for ticket in held:
            self._service.settle_now(ticket, tokens, 0)
        return None

    async def _give_back(self, held: list[Ticket], tokens: int) -> None:
        for ticket in held:
            await self._service.settle(ticket, tokens, 0)

    # --- settlement ---------------------------------------------------------------------

    def on_costed(self, ctx: RequestContext) -> Awaitable[None] | None:
        """Settle a complete answer (chat or embeddings) before it is sent, so its headers say
        what is left."""
        ticket = ctx.ticket
        if ticket is None or ticket.settled:
            return None
        if self._service.immediate is None:
            return self._settle_answer(ctx, ticket)
        tokens, micros = _actual(ctx)
        self._service.settle_now(ticket, tokens, micros, ctx.budgets)
        budget_remaining_header(ctx, ticket, micros)
        return None

    async def _settle_answer(self, ctx: RequestContext, ticket: Ticket) -> None:
        tokens, micros = _actual(ctx)
        await self._service.settle(ticket, tokens, micros, ctx.budgets)
        budget_remaining_header(ctx, ticket, micros)

    def on_complete(self, ctx: RequestContext) -> Awaitable[None] | None:
        """Settle whatever is still held, whatever ended the request."""
        ticket = ctx.ticket
        held = ticket is not None and not ticket.settled
        if not held and not ctx.deployment_tickets:
            return None
        if self._service.immediate is None:
            return self._settle_rest(ctx)
        settle = self._service.settle_now
        if ticket is not None and not ticket.settled:
            settle(ticket, *_actual(ctx), ctx.budgets)
        for kept in ctx.deployment_tickets or ():
            if not kept.settled:
                settle(kept, ticket_tokens(ctx, kept), 0)
        return None

    async def _settle_rest(self, ctx: RequestContext) -> None:
        ticket = ctx.ticket
        if ticket is not None and not ticket.settled:
            await self._service.settle(ticket, *_actual(ctx), ctx.budgets)
        for kept in ctx.deployment_tickets or ():
            if not kept.settled:
                await self._service.settle(kept, ticket_tokens(ctx, kept), 0)


def _actual(ctx: RequestContext) -> tuple[int, int]:
    """The tokens and micro-dollars a request used, to settle with. A request no provider
    answered used and cost nothing; a cut stream's usage was counted by the metering
    (pricing/metering.py) before this runs. The cost is the request log's, to the
    micro-dollar (``nearest_micros``), so spend reports add up to the budgets' spend."""
    usage = ctx.usage
    tokens = usage.total_tokens if usage is not None else 0
    return tokens, nearest_micros(ctx.cost_usd) if ctx.cost_usd else 0


__all__ = ["Admission", "CountInput", "RateSpec"]
