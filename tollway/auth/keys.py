"""The in-memory index of virtual keys that authenticates requests without a store query.

The index holds every usable key (active, blocked, or rotated but in its grace period) with
the principal it stands for. It is filled from the store at start-up and kept current by the
identity service, which applies each change here the moment it is written; other replicas
learn through the change feed. A key the index does not know is looked up in the store once
(it may have been created on another replica a moment ago) and remembered as unknown for a
short while, so a client retrying a bad key cannot turn every request into a query.
"""

from __future__ import annotations

import datetime as dt
import hmac
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tollway.auth.principal import Principal
from tollway.core.errors import AuthenticationFailed
from tollway.store.keys import hash_key

_NEGATIVE_TTL = 2.0
_NEGATIVE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """What authentication needs to know of one key."""

    key_id: str
    key_hash: str
    status: str
    expires_at: dt.datetime | None
    grace_until: dt.datetime | None
    principal: Principal


LookupMiss = Callable[[str], Awaitable[KeyEntry | None]]
"""Finds a key by hash in the store when the index does not have it."""


class KeyIndex:
    """Virtual keys by hash, with the checks that make one usable."""

    def __init__(self, lookup_miss: LookupMiss | None = None) -> None:
        self._by_hash: dict[str, KeyEntry] = {}
        self._hash_by_id: dict[str, str] = {}
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._lookup_miss = lookup_miss
        self._pinned: dict[str, KeyEntry] = {}

    def __len__(self) -> int:
        return len(self._by_hash)

    def put(self, entry: KeyEntry) -> None:
        """Add or replace a key (replacing takes effect for the next request)."""
        old_hash = self._hash_by_id.get(entry.key_id)
        if old_hash is not None and old_hash != entry.key_hash:
            self._by_hash.pop(old_hash, None)
        self._by_hash[entry.key_hash] = entry
        self._hash_by_id[entry.key_id] = entry.key_hash
        self._unknown.pop(entry.key_hash, None)

    def remove(self, key_id: str) -> None:
        """Forget a key."""
        key_hash = self._hash_by_id.pop(key_id, None)
        if key_hash is not None:
            self._by_hash.pop(key_hash, None)

    def pin(self, entry: KeyEntry) -> None:
        """Add a key that lives outside the store (the bootstrap admin key from config)."""
        self._pinned[entry.key_id] = entry
        self.put(entry)

    def replace_all(self, entries: list[KeyEntry]) -> None:
        """Swap in a complete set (start-up, periodic reconcile); pinned keys stay."""
        everything = [*entries, *self._pinned.values()]
        self._by_hash = {entry.key_hash: entry for entry in everything}
        self._hash_by_id = {entry.key_id: entry.key_hash for entry in everything}
        self._unknown.clear()

    async def authenticate(self, secret: str, now: dt.datetime | None = None) -> Principal:
        """The principal of ``secret``, or ``AuthenticationFailed`` saying why not."""
        key_hash = hash_key(secret)
        entry = self._by_hash.get(key_hash)
        if entry is None:
            entry = await self._miss(key_hash)
        # The dict lookup found the entry by hash; compare the digests in constant time too.
        if entry is None or not hmac.compare_digest(entry.key_hash, key_hash):
            raise AuthenticationFailed(
                "Invalid API key: the key is not known.", code="invalid_api_key"
            )
        if entry.status != "active" or entry.expires_at is not None:
            # Only keys that can lapse need the clock (most keys never expire).
            _check_usable(entry, now or dt.datetime.now(dt.UTC))
        return entry.principal

    async def _miss(self, key_hash: str) -> KeyEntry | None:
        if self._lookup_miss is None:
            return None
        now = time.monotonic()
        seen = self._unknown.get(key_hash)
        if seen is not None and now - seen < _NEGATIVE_TTL:
            return None
        entry = await self._lookup_miss(key_hash)
        if entry is None:
            self._unknown[key_hash] = now
            self._unknown.move_to_end(key_hash)
            while len(self._unknown) > _NEGATIVE_MAX:
                self._unknown.popitem(last=False)
            return None
        self.put(entry)
        return entry


def _check_usable(entry: KeyEntry, now: dt.datetime) -> None:
    if entry.status == "revoked":
        # A rotated key is revoked with a grace period during which it still works.
        if entry.grace_until is None:
            raise AuthenticationFailed(
                "Invalid API key: the key has been revoked.", code="key_revoked"
            )
        if now >= entry.grace_until:
            raise AuthenticationFailed(
                "Invalid API key: the key was rotated and its grace period is over.",
                code="key_rotated",
            )
    elif entry.status == "blocked":
        raise AuthenticationFailed("Invalid API key: the key is blocked.", code="key_blocked")
    if entry.expires_at is not None and now >= entry.expires_at:
        raise AuthenticationFailed("Invalid API key: the key has expired.", code="key_expired")
