"""What a request costs, by the provider's own billing rules.

The usual ways gateways get bills wrong, and what is done here about each:

- **Cache reads** are billed at the cached-input rate, not the input rate (``Usage``'s
  ``input_tokens`` includes them; every codec fills it that way).
- **Cache writes** (Anthropic) are billed at the cache-write rate (1.25x input for 5-minute
  writes), not the input rate; one-hour writes at their own rate (2x input).
- **Reasoning tokens** are part of ``output_tokens`` (as OpenAI and Google report them):
  billed once, at the output rate, or at ``reasoning`` where a price sets one apart.
- **Long-context tiers** (Gemini 2.5 Pro, Claude Sonnet 4 with 1M context): when the input
  exceeds a tier's threshold, the whole request is billed at the tier's rates.
- **Usage lost in streams**: the pipeline keeps the usage of a stream's last chunk (the
  gateway always asks for it upstream), so a stream costs what the same answer costs whole.
- **Server-side tools** (web search, file search) are billed per call on top of tokens: each
  call reported at the price's fee for its kind, and a request that called a kind at all at
  its fee per request (Gemini 2.x's grounded prompts; ``pricing/tools.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

from tollway.core.types import Price, Usage
from tollway.pricing.tools import ToolUse, fees_usd

_PER_TOKEN = 1e-6  # prices are per 1M tokens


def cost_usd(
    price: Price, usage: Usage, *, images: int = 0, tool_calls: dict[str, int] | None = None
) -> float:
    """The cost of ``usage`` at ``price``, in USD; the server tool calls are ``tool_calls``
    when given (``pricing.tools.attributed``), else the usage's."""
    input_rate, output_rate = price.input, price.output
    cached_rate, write_rate = price.cached_input, price.cache_write
    long_rate = price.cache_write_1h
    if price.tiers:
        for tier in reversed(price.tiers):
            if usage.input_tokens > tier.above_input_tokens:
                input_rate, output_rate = tier.input, tier.output
                cached_rate = tier.cached_input if tier.cached_input is not None else cached_rate
                write_rate = tier.cache_write if tier.cache_write is not None else write_rate
                long_rate = tier.cache_write_1h if tier.cache_write_1h is not None else long_rate
                break
    cached = usage.cached_input_tokens
    written = usage.cache_write_tokens
    fresh = usage.input_tokens - cached - written
    total = fresh * input_rate if fresh > 0 else 0.0
    total += cached * (input_rate if cached_rate is None else cached_rate)
    write_rate = input_rate if write_rate is None else write_rate
    total += written * write_rate
    if usage.cache_write_1h_tokens and long_rate is not None:
        total += min(usage.cache_write_1h_tokens, written) * (long_rate - write_rate)
    output = usage.output_tokens
    if price.reasoning is None:
        total += output * output_rate
    else:
        reasoning = min(usage.reasoning_tokens, output)
        total += (output - reasoning) * output_rate + reasoning * price.reasoning
    total *= _PER_TOKEN
    if images and price.per_image:
        total += images * price.per_image
    if price.per_request:
        total += price.per_request
    calls = usage.tool_calls if tool_calls is None else tool_calls
    if calls:  # most answers call no server tool: no call made for them
        total += fees_usd(price, calls)
    return total


def worst_case_usd(
    price: Price,
    input_tokens: int,
    max_output_tokens: int,
    *,
    images: int = 0,
    tool_uses: Sequence[ToolUse] = (),
) -> float:
    """The most a request of ``input_tokens`` and up to ``max_output_tokens`` can cost: no
    cache discount, every output token at the highest output-side rate, every server tool
    call it may make (``tool_uses``) at the dearest fee of its kinds."""
    output_rate = max(price.output, price.reasoning or 0.0)
    # A prompt written to the cache, for five minutes or for an hour.
    input_rate = max(price.input, price.cache_write or 0.0, price.cache_write_1h or 0.0)
    for tier in reversed(price.tiers):
        if input_tokens > tier.above_input_tokens:
            input_rate = max(
                tier.input,
                tier.cache_write or price.cache_write or 0.0,
                tier.cache_write_1h or price.cache_write_1h or 0.0,
            )
            output_rate = max(tier.output, price.reasoning or 0.0)
            break
    total = (input_tokens * input_rate + max_output_tokens * output_rate) * _PER_TOKEN
    if images and price.per_image:
        total += images * price.per_image
    if tool_uses and price.tool_fees:
        total += sum(use.worst_usd(price) for use in tool_uses)
    return total + (price.per_request or 0.0)
