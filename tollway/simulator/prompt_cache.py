"""What a simulated prompt read from and wrote to the provider's prompt cache.

The simulator keeps no cache: reads are what ``x-sim-cached-tokens`` (or the
``cached_tokens`` setting) says, writes what ``x-sim-cache-write-tokens`` says, or the whole
rest of the prompt when the request asks for it to be cached (Anthropic's top-level
``cache_control``, Bedrock's ``cachePoint``). Each API then says them in its own fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from tollway.simulator.exchange import Call


@dataclass(frozen=True, slots=True)
class PromptCache:
    """Tokens of a prompt read from and written to the cache (both part of the prompt)."""

    reads: int = 0
    writes: int = 0
    hour: bool = False
    """Whether the writes are kept an hour (else five minutes)."""


def prompt_cache(call: Call, prompt_tokens: int, ttl: str | None = None) -> PromptCache:
    """The cache use of a prompt of ``prompt_tokens``; ``ttl``: how long the request asks for
    its prompt to be cached (``None``: it does not ask). A cached prefix is never longer than
    the prompt: reads come first, writes take at most what is left."""
    reads = min(call.cached_tokens, prompt_tokens)
    left = prompt_tokens - reads
    writes = left if ttl is not None else min(call.cache_write_tokens, left)
    return PromptCache(reads, writes, ttl == "1h")


NO_CACHE = PromptCache()
"""A prompt the cache played no part in."""
