"""The router: which deployments a request may try, in which order.

``plan`` turns the requested model into candidates: the group's deployments ordered by its
strategy, then those of its fallback chain (``RoutingTable.fallback_chain``: its
``fallbacks`` followed transitively, through the groups the caller may use), without
deployments whose context window cannot hold the request, without unpriced deployments
where admission says only priced ones may serve (``ctx.priced_only``), and, for a Responses
request that only OpenAI's Responses API can serve (a built-in tool, ``previous_response_id``:
see ``ChatRequest.responses_only``), without the deployments that do not speak it. A Responses
request with ``truncation: "auto"`` that no candidate's window holds loses its oldest turns
until the largest holds it (``routing/truncation.py``). The window check refuses or skips only
what surely does not fit: a part the provider alone can size (a PDF by URL, an image by URL:
``uncounted_parts``) counts there at the least it can cost, though admission reserves the most
(pricing/tokens.py). A ``cost`` group with a long-context tier ranks a request that may be
above a tier's threshold by the rates it will pay (its input counted only then:
``strategies.cost_at``). Whether a candidate is available right
now (circuit, 429 rest) is asked by the pipeline just before it tries one, so a half-open
circuit's single probe is claimed only by a request that really sends it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from tollway.config.schema import RoutingConfig
from tollway.core.context import RequestContext
from tollway.core.errors import InvalidRequest
from tollway.core.types import ChatRequest, Deployment, Message, ResponsesOnly, TextPart
from tollway.limits.refusals import unpriced_model
from tollway.pricing.tokens import TokenCounter, uncounted_parts
from tollway.routing.health import DeploymentHealth, HealthBook
from tollway.routing.strategies import STRATEGIES, Candidate, cost_at
from tollway.routing.table import ModelGroup, RoutingTable
from tollway.routing.truncation import oldest_dropped

Kind = Literal["chat", "embedding"]

# A rough count for the context-window check when no stage has counted the input: about four
# characters a token, plus each message's framing.
_CHARS_PER_TOKEN = 4
_TOKENS_PER_MESSAGE = 4


Plan = tuple[Sequence[Candidate], int, float | None]
"""The candidates of one request, best first, how often to retry each, and the group's
deadline in seconds (``None``: none)."""


class Router:
    """Plans requests over one routing table and the shared health book.

    ``config``: the routing settings of the table's config (``exploration``, and the
    pipeline's ``backoff``); the health book's own when not given. A reload builds its router
    before the health book takes the new settings (a config that fails to build changes
    nothing), so it passes them here.
    """

    def __init__(
        self,
        table: RoutingTable,
        health: HealthBook,
        seed: int | None = None,
        counter: TokenCounter | None = None,
        config: RoutingConfig | None = None,
    ) -> None:
        self.table = table
        self.health = health
        self.config = config or health.config
        self._counter = counter
        self._rng = random.Random(seed)
        self._explore = self.config.exploration
        # Health records per group, resolved once: the hot path does no dict lookups.
        self._records: dict[str, list[Candidate]] = {
            group.name: list(zip(group.deployments, health.records(group.deployments), strict=True))
            for group in table.groups
        }
        # Groups where some candidate (fallbacks included) has a context window to check.
        self._windowed = {
            group.name
            for group in table.groups
            if any(
                d.context_window
                for member in (group, *table.fallback_chain(group.name))
                for d in member.deployments
            )
        }
        # The smallest window of each group without fallbacks (its candidates are always
        # its own deployments): a request that surely fits it needs no per-candidate check.
        self._smallest = {
            group.name: min(d.context_window or _UNBOUNDED for d in group.deployments)
            for group in table.groups
            if group.name in self._windowed and not group.fallbacks
        }
        # ``cost`` groups with a long-context tier: the lowest threshold of their tiers (a
        # request surely below it ranks by the base prices, without counting its input).
        self._tiered = {
            group.name: min(
                tier.above_input_tokens
                for d in group.deployments
                if d.price is not None
                for tier in d.price.tiers
            )
            for group in table.groups
            if group.strategy == "cost"
            and any(d.price is not None and d.price.tiers for d in group.deployments)
        }
        # Groups whose routing may count the input: a context window, or a tier to rank by.
        self._counting = self._windowed | {
            group.name
            for group in table.groups
            if any(
                member.name in self._tiered for member in (group, *table.fallback_chain(group.name))
            )
        }
        # Groups whose order never changes (``priority``, no latency threshold): their
        # candidates as one tuple, made once.
        self._fixed: dict[str, tuple[Candidate, ...]] = {
            group.name: tuple(self._records[group.name])
            for group in table.groups
            if group.strategy == "priority" and not group.hurried
        }

    def plan(self, ctx: RequestContext, kind: Kind) -> Plan:
        """The candidates for ``ctx.model``; raises for unknown models and impossible fits."""
        group = self.table.group(ctx.model, kind)
        only = ctx.chat.responses_only if ctx.chat is not None else None
        priced_only = ctx.priced_only
        if not group.fallbacks and only is None and not priced_only:
            smallest = self._smallest.get(group.name)
            if smallest is None or ctx.chat is None or _surely_fits(ctx.chat, smallest):
                fixed = self._fixed.get(group.name)
                if fixed is not None:
                    return fixed, group.retries, group.deadline
                ordered = self._ordered(group, _streams(ctx), ctx, group)
                return ordered, group.retries, group.deadline
        streaming = _streams(ctx)
        candidates = self._ordered(group, streaming, ctx, group)
        principal = ctx.principal
        may_use = None
        if principal is not None and principal.allowed_models is not None:
            may_use = principal.may_use
        chain = self.table.fallback_chain(group.name, may_use)
        seen = {deployment.id for deployment, _ in candidates}
        for fallback in chain:
            ordered = self._ordered(fallback, streaming, ctx, group)
            more = [c for c in ordered if c[0].id not in seen]
            seen.update(deployment.id for deployment, _ in more)
            candidates += more
        if priced_only:
            candidates = _priced(ctx.model, candidates)
        if only is not None:
            candidates = _speaking_responses(ctx.model, candidates, only)
        if group.name in self._windowed:
            candidates = self._that_fit(ctx, candidates)
        return candidates, group.retries, group.deadline

    def _ordered(
        self, group: ModelGroup, streaming: bool, ctx: RequestContext, requested: ModelGroup
    ) -> list[Candidate]:
        """``group``'s candidates in its strategy's order, for a request for ``requested``."""
        records = self._records[group.name]
        floor = self._tiered.get(group.name)
        chat = ctx.chat
        if floor is not None and chat is not None and not _surely_within(chat, floor):
            # It may pay a long-context tier's rates: rank by what it will pay. Counted as
            # the requested group's first deployment counts it (admission's count, kept).
            ordered = cost_at(records, self._input_tokens(ctx, requested.deployments[0]))
        else:
            ordered = STRATEGIES[group.strategy](records, self._rng, self._explore, streaming)
        if group.hurried:
            # Every candidate gives up early on a slow first byte, but the pipeline waits in
            # full for the last one that can answer (which only health at the time tells).
            ordered = [(group.hurried.get(d.id, d), h) for d, h in ordered]
        return ordered

    def windowed(self, model: str) -> bool:
        """Whether a deployment of ``model``'s group has a context window (a request that
        may not fit it is counted before routing)."""
        return model in self._windowed

    def counts_input(self, model: str) -> bool:
        """Whether routing a request for ``model`` may count its input: a context window to
        check, or a ``cost`` group's long-context tier to rank by (a large request's long
        texts are counted ahead, in a worker thread)."""
        return model in self._counting

    def first(self, model: str, kind: Kind) -> Deployment:
        """The deployment that would be tried first, ignoring health (for token counts)."""
        group = self.table.group(model, kind)
        return group.deployments[0]

    def deployments(self) -> Sequence[tuple[ModelGroup, Deployment, DeploymentHealth]]:
        """Every deployment of the table with its group and health (for the admin view)."""
        return [
            (group, deployment, health)
            for group in self.table.groups
            for deployment, health in self._records[group.name]
        ]

    def _that_fit(self, ctx: RequestContext, candidates: list[Candidate]) -> list[Candidate]:
        """The candidates whose context window holds the request; 400 when none does."""
        if ctx.chat is None:
            return candidates
        smallest = min(c[0].context_window or _UNBOUNDED for c in candidates)
        if _surely_fits(ctx.chat, smallest):
            return candidates  # no tokenizing for the common short request
        first = candidates[0][0]
        output = ctx.chat.max_tokens or 0
        needed = self._input_tokens(ctx, first) + output
        fitting = _fitting(candidates, needed)
        # The count holds parts the provider alone can size at the most they cost (what a
        # budget reserves): a window refuses only what surely does not fit, the least.
        least = (
            len(fitting) < len(candidates)
            and self._counter is not None
            and uncounted_parts(ctx.chat)
        )
        if least:
            needed = self._count(ctx.chat, first, least=True) + output
            fitting = _fitting(candidates, needed)
        if fitting:
            return fitting
        largest = max(c[0].context_window or 0 for c in candidates)
        why = ""
        if ctx.chat.truncation == "auto":
            counted = self._truncate(ctx, first, largest, least)
            if counted is not None:
                # The largest window holds it now, as the same count says.
                return _fitting(candidates, counted + (ctx.chat.max_tokens or 0))
            why = (
                ", and its instructions and latest turn alone do not fit either (truncation "
                "'auto' drops only earlier turns)"
            )
        about = "at least" if least else "about"
        raise InvalidRequest(
            f"This request needs {about} {needed} tokens (input plus max_tokens), more than the "
            f"largest context window of model '{ctx.model}' ({largest} tokens){why}. Shorten "
            "the messages or lower max_tokens.",
            code="context_length_exceeded",
            param="messages",
        )

    def _truncate(
        self, ctx: RequestContext, first: Deployment, window: int, least: bool
    ) -> int | None:
        """Drops the oldest turns of ``ctx.chat`` (``truncation: "auto"``) until it fits
        ``window`` as ``first`` counts it (the count every candidate is checked with: with
        ``least``, parts the provider alone can size at their least); the input tokens it
        now counts, or ``None``, and nothing dropped, when even the instructions and the
        latest turn do not fit."""
        chat = ctx.chat
        assert chat is not None
        room = window - (chat.max_tokens or 0)

        def fits(messages: list[Message]) -> bool:
            return self._count(replace(chat, messages=messages), first, least=least) <= room

        truncated = oldest_dropped(chat.messages, fits)
        if truncated is None:
            return None
        chat.messages, kept = truncated
        before = chat.kept_messages
        chat.kept_messages = kept if before is None else [before[i] for i in kept]
        chat.wire_body = None  # the client's body holds the dropped turns
        ctx.input_tokens_estimate = self._count(chat, first)
        return self._count(chat, first, least=True) if least else ctx.input_tokens_estimate

    def _input_tokens(self, ctx: RequestContext, first: Deployment) -> int:
        """``ctx.input_tokens_estimate`` when counted already, else counted now (and kept)."""
        if ctx.input_tokens_estimate is None:
            assert ctx.chat is not None
            ctx.input_tokens_estimate = self._count(ctx.chat, first)
        return ctx.input_tokens_estimate

    def _count(self, request: ChatRequest, deployment: Deployment, *, least: bool = False) -> int:
        """The input tokens of ``request`` on ``deployment``: the counter's (``least``: parts
        the provider alone can size at their least), else by characters."""
        if self._counter is None:
            return _character_estimate(request)
        return self._counter.chat(
            request, deployment.provider, deployment.model, deployment.tokenizer, least=least
        )


def _fitting(candidates: list[Candidate], needed: int) -> list[Candidate]:
    """The candidates whose context window holds ``needed`` tokens (or is not known)."""
    return [c for c in candidates if c[0].context_window is None or c[0].context_window >= needed]


def _priced(model: str, candidates: list[Candidate]) -> list[Candidate]:
    """The candidates with a price (``limits.unpriced: refuse`` under a budget); admission
    refused the request already when none has one, so the 403 here is only a safeguard."""
    priced = [c for c in candidates if c[0].price is not None]
    if not priced:
        raise unpriced_model(model)
    return priced


def _streams(ctx: RequestContext) -> bool:
    """Whether the request is answered as a stream (the latency strategy's measure)."""
    return ctx.chat is not None and ctx.chat.stream


def _speaking_responses(
    model: str, candidates: list[Candidate], only: ResponsesOnly
) -> list[Candidate]:
    """The candidates that speak OpenAI's Responses API, or whose family translates ``only``
    (a web search: Anthropic's); a 400 naming ``only`` when none do."""
    translated = only.translated_for
    speaking = [c for c in candidates if c[0].responses_api or c[0].provider in translated]
    if speaking:
        return speaking
    families = "".join(f" or of provider '{name}'" for name in sorted(translated))
    kind = "kinds" if translated else "kind"
    raise InvalidRequest(
        f"{only.why}. Model '{model}' has no deployment that speaks OpenAI's Responses API "
        f"(responses_api){families}, the only {kind} that can serve it: use a model that has "
        "one, or leave the field out.",
        param=only.param,
    )


_UNBOUNDED = 1 << 62
# A token is at least one character of text in every tokenizer the gateway meets, so text
# plus generous allowances for framing, images and tools bounds the count from above.
_IMAGE_ALLOWANCE = 2_000
_FRAMING_ALLOWANCE = 16


def _surely_fits(request: ChatRequest, window: int) -> bool:
    """Whether ``request`` fits ``window`` by a cheap upper bound, without tokenizing."""
    return _surely_within(request, window - (request.max_tokens or 0))


def _surely_within(request: ChatRequest, tokens: int) -> bool:
    """Whether ``request``'s input is at most ``tokens`` by a cheap upper bound, without
    tokenizing."""
    budget = tokens - _FRAMING_ALLOWANCE * (len(request.messages) + 1)
    for message in request.messages:
        content = message.content
        if isinstance(content, str):
            budget -= len(content)
        elif content:
            for part in content:
                budget -= len(part.text) if isinstance(part, TextPart) else _IMAGE_ALLOWANCE
        for call in message.tool_calls or ():
            budget -= len(call.name) + len(call.arguments)
        if budget < 0:
            return False
    if request.tools:
        budget -= sum(
            len(str(tool.parameters)) + len(tool.description or "") + 64 for tool in request.tools
        )
    return budget >= 0


def _character_estimate(request: ChatRequest) -> int:
    characters = 0
    for message in request.messages:
        content = message.content
        if isinstance(content, str):
            characters += len(content)
        elif content:
            characters += sum(len(p.text) for p in content if isinstance(p, TextPart))
        for call in message.tool_calls or ():
            characters += len(call.name) + len(call.arguments)
    for tool in request.tools or ():
        characters += len(tool.name) + len(tool.description or "") + len(str(tool.parameters))
    return characters // _CHARS_PER_TOKEN + _TOKENS_PER_MESSAGE * len(request.messages)
