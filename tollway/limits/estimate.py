"""``POST /v1/estimate``: what a request would cost, without calling a provider.

The body is a Chat Completions request (or an embeddings request: a body with ``input``
and no ``messages``). The answer gives the local input-token count on every deployment
that may serve the model (its group's and its fallback chain's), the max output the request may
produce, and the cost range: at least the cheapest candidate's price for the input alone,
at most the dearest candidate's worst case (the figure admission reserves from budgets: the
fees of the server-side tools it may call included, ``pricing/tools.py``), plus what the
caller's tightest budget has left. Nothing is reserved or spent. What admission would refuse
before any of that is refused alike: a model the key may not use (403 ``model_not_allowed``)
and, under ``limits.unpriced: refuse``, a model only unpriced deployments serve, for a caller
under a budget (403 ``model_unpriced``); when some are priced, the unpriced candidates, which
such a request skips, are left out of the answer.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import orjson
from aiohttp import web

from tollway.core.context import RequestContext
from tollway.core.errors import GatewayError, PermissionDenied
from tollway.core.types import ChatRequest, Deployment, Usage
from tollway.dialects.client_address import client_address
from tollway.dialects.http import (
    expect_later,
    log_internal_error,
    read_body,
    request_id,
    uninvited,
)
from tollway.dialects.openai import error_response
from tollway.limits.backend import MICRO
from tollway.limits.refusals import unpriced_model
from tollway.pricing.cost import cost_usd, worst_case_usd
from tollway.pricing.metering import image_count
from tollway.pricing.tokens import COUNT_AHEAD_CHARS
from tollway.pricing.tools import ToolUse, bound_tool_calls, tool_uses
from tollway.wire.openai_embeddings import embedding_request_from_wire
from tollway.wire.openai_request import request_from_wire

if TYPE_CHECKING:
    from tollway.gateway import Gateway


def _candidates(gateway: Gateway, ctx: RequestContext) -> list[Deployment]:
    table = gateway.pipeline.routing
    kind: Literal["chat", "embedding"] = "chat" if ctx.chat is not None else "embedding"
    group = table.group(ctx.model, kind)  # 404 / 400 for unknown or wrong-kind models
    deployments = list(group.deployments)
    principal = ctx.principal
    may_use = principal.may_use if principal is not None else None
    for fallback in table.fallback_chain(group.name, may_use):
        deployments += [d for d in fallback.deployments if d not in deployments]
    return deployments


def _priced_only(candidates: list[Deployment], model: str) -> list[Deployment]:
    """The candidates a request under a budget may reach with ``limits.unpriced: refuse``
    (the limits stage's ``_priced_only``): the priced ones, or its 403 when there are none."""
    priced = [deployment for deployment in candidates if deployment.price is not None]
    if not priced:
        raise unpriced_model(model)
    return priced


async def estimate(gateway: Gateway, request: web.Request) -> dict[str, Any]:
    """The estimate for one request body."""
    source = client_address(request, gateway.proxies)
    principal = await gateway.authenticator.authenticate(request.headers, source)
    body, size = await read_body(request, gateway.max_body_size)
    parsed = (
        embedding_request_from_wire(body)
        if "input" in body and "messages" not in body
        else request_from_wire(body)
    )
    rid = request_id(request)
    if isinstance(parsed, ChatRequest):
        ctx = RequestContext(rid, "chat", parsed.model, request.headers, principal, chat=parsed)
    else:
        ctx = RequestContext(
            rid, "embeddings", parsed.model, request.headers, principal, embedding=parsed
        )
    if not principal.may_use(ctx.model):
        raise PermissionDenied(
            f"This key may not use the model '{ctx.model}'.", code="model_not_allowed"
        )
    if size > COUNT_AHEAD_CHARS:  # long texts counted off the event loop, as in exchange
        await gateway.pipeline.count_ahead(ctx, always=True)
    limits = gateway.limits
    candidates = _candidates(gateway, ctx)
    budgets = limits.book.budgets_for(principal)
    if budgets and limits.config.unpriced == "refuse":
        candidates = _priced_only(candidates, ctx.model)
    max_output = 0
    if ctx.chat is not None:
        asked = ctx.chat.max_tokens
        if asked is None:
            # What admission sends and reserves: the default, within every candidate's
            # own max output.
            asked = limits.config.default_max_output
            outputs = [d.max_output for d in candidates if d.max_output]
            if outputs:
                asked = min(asked, *outputs)
        # Each of ``n`` choices may use the whole max output.
        max_output = asked * max(1, ctx.chat.n or 1)
    images = image_count(ctx)
    uses: list[ToolUse] = []
    if ctx.chat is not None and any(d.price is not None and d.price.tool_fees for d in candidates):
        # The calls admission reserves: the request's own bound, else the one it is sent
        # (Gemini's Google Search, which takes none, as that many queries).
        unbounded = limits.config.default_max_tool_calls
        bound_tool_calls(ctx.chat, unbounded)
        uses = tool_uses(ctx.chat, unbounded)
    metering = gateway.pipeline.metering
    rows = []
    low = high = None
    for deployment in candidates:
        tokens = metering.input_tokens(ctx, deployment)
        exact = deployment.tokenizer is not None
        price = deployment.price
        least = most = 0.0
        if price is not None:
            least = cost_usd(price, Usage(input_tokens=tokens, output_tokens=0))
            reserved = tokens if exact else math.ceil(tokens * (1 + limits.config.estimate_margin))
            most = worst_case_usd(price, reserved, max_output, images=images, tool_uses=uses)
        low = least if low is None else min(low, least)
        high = most if high is None else max(high, most)
        rows.append(
            {
                "deployment": deployment.id,
                "provider": deployment.provider,
                "model": deployment.model,
                "input_tokens": tokens,
                "exact": exact,
                "priced": price is not None,
                "min_usd": least,
                "max_usd": most,
            }
        )
    answer: dict[str, Any] = {
        "object": "estimate",
        "model": ctx.model,
        "input_tokens": rows[0]["input_tokens"] if rows else 0,
        "max_output_tokens": max_output,
        "cost_usd": {"min": low or 0.0, "max": high or 0.0},
        "deployments": rows,
    }
    if budgets:
        accounts = [limits.account(budget) for budget in budgets]
        states = await limits.accounts(accounts)
        left = min(
            b.limit_micros - s.spent_micros - s.reserved_micros
            for b, s in zip(budgets, states, strict=True)
        )
        answer["budget_remaining_usd"] = max(0, left) / MICRO
        answer["within_budget"] = left >= math.ceil((high or 0.0) * MICRO)
    return answer


def estimate_route(gateway: Gateway) -> web.RouteDef:
    """The route, answering errors in OpenAI's shape."""

    async def handle(request: web.Request) -> web.Response:
        try:
            answer = await estimate(gateway, request)
        except GatewayError as exc:
            return uninvited(request, error_response(exc, {"x-request-id": request_id(request)}))
        except Exception as exc:  # Redis or the store down, or a fault: OpenAI's shape still
            rid = request_id(request)
            down = await gateway.outage(exc)
            failed = error_response(down or log_internal_error(rid, exc), {"x-request-id": rid})
            return uninvited(request, failed)
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    return web.post("/v1/estimate", handle, expect_handler=expect_later)
