"""Metering: what a request without reported usage is costed at."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tollway.config.schema import Settings
from tollway.core.context import RequestContext
from tollway.core.types import Usage
from tollway.pricing.metering import Metering
from tollway.pricing.tokens import TokenCounter
from tollway.routing.table import build_routing_table
from tollway.wire.openai_request import request_from_wire

PRICE = {"input": 1.0, "output": 4.0, "reasoning": 8.0}  # USD per 1M tokens


def _context(max_tokens: int | None = None) -> RequestContext:
    deployment = {"provider": "openai", "model": "sim-chat", "api_base": "http://sim/v1",
                  "price": PRICE}  # fmt: skip
    settings = Settings.model_validate({"models": [{"name": "chat", "deployments": [deployment]}]})
    body: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    ctx = RequestContext("req_1", "chat", "chat", {}, chat=request_from_wire(body))
    ctx.deployment = build_routing_table(settings, None).candidates("chat", "chat")[0]
    return ctx


def test_reasoning_passed_on_without_usage_is_costed_at_the_reasoning_rate() -> None:
    ctx = _context()
    ctx.output_chars, ctx.reasoning_chars = 40, 24  # 10 tokens, 6 of them reasoning
    ctx.usage_so_far = Usage(input_tokens=5)
    cost = Metering(TokenCounter()).settle(ctx)
    assert ctx.usage_estimated and ctx.usage is not None
    assert (ctx.usage.output_tokens, ctx.usage.reasoning_tokens) == (10, 6)
    assert cost == pytest.approx((5 * 1.0 + 4 * 4.0 + 6 * 8.0) / 1e6)


def test_estimated_reasoning_never_passes_the_output_it_is_part_of() -> None:
    # Reasoning reported so far stands; reasoning counted past max_tokens is capped with
    # the output (the provider stops there, and admission reserved no more).
    ctx = _context(max_tokens=8)
    ctx.output_chars, ctx.reasoning_chars = 80, 80
    ctx.usage_so_far = Usage(input_tokens=5, output_tokens=2, reasoning_tokens=2)
    ctx.output_chars_so_far = 8
    Metering(TokenCounter()).settle(ctx)
    assert ctx.usage is not None
    assert (ctx.usage.output_tokens, ctx.usage.reasoning_tokens) == (8, 8)


def test_a_cut_call_is_charged_no_more_prompt_than_its_deployments_window() -> None:
    # A file by id counts as the most pages it may hold: far over what a provider reads.
    ctx = _context()
    assert ctx.deployment is not None
    ctx.input_tokens_estimate = 2_700_000
    metering = Metering(TokenCounter())
    assert metering.prompt_spent(ctx, ctx.deployment).input_tokens == 2_700_000  # no window
    windowed = replace(ctx.deployment, context_window=128_000)
    assert metering.prompt_spent(ctx, windowed).input_tokens == 128_000
    ctx.input_tokens_estimate = 900
    assert metering.prompt_spent(ctx, windowed).input_tokens == 900
