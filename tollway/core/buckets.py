"""A token bucket: what the gateway's in-memory rate limits on its own work share (store
lookups of unknown keys, refusals recorded in the request log)."""

from __future__ import annotations


class TokenBucket:
    """Tokens refilled at a rate up to a burst; one is taken per admitted event."""

    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.updated = now

    def take(self, now: float, rate: float, burst: float) -> bool:
        """Refill to ``now`` (``rate`` a second, at most ``burst``) and take one token;
        whether there was one."""
        tokens = self.tokens + (now - self.updated) * rate
        if tokens > burst:
            tokens = burst
        self.updated = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False
