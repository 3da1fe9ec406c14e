"""How often each client address may have the store asked about a key the gateway does not know.

The key index (auth/keys.py) answers every known key from memory; a key it does not hold is
looked up in the store once (another replica may have made it a moment ago) and then
remembered as unknown for a while. That memory cannot help against a client sending a new
random key each time: each costs a store query. So the lookups of each client address go
through a token bucket (``auth.unknown_key_lookups_per_second``, bursts of
``auth.unknown_key_lookups_burst``); an unknown key beyond it is refused as any unknown key
is, without asking the store, and counted (``tollway_unknown_key_lookups_refused_total``).

An address is the client's, as the request log's ``source_ip``: the peer of the connection,
or behind a reverse proxy listed in ``server.trusted_proxies`` the client it names in
``X-Forwarded-For`` (dialects/client_address.py; without it, every client of the proxy
would be the proxy's address and share one bucket). An IPv6 client is its /64 network (one
host commonly holds a whole one). Only the most recently seen addresses keep a bucket
(``_MAX_ADDRESSES``); one seen again after that starts full.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import OrderedDict

from tollway.core.buckets import TokenBucket

log = logging.getLogger("tollway.auth")

_MAX_ADDRESSES = 10_000
"""Addresses with a bucket of their own, the least recently seen forgotten first."""
_WARN_EVERY = 60.0
"""The least time between two warnings that unknown keys were refused unasked."""


class UnknownKeyLimit:
    """Store lookups of unknown keys admitted per client address up to a rate."""

    def __init__(self, per_second: float, burst: int) -> None:
        """``per_second``: lookups an address earns a second; ``burst``: the most it may
        have saved up (and has when first seen)."""
        self._rate = per_second
        self._burst = float(burst)
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._warned = -_WARN_EVERY
        self.refused = 0
        """Unknown keys refused without a store lookup, since the start (for the metrics)."""

    def admit(self, address: str | None) -> bool:
        """Whether the store may be asked about an unknown key sent from ``address`` (the
        client's, ``client_address``; ``None`` when the transport has none); counted when
        not."""
        source = _source(address)
        now = time.monotonic()
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = TokenBucket(self._burst, now)
            if len(self._buckets) > _MAX_ADDRESSES:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
        if bucket.take(now, self._rate, self._burst):
            return True
        self.refused += 1
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            log.warning(
                "unknown API keys from %s come faster than %g a second: those beyond are "
                "refused without a store lookup (tollway_unknown_key_lookups_refused_total: %d)",
                source, self._rate, self.refused,
            )  # fmt: skip
        return False


def _source(address: str | None) -> str:
    """The bucket of ``address``: itself, or for IPv6 its /64 network."""
    if address is None or ":" not in address:
        return address or "(none)"
    try:
        ip = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:  # a dual-stack socket's IPv4 client
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))
