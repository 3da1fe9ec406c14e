"""What a request may cost: the deployments that may serve a model name, and the worst case.

The candidates of a model name are its group's deployments and its fallback chain's; under a
budget, admission reserves the dearest candidate's worst case: the request's input as that
candidate counts it (with ``limits.estimate_margin`` where the count is an estimate), its
whole max output on each of its ``n`` choices, and the server-side tool calls it may make.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tollway.core.context import RequestContext
from tollway.core.types import Deployment, Price
from tollway.limits.backend import to_micros
from tollway.limits.refusals import unbounded_input
from tollway.pricing.cost import worst_case_usd
from tollway.pricing.tokens import counted_alike
from tollway.pricing.tools import ToolUse
from tollway.routing.table import ModelGroup, RoutingTable

CountInput = Callable[[RequestContext, Deployment | None], int]
"""The request's input tokens as a deployment counts them locally (pricing/tokens.py);
``None``: a model name no group serves (routing refuses it)."""


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
    unpriced: bool = False
    """Some candidate has no price (``limits.unpriced: refuse`` then skips it under a budget,
    and refuses the request when ``priced`` is empty)."""
    largest_window: int | None = None
    """The largest context window among the candidates: the most input any of them can
    read, and so be billed for (a request over a window is refused, and costs nothing);
    ``None`` when some candidate's window is not known (nothing bounds the input)."""


def candidates_of(table: RoutingTable) -> dict[str, Candidates]:
    """Per model name: its deployments and those of its fallback chain."""
    return {
        group.name: group_candidates(table, group, chain_names(table.fallback_chain(group.name)))
        for group in table.groups
    }


def chain_names(groups: Sequence[ModelGroup]) -> tuple[str, ...]:
    """The model names of a fallback chain."""
    return tuple(group.name for group in groups)


def group_candidates(
    table: RoutingTable, group: ModelGroup, fallbacks: Sequence[str]
) -> Candidates:
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
    windows_known = [d.context_window for d in deployments if d.context_window]
    every_window = len(windows_known) == len(deployments) and bool(windows_known)
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
        unpriced=len(priced) < len(deployments),
        largest_window=max(windows_known) if every_window else None,
    )


def held_input(tokens: int, candidates: Candidates | None) -> int:
    """The input tokens held for a request counted at ``tokens``: no more than the largest
    context window of its candidates (``Candidates.largest_window``), where every one is
    known. A count can be far above what any candidate reads: a PDF by URL counts as the
    most pages its family takes (pricing/document_tokens.py), millions of tokens."""
    window = None if candidates is None else candidates.largest_window
    return tokens if window is None else min(tokens, window)


def unpriced_warnings(table: RoutingTable) -> list[str]:
    """Under ``limits.unpriced: refuse``, one line for each model name that no priced
    deployment serves, its fallbacks' included: nothing under a budget can use it."""
    return [
        f"model '{name}' has only unpriced deployments (no price in config or the catalog, "
        "its fallbacks' included): with limits.unpriced: refuse, every request to it under a "
        "budget is refused; give its deployments a price (0 for a model that really is free)"
        for name, candidates in candidates_of(table).items()
        if not candidates.priced
    ]


def choices(ctx: RequestContext) -> int:
    """The answers a request asks for (``n``): each may generate its whole max output, as
    providers bill and as their own token limits count it."""
    chat = ctx.chat
    return max(1, chat.n or 1) if chat is not None else 1


def reserved_inputs(
    ctx: RequestContext,
    estimate: int,
    candidates: Candidates,
    count: CountInput,
    estimate_margin: float,
) -> list[int]:
    """The input reserved for each of the candidates' ways of counting: its count, plus
    ``estimate_margin`` (``limits.estimate_margin``) where the count is an estimate, not the
    exact encoding; never more than ``held_input`` (the largest window)."""
    margin = 1.0 + estimate_margin
    counters = candidates.counters
    if len(counters) == 1:  # the usual group: every candidate counts as the first
        exact = counters[0].tokenizer is not None
        return [held_input(estimate if exact else math.ceil(estimate * margin), candidates)]
    inputs = []
    for way, deployment in enumerate(counters):
        # The first way's count is the estimate; another costs one more count, with the
        # request's repeated texts remembered by the counter.
        tokens = estimate if way == 0 else count(ctx, deployment)
        exact = deployment.tokenizer is not None
        inputs.append(held_input(tokens if exact else math.ceil(tokens * margin), candidates))
    return inputs


def priced_inputs(
    ctx: RequestContext,
    estimate: int,
    candidates: Candidates,
    count: CountInput,
    estimate_margin: float,
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
    inputs = reserved_inputs(ctx, estimate, candidates, count, estimate_margin)
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
            raise unbounded_input(chat.responses_only.param, serving)
        prices.append((price, len(whole)))
        whole.append(max(inputs[way], window or 0))
    return prices, whole


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
