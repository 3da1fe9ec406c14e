"""Settles what a request cost once its answer is complete (or has failed, or was cut).

The provider's usage is priced at the serving deployment's price. When the provider
reported none (an upstream that sends no usage, a stream the client left early), the
gateway counts for itself: the input with the local tokenizer, the output from the
characters it forwarded (about four a token, never more than the request's ``max_tokens``
for each of its choices: the provider stops there, and admission reserved no more), and
marks the usage as estimated.
"""

from __future__ import annotations

import math

from tollway.core.context import RequestContext
from tollway.core.types import Deployment, ImagePart, Usage
from tollway.pricing.cost import cost_usd
from tollway.pricing.tokens import TokenCounter

_CHARS_PER_TOKEN = 4


class Metering:
    """Turns a finished request's usage into ``ctx.cost_usd``."""

    def __init__(self, counter: TokenCounter) -> None:
        self.counter = counter

    def settle(self, ctx: RequestContext) -> float:
        """Set and return ``ctx.cost_usd`` (0 when no deployment served or it is unpriced)."""
        deployment = ctx.deployment
        if deployment is None:
            ctx.cost_usd = 0.0
            return 0.0
        usage = ctx.usage
        if usage is None:
            usage = ctx.usage = self._local_usage(ctx)
            ctx.usage_estimated = True
        price = deployment.price
        if price is None:
            cost = 0.0
        else:
            images = image_count(ctx) if price.per_image else 0
            cost = cost_usd(price, usage, images=images)
        ctx.cost_usd = cost
        return cost

    def input_tokens(self, ctx: RequestContext, deployment: Deployment | None) -> int:
        """The request's input tokens as ``deployment`` would count them (locally); ``None``,
        for a model name no group serves (routing refuses it), counts as OpenAI's GPT-4o."""
        if deployment is None:
            provider, model, tokenizer = "openai", "gpt-4o", None
        else:
            provider, model = deployment.provider, deployment.model
            tokenizer = deployment.tokenizer
        if ctx.chat is not None:
            return self.counter.chat(ctx.chat, provider, model, tokenizer)
        if ctx.embedding is not None:
            return self.counter.embedding(ctx.embedding, provider, model, tokenizer)
        return 0

    def _local_usage(self, ctx: RequestContext) -> Usage:
        deployment = ctx.deployment
        assert deployment is not None
        input_tokens = ctx.input_tokens_estimate
        if input_tokens is None:
            input_tokens = self.input_tokens(ctx, deployment)
        output_tokens = math.ceil(ctx.output_chars / _CHARS_PER_TOKEN)
        chat = ctx.chat
        if chat is not None and chat.max_tokens is not None:
            # Words longer than four characters would count past what the provider can have
            # generated, and past the budget reservation that bounds it.
            output_tokens = min(output_tokens, chat.max_tokens * max(1, chat.n or 1))
        return Usage(input_tokens=input_tokens, output_tokens=output_tokens)


def image_count(ctx: RequestContext) -> int:
    """Input images of a chat request (those priced per image)."""
    if ctx.chat is None:
        return 0
    return sum(
        1
        for message in ctx.chat.messages
        if isinstance(message.content, list)
        for part in message.content
        if isinstance(part, ImagePart)
    )


def format_cost(cost: float) -> str:
    """A cost for a header or an event: up to ten decimals, no trailing zeros."""
    if not cost:
        return "0"  # unpriced deployments, failed requests: no float formatting
    return f"{cost:.10f}".rstrip("0").rstrip(".") or "0"
