"""Settles what a request cost once its answer is complete (or has failed, or was cut).

The provider's usage is priced at the serving deployment's price. When the provider
reported none (an upstream that sends no usage, a stream the client left early), the
gateway counts for itself, and marks the usage as estimated. It starts from what a stream
reported before it was cut (``ChatChunk.usage_so_far``: Anthropic's ``message_start`` and
``message_delta``, Gemini's running ``usageMetadata``): input and cache tokens reported are
exact, output is at least what was reported. What is not reported is counted: the input
with the local tokenizer as the deployment that served counts it (a fallback of another
family counts otherwise than the first candidate), the output from the characters generated
after the last report (reasoning, text and tool calls; a stream's as the upstream sent them,
written to its client or not: one that left has them counted by ``Pipeline._count_unsent``;
about four a token, never more than
the request's ``max_tokens`` for each of its choices: the provider stops there, and
admission reserved no more), the reasoning among it counted as reasoning tokens (billed at a
price's reasoning rate where it has one). Server-side tool calls (web search...) are charged
per call, as the answer reported them or, in a stream cut before its end, as far as it had;
those a failed attempt reported done before the request failed over too (``Attempt.spent``),
as is the prompt (and output so far) a failed or cut attempt's head reported, or, for a call
its client or a time limit cut once the request was sent and before any usage came (an answer
in one piece, a stream's head that said none), the prompt as counted before routing
(``prompt_spent``: the provider read it first, and bills it; an embeddings request's input,
which is all it bills).
"""

from __future__ import annotations

import math
from dataclasses import replace

from tollway.core.context import RequestContext
from tollway.core.types import ChunkChoice, Deployment, ImagePart, Message, ReasoningPart, Usage
from tollway.pricing.cost import cost_usd
from tollway.pricing.tokens import TokenCounter
from tollway.pricing.tools import attributed, fees_usd
from tollway.wire.crossing import reasoning_of

_CHARS_PER_TOKEN = 4
_ANTHROPIC = "anthropic"
_NOTHING_REPORTED = Usage()


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
            calls = attributed(usage, ctx.chat, deployment) if usage.tool_calls else None
            cost = cost_usd(price, usage, images=images, tool_calls=calls)
        ctx.cost_usd = cost
        return cost

    def settle_spent(self, ctx: RequestContext) -> None:
        """For a request that failed: what its failed calls used all the same
        (``Attempt.spent``), each at its deployment's price, as ``ctx.usage`` and
        ``ctx.cost_usd``; nothing when they used nothing."""
        spent = _spent(ctx)
        if spent is not None:
            ctx.usage, ctx.cost_usd = spent
            ctx.usage_estimated = ctx.usage_estimated or _estimated(ctx)

    def add_spent(self, ctx: RequestContext) -> float:
        """For a request a later attempt answered (settled): what the failed attempts before
        it used all the same (``Attempt.spent``: the batches of a split embeddings request a
        first deployment answered before another batch failed), each at its own
        deployment's price, added to ``ctx.usage`` and ``ctx.cost_usd``; the cost."""
        cost = ctx.cost_usd or 0.0
        spent = _spent(ctx)
        if spent is None:
            return cost
        usage, spent_usd = spent
        served = ctx.usage or _NOTHING_REPORTED
        # A new Usage: the answer's own (which the client is shown) stays as it came.
        ctx.usage = _added(served, usage)
        ctx.cost_usd = cost + spent_usd
        ctx.usage_estimated = ctx.usage_estimated or _estimated(ctx)
        return ctx.cost_usd

    def prompt_spent(self, ctx: RequestContext, deployment: Deployment) -> Usage:
        """The prompt (an embeddings request's input) of a request whose call was cut once
        sent, before any usage came: the admission's count (``ctx.input_tokens_estimate``),
        else counted now (no limit asked for one before routing), as the provider bills the
        reading of it."""
        counted = ctx.input_tokens_estimate
        if counted is None:
            counted = self.input_tokens(ctx, deployment)
        return Usage(input_tokens=read_at_most(counted, deployment))

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
        reported = ctx.usage_so_far or _NOTHING_REPORTED
        input_tokens = reported.input_tokens
        if not input_tokens:
            # ``ctx.input_tokens_estimate`` is the first candidate's count, and the one that
            # served may be another family's (another tokenizer): counted again for it, which
            # costs a lookup of remembered texts.
            input_tokens = self.input_tokens(ctx, deployment)
        after = ctx.output_chars - ctx.output_chars_so_far
        output_tokens = reported.output_tokens + math.ceil(after / _CHARS_PER_TOKEN)
        chat = ctx.chat
        if chat is not None and chat.max_tokens is not None:
            # Words longer than four characters would count past what the provider can have
            # generated, and past the budget reservation that bounds it.
            most = max(chat.max_tokens * max(1, chat.n or 1), reported.output_tokens)
            output_tokens = min(output_tokens, most)
        reasoning = reported.reasoning_tokens
        if ctx.reasoning_chars:
            # Of the output, the reasoning generated: a price may bill it at its own rate.
            counted = math.ceil(ctx.reasoning_chars / _CHARS_PER_TOKEN)
            reasoning = min(max(reasoning, counted), output_tokens)
        return Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=reported.cached_input_tokens,
            cache_write_tokens=reported.cache_write_tokens,
            reasoning_tokens=reasoning,
            cache_write_1h_tokens=reported.cache_write_1h_tokens,
            tool_calls=reported.tool_calls,
        )


def tool_spend(ctx: RequestContext, calls: dict[str, int]) -> tuple[int, float]:
    """The server-side tool calls of a request's answer (``calls``: its usage's), and what
    they cost at the serving deployment's price: the part of ``ctx.cost_usd`` that is tool
    fees (the request log's ``tool_calls`` and ``tool_cost_micros``)."""
    deployment = ctx.deployment
    count = sum(calls.values())
    if deployment is None or deployment.price is None:
        return count, 0.0
    return count, fees_usd(
        deployment.price, attributed(Usage(tool_calls=calls), ctx.chat, deployment)
    )


def _spent(ctx: RequestContext) -> tuple[Usage, float] | None:
    """The tokens and server-side tool calls the request's failed attempts used all the same,
    and their cost at each attempt's deployment's price; ``None`` when they used nothing."""
    spent = [(attempt.deployment, attempt.spent) for attempt in ctx.tries if attempt.spent]
    if not spent:
        return None
    usage = Usage()
    for _, used in spent:
        usage = _added(usage, used)
    cost = sum(
        cost_usd(deployment.price, used, tool_calls=attributed(used, ctx.chat, deployment))
        for deployment, used in spent
        if deployment.price is not None
    )
    return usage, cost


def _estimated(ctx: RequestContext) -> bool:
    """Whether a failed attempt's spent usage is the gateway's own count."""
    return any(attempt.spent_estimated for attempt in ctx.tries if attempt.spent)


def _added(usage: Usage, more: Usage) -> Usage:
    """``usage`` with ``more``'s tokens and tool calls added, every kind of them: the request
    log's cache columns say what the cost was priced from (a stalled attempt's prompt written
    to the cache is billed at the cache-write rate, and logged as such)."""
    return replace(
        usage,
        input_tokens=usage.input_tokens + more.input_tokens,
        output_tokens=usage.output_tokens + more.output_tokens,
        cached_input_tokens=usage.cached_input_tokens + more.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens + more.cache_write_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens + more.cache_write_1h_tokens,
        reasoning_tokens=usage.reasoning_tokens + more.reasoning_tokens,
        tool_calls=_added_calls(usage.tool_calls, more.tool_calls),
    )


def _added_calls(
    calls: dict[str, int] | None, more: dict[str, int] | None
) -> dict[str, int] | None:
    """Server-side tool calls of two attempts, by kind, together (``None``: none)."""
    if not more:
        return calls
    together = dict(calls or {})
    for kind, count in more.items():
        together[kind] = together.get(kind, 0) + count
    return together


def reasoning_chars(message: Message, wire_format: str | None) -> int:
    """Characters of reasoning in a complete answer's message: its ``ReasoningPart``s, or
    what an OpenAI-compatible server said beside the answer (``reasoning_content``)."""
    chars = 0
    if isinstance(message.content, list):
        for part in message.content:
            if isinstance(part, ReasoningPart):
                chars += len(part.text) + _redacted_chars(part.redacted)
    told = reasoning_of(message.extra, wire_format)
    return chars + (len(told) if told is not None else 0)


def streamed_reasoning_chars(choice: ChunkChoice, wire_format: str | None) -> int:
    """Characters of reasoning in a chunk: a ``ReasoningDelta``, an OpenAI-compatible
    server's ``reasoning_content`` delta, an Anthropic ``thinking`` delta or
    ``redacted_thinking`` block (kept in the chunk's extras)."""
    delta = choice.reasoning
    if delta is not None:
        return len(delta.text) + _redacted_chars(delta.redacted)
    extra = choice.extra
    if wire_format == _ANTHROPIC:
        change = extra.get("delta")
        if isinstance(change, dict) and change.get("type") == "thinking_delta":
            return len(str(change.get("thinking") or ""))
        block = extra.get("content_block")
        if isinstance(block, dict) and block.get("type") == "redacted_thinking":
            return _redacted_chars(str(block.get("data") or ""))
        return 0
    told = reasoning_of(extra, wire_format)
    return len(told) if told is not None else 0


def _redacted_chars(redacted: str | None) -> int:
    """Encrypted reasoning (base64) as characters of the text it hides: its decoded size, an
    estimate (the provider bills the hidden text's tokens, which it does not say)."""
    return len(redacted) * 3 // 4 if redacted else 0


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


def read_at_most(tokens: int, deployment: Deployment) -> int:
    """Of a prompt counted at ``tokens``, what ``deployment`` can have read: no more than its
    context window (a count holds a PDF by URL at the most pages its family takes, millions
    of tokens; a provider reads no more than its window, and refuses a larger prompt)."""
    window = deployment.context_window
    return tokens if window is None else min(tokens, window)
