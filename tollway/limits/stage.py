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
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from tollway.core.context import Attempt, RequestContext
from tollway.core.errors import DeploymentBusy, InvalidRequest, LimiterDown, RateLimited
from tollway.core.pipeline import Reply, Stage
from tollway.core.types import ChatRequest, Deployment, Price
from tollway.limits.backend import (
    MICRO,
    BudgetClaim,
    Claim,
    LimiterUnavailable,
    RateSpec,
    Refusal,
    Ticket,
    nearest_micros,
    to_micros,
)
from tollway.limits.budget import Budget, affordable_output
from tollway.limits.service import LimitService
from tollway.pricing.cost import worst_case_usd
from tollway.pricing.metering import image_count
from tollway.pricing.tokens import counted_alike
from tollway.pricing.tools import ToolUse, bound_tool_calls, tool_uses
from tollway.routing.table import ModelGroup, RoutingTable
from tollway.wire.claude_effort import MIN_BUDGET
from tollway.wire.responses_request import MAX_OUTPUT_TOKENS

_COMPACTION = "/compact"
"""``ChatRequest.responses_route`` of a compaction (``POST /v1/responses/compact``)."""

CountInput = Callable[[RequestContext, Deployment | None], int]
"""The request's input tokens as a deployment counts them locally (pricing/tokens.py);
``None``: a model name no group serves (routing refuses it)."""


def limiter_down() -> LimiterDown:
    """The answer when the shared limiter (Redis) cannot be reached and nothing may pass."""
    return LimiterDown(
        "Limits cannot be checked right now (the shared limiter is unreachable); retry shortly.",
        code="limiter_unavailable",
        headers={"retry-after": "1"},
    )


@dataclass(frozen=True, slots=True)
class Candidates:
    """What admission needs to know of the deployments that may serve one model name."""

    counters: tuple[Deployment, ...]
    """One candidate for each way the candidates count input tokens (``counted_alike``),
    the group's first deployment first: its count is ``ctx.input_tokens_estimate``."""
    prices: tuple[tuple[Price, int], ...]
    """Every priced candidate's price, with the index in ``counters`` of its way of counting
    (unpriced candidates cost nothing)."""
    windows: tuple[int | None, ...]
    """The context window of each of ``prices``' candidates (``None``: not known)."""
    speaks_responses: tuple[Deployment | None, ...]
    """Each of ``prices``' candidates that speaks the Responses API (``None``: it does not)."""
    priced: tuple[Deployment, ...]
    """``prices``' candidates themselves."""
    max_output: int | None
    """The smallest max output among candidates that state one."""
    per_image: bool
    """Some candidate prices images apart (the request's images are then counted)."""
    tool_fees: bool = False
    """Some candidate prices server-side tool calls (the request's tools are then read)."""
    fallbacks: tuple[str, ...] = ()
    """The fallback model names (the chain, transitively) whose deployments are among the
    candidates."""
    most_output: int | None = None
    """The largest max output among the candidates; ``None`` when one states none (what
    bounds a request that takes no output limit: a compaction)."""


def candidates_of(table: RoutingTable) -> dict[str, Candidates]:
    """Per model name: its deployments and those of its fallback chain."""
    return {
        group.name: _candidates(table, group, _names(table.fallback_chain(group.name)))
        for group in table.groups
    }


def _names(groups: Sequence[ModelGroup]) -> tuple[str, ...]:
    return tuple(group.name for group in groups)


def _candidates(table: RoutingTable, group: ModelGroup, fallbacks: Sequence[str]) -> Candidates:
    """The candidates of ``group`` with those of the ``fallbacks`` (its chain, flattened)."""
    deployments: list[Deployment] = list(group.deployments)
    for name in fallbacks:
        fallback = table.get(name)
        if fallback is not None:
            deployments += fallback.deployments
    ways: dict[tuple[str, str, bool], int] = {}
    counters: list[Deployment] = []
    prices: list[tuple[Price, int]] = []
    windows: list[int | None] = []
    speaks_responses: list[Deployment | None] = []
    priced: list[Deployment] = []
    for deployment in deployments:
        way = ways.setdefault(counted_alike(deployment), len(counters))
        if way == len(counters):
            counters.append(deployment)
        if deployment.price is not None:
            prices.append((deployment.price, way))
            windows.append(deployment.context_window)
            speaks_responses.append(deployment if deployment.responses_api else None)
            priced.append(deployment)
    outputs = [d.max_output for d in deployments if d.max_output]
    every_output = len(outputs) == len(deployments) and bool(outputs)
    return Candidates(
        counters=tuple(counters),
        prices=tuple(prices),
        windows=tuple(windows),
        speaks_responses=tuple(speaks_responses),
        priced=tuple(priced),
        max_output=min(outputs) if outputs else None,
        most_output=max(outputs) if every_output else None,
        per_image=any(price.per_image for price, _ in prices),
        tool_fees=any(price.tool_fees for price, _ in prices),
        fallbacks=tuple(fallbacks),
    )


def worst_case_micros(
    prices: Sequence[tuple[Price, int]],
    inputs: Sequence[int],
    output: int,
    images: int,
    uses: Sequence[ToolUse] = (),
) -> int:
    """The most the request can cost on any candidate: each of ``prices`` with the input
    its way of counting reserves (``inputs``) and the server tool calls it may make
    (``uses``), in micro-dollars rounded up."""
    most = 0.0
    for price, way in prices:
        usd = worst_case_usd(price, inputs[way], output, images=images, tool_uses=uses)
        if usd > most:
            most = usd
    return to_micros(most)


def _affordable(
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


def _refused(refusal: Refusal) -> RateLimited:
    headers = {}
    if refusal.retry_after_s is not None:
        headers["retry-after"] = str(max(1, math.ceil(refusal.retry_after_s)))
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


def _usd(micros: int) -> str:
    """Micro-dollars as dollars with six decimals, exactly: integer arithmetic, no float
    (formatting a float cost about 2,000 instructions a header, and loses cents past 2**53
    micro-dollars)."""
    dollars, rest = divmod(max(0, micros), MICRO)
    return f"{dollars}.{rest:06d}"


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
        book = self._service.book
        if book.empty:
            return None
        principal = ctx.principal
        budgets = book.budgets_for(principal)
        if budgets:
            self._downgrade(ctx, budgets)
        scopes = book.scopes(principal, ctx.model)
        if not scopes and not budgets:
            return None
        claim = self._claim(ctx, scopes, budgets)
        immediate = self._service.immediate
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
            tokens = estimate + max_output * _choices(ctx)
            return Claim(ctx.request_id, scopes, tokens, hold_s=config.hold)
        candidates = self._candidates_for(ctx)
        if chat is not None and chat.responses_route == _COMPACTION:
            # A compaction takes no output limit (none is sent): only the model's own bounds
            # what it generates, so that is reserved, and no policy can shrink it.
            most = None if candidates is None else candidates.most_output
            if most is None:
                raise _unbounded_output(ctx.model)
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
            prices, inputs = self._priced_inputs(ctx, estimate, candidates)
            images = image_count(ctx) if candidates.per_image else 0
            unbounded = self._service.config.default_max_tool_calls
            uses = tool_uses(chat, unbounded) if candidates.tool_fees else ()
            left = outcome.remaining_micros or 0
            choices = max(1, chat.n or 1)
            affordable = _affordable(prices, inputs, images, left, uses) // choices
            if affordable < _least_output(chat, candidates):
                break  # as unaffordable as no output at all
            max_output = min(chat.max_tokens, affordable)
            if not _thinking_within(chat, max_output):
                break
            chat.max_tokens = max_output
            ctx.response_headers["x-tollway-budget-max-tokens"] = str(max_output)
            claim = self._budget_claim(ctx, claim.limits, budgets, candidates, estimate, max_output)
            outcome = await self._admit(claim)
        if isinstance(outcome, Refusal):
            raise _refused(outcome)
        self._admitted(ctx, outcome, budgets)

    def _admitted(self, ctx: RequestContext, ticket: Ticket, budgets: list[Budget]) -> None:
        ctx.ticket = ticket
        ctx.budgets = tuple(budgets)
        self._headers(ctx, ticket)

    async def _admit(self, claim: Claim) -> Ticket | Refusal:
        try:
            return await self._service.admit(claim)
        except LimiterUnavailable:
            raise limiter_down() from None

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
        allowed = _names(self._table.fallback_chain(ctx.model, principal.may_use))
        if allowed == candidates.fallbacks:
            return candidates
        narrowed = self._narrowed.get((ctx.model, allowed))
        if narrowed is None:
            group = self._table.get(ctx.model)
            if group is None:
                return candidates
            narrowed = _candidates(self._table, group, allowed)
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

    def _reserved_inputs(
        self, ctx: RequestContext, estimate: int, candidates: Candidates
    ) -> list[int]:
        """The input reserved for each of the candidates' ways of counting: its count, plus
        ``limits.estimate_margin`` where the count is an estimate, not the exact encoding."""
        margin = 1.0 + self._service.config.estimate_margin
        counters = candidates.counters
        if len(counters) == 1:  # the usual group: every candidate counts as the first
            return [estimate if counters[0].tokenizer is not None else math.ceil(estimate * margin)]
        inputs = []
        for way, deployment in enumerate(counters):
            # The first way's count is the estimate; another costs one more count, with the
            # request's repeated texts remembered by the counter.
            tokens = estimate if way == 0 else self._count(ctx, deployment)
            exact = deployment.tokenizer is not None
            inputs.append(tokens if exact else math.ceil(tokens * margin))
        return inputs

    def _priced_inputs(
        self, ctx: RequestContext, estimate: int, candidates: Candidates
    ) -> tuple[Sequence[tuple[Price, int]], list[int]]:
        """The candidates' prices, each with the index in the returned inputs of the input
        reserved for it (``worst_case_micros``' arguments).

        A request only OpenAI's Responses API serves may bring input the gateway never sees:
        a continuation's earlier turns (``previous_response_id``, ``conversation``, item
        references), stored upstream and billed again as input, and what a built-in tool
        reads (search results, files). Its own count bounds nothing, so each candidate is
        reserved its whole context window as input (all one call can hold). A candidate
        that could serve it (one speaking the Responses API, or of a family that translates
        it: Claude searching the web reads its results as input too) without a known window
        leaves the cost unbounded: the request is refused (400), never let through unbounded.
        """
        inputs = self._reserved_inputs(ctx, estimate, candidates)
        chat = ctx.chat
        if chat is None or chat.responses_only is None:
            return candidates.prices, inputs
        prices: list[tuple[Price, int]] = []
        whole: list[int] = []
        translated = chat.responses_only.translated_for
        serving_ones = [
            speaking or (d if d.provider in translated else None)
            for speaking, d in zip(candidates.speaks_responses, candidates.priced, strict=True)
        ]
        pairs = zip(candidates.prices, candidates.windows, serving_ones, strict=True)
        for (price, way), window, serving in pairs:
            if window is None and serving is not None:
                raise _unbounded(chat.responses_only.param, serving)
            prices.append((price, len(whole)))
            whole.append(max(inputs[way], window or 0))
        return prices, whole

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
        output = max_output * _choices(ctx)
        if candidates is not None:
            images = image_count(ctx) if candidates.per_image else 0
            prices, inputs = self._priced_inputs(ctx, estimate, candidates)
            unbounded = self._service.config.default_max_tool_calls
            uses = tool_uses(ctx.chat, unbounded) if candidates.tool_fees else ()
            reserve = worst_case_micros(prices, inputs, output, images, uses)
        account = self._service.account
        accounts = [BudgetClaim(account(b), b.limit_micros) for b in budgets]
        return Claim(
            ctx.request_id, scopes, estimate + output, accounts, reserve,
            self._service.config.hold,
        )  # fmt: skip

    def _downgrade(self, ctx: RequestContext, budgets: Sequence[Budget]) -> None:
        """Past a budget's soft limit, serve a cheaper model where its policy names one."""
        for budget in budgets:
            if budget.soft_ratio is None or ctx.model not in budget.downgrade:
                continue
            cheaper = budget.downgrade[ctx.model]
            if cheaper not in self._candidates:
                continue  # the config names a model this gateway does not serve
            principal = ctx.principal
            if principal is not None and not principal.may_use(cheaper):
                continue  # a budget's policy never widens what the caller's key allows
            spent = self._service.limiter.known_spent(self._service.account(budget))
            if spent is not None and spent >= budget.soft_ratio * budget.limit_micros:
                ctx.response_headers["x-tollway-downgraded-from"] = ctx.model
                ctx.model = cheaper
                if ctx.chat is not None:
                    ctx.chat.model = cheaper
                ctx.input_tokens_estimate = None  # counted again for the new model
                return

    def _headers(self, ctx: RequestContext, ticket: Ticket) -> None:
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
                rpm, requests = _tightest(limits, remaining, 0)
                tpm, tokens = _tightest(limits, remaining, 1)
            if rpm is not None and requests is not None:
                headers["x-ratelimit-limit-requests"] = str(rpm)
                headers["x-ratelimit-remaining-requests"] = str(int(requests))
            if tpm is not None and tokens is not None:
                headers["x-ratelimit-limit-tokens"] = str(tpm)
                headers["x-ratelimit-remaining-tokens"] = str(int(tokens))
        if ticket.budget_remaining_micros is not None:
            headers["x-tollway-budget-remaining-usd"] = _usd(ticket.budget_remaining_micros)

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
        if ctx.chat is not None:
            most = ctx.chat.max_tokens
            most = self._service.config.default_max_output if most is None else most
            tokens += most * _choices(ctx)
        scope = "deployment:" + deployment.id
        claim = Claim(ctx.request_id, [(scope, spec)], tokens, hold_s=self._service.config.hold)
        immediate = self._service.immediate
        if immediate is None:
            return self._take_deployment(ctx, deployment, claim)
        self._took(ctx, deployment, immediate.admit_now(claim))
        return None

    async def _take_deployment(
        self, ctx: RequestContext, deployment: Deployment, claim: Claim
    ) -> None:
        self._took(ctx, deployment, await self._admit(claim))

    @staticmethod
    def _took(ctx: RequestContext, deployment: Deployment, outcome: Ticket | Refusal) -> None:
        if isinstance(outcome, Refusal):
            error = _refused(outcome)
            raise DeploymentBusy(
                f"Deployment {deployment.id} is at its own rate limit; retry later.",
                code="rate_limit_exceeded",
                headers=error.headers,
            )
        if ctx.deployment_tickets is None:
            ctx.deployment_tickets = []
        ctx.deployment_tickets.append(outcome)

    def on_attempt_end(self, ctx: RequestContext, attempt: Attempt) -> Awaitable[None] | None:
        """A failed attempt gives its deployment's limits back now, keeping only what it
        used (``_attempt_tokens``): the provider counts a prompt it read against the
        deployment's own TPM, answer or none."""
        if attempt.error is None or not ctx.deployment_tickets:
            return None
        scope = "deployment:" + attempt.deployment.id
        held = [
            t for t in ctx.deployment_tickets if not t.settled and t.claim.limits[0][0] == scope
        ]
        tokens = _attempt_tokens(ctx, attempt)
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
        self._remaining_header(ctx, ticket, micros)
        return None

    async def _settle_answer(self, ctx: RequestContext, ticket: Ticket) -> None:
        tokens, micros = _actual(ctx)
        await self._service.settle(ticket, tokens, micros, ctx.budgets)
        self._remaining_header(ctx, ticket, micros)

    @staticmethod
    def _remaining_header(ctx: RequestContext, ticket: Ticket, micros: int) -> None:
        if ticket.budget_remaining_micros is not None:
            left = ticket.budget_remaining_micros + ticket.claim.reserve_micros - micros
            ctx.response_headers["x-tollway-budget-remaining-usd"] = _usd(left)

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
                settle(kept, _ticket_tokens(ctx, kept), 0)
        return None

    async def _settle_rest(self, ctx: RequestContext) -> None:
        ticket = ctx.ticket
        if ticket is not None and not ticket.settled:
            await self._service.settle(ticket, *_actual(ctx), ctx.budgets)
        for kept in ctx.deployment_tickets or ():
            if not kept.settled:
                await self._service.settle(kept, _ticket_tokens(ctx, kept), 0)


def _choices(ctx: RequestContext) -> int:
    """The answers a request asks for (``n``): each may generate its whole max output, as
    providers bill and as their own token limits count it."""
    chat = ctx.chat
    return max(1, chat.n or 1) if chat is not None else 1


def _actual(ctx: RequestContext) -> tuple[int, int]:
    """The tokens and micro-dollars a request used, to settle with. A request no provider
    answered used and cost nothing; a cut stream's usage was counted by the metering
    (pricing/metering.py) before this runs. The cost is the request log's, to the
    micro-dollar (``nearest_micros``), so spend reports add up to the budgets' spend."""
    usage = ctx.usage
    tokens = usage.total_tokens if usage is not None else 0
    return tokens, nearest_micros(ctx.cost_usd) if ctx.cost_usd else 0


def _attempt_tokens(ctx: RequestContext, attempt: Attempt) -> int:
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


def _ticket_tokens(ctx: RequestContext, ticket: Ticket) -> int:
    """What a deployment ticket still held at the end is settled with: what the latest
    attempt on its deployment used (none began: nothing)."""
    scope = ticket.claim.limits[0][0]
    for attempt in reversed(ctx.tries):
        if "deployment:" + attempt.deployment.id == scope:
            return _attempt_tokens(ctx, attempt)
    return 0


RESPONSES_LEAST_OUTPUT = int(MAX_OUTPUT_TOKENS[0])
"""The smallest ``max_output_tokens`` OpenAI's Responses API takes (16)."""


def _least_output(chat: ChatRequest, candidates: Candidates) -> int:
    """The smallest output limit ``shrink`` may send: OpenAI's Responses API refuses a
    ``max_output_tokens`` below 16 (a 400), and a Responses request may go to a candidate that
    speaks it; 1 for any other request."""
    if chat.responses_body is not None and any(candidates.speaks_responses):
        return RESPONSES_LEAST_OUTPUT
    return 1


def _thinking_within(chat: ChatRequest, max_output: int) -> bool:
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


def _unbounded(param: str, deployment: Deployment) -> InvalidRequest:
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


def _unbounded_output(model: str) -> InvalidRequest:
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


def _tightest(
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


__all__ = ["Admission", "CountInput", "RateSpec"]
