"""The in-memory index of virtual keys that authenticates requests without a store query.

The index holds every usable key (active, blocked, or rotated but in its grace period) with
the principal it stands for. It is filled from the store at start-up and kept current by the
identity service, which applies each change here the moment it is written; other replicas
learn through the change feed. A key the index does not know is looked up in the store once
(it may have been created on another replica a moment ago) and remembered as unknown for a
short while, so a client retrying a bad key cannot turn every request into a query; a client
sending ever new keys is held to a rate of lookups per address (auth/miss_limit.py).

Reads of the store race with changes: a full reload (or a lookup) can read a key just before
a revoke and land after the revoke was applied here. So every change counts on one clock
(``_version``); a reader notes the clock before it reads (``mark``, ``begin_snapshot``) and
what it read is not applied over a key changed since (``put(since=...)``, ``replace_all``),
nor is a snapshot applied over one that began later. Leaving a key out is always safe: the
next request looks it up in the store afresh.
"""

from __future__ import annotations

import datetime as dt
import hmac
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tollway.auth.miss_limit import UnknownKeyLimit
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
    blocked_reason: str | None = None
    """Why the gateway blocked the key, when it says (its owner left its team)."""


LookupMiss = Callable[[str], Awaitable[KeyEntry | None]]
"""Finds a key by hash in the store when the index does not have it."""


class KeyIndex:
    """Virtual keys by hash, with the checks that make one usable."""

    def __init__(
        self, lookup_miss: LookupMiss | None = None, miss_limit: UnknownKeyLimit | None = None
    ) -> None:
        """``miss_limit``: how often each client address may have ``lookup_miss`` asked
        (unbounded when ``None``)."""
        self._miss_limit = miss_limit
        self._by_hash: dict[str, KeyEntry] = {}
        self._hash_by_id: dict[str, str] = {}
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._lookup_miss = lookup_miss
        self._pinned: dict[str, KeyEntry] = {}
        self._version = 0
        self._changed_at: dict[str, int] = {}  # key id -> version of its last put or remove
        self._snapshot = 0  # the mark of the snapshot in use
        self._replaced_at = 0  # the version at which it was swapped in

    def __len__(self) -> int:
        return len(self._by_hash)

    def mark(self) -> int:
        """Now, on the index's clock: note it before reading a key from the store."""
        return self._version

    def begin_snapshot(self) -> int:
        """Note the start of a full read of the store, for ``replace_all``."""
        self._version += 1
        return self._version

    def is_outdated(self, snapshot: int) -> bool:
        """Whether a snapshot begun at ``snapshot`` is older than the one in use."""
        return snapshot < self._snapshot

    def changed_since(self, key_id: str, mark: int) -> bool:
        """Whether ``key_id`` (or the whole index) changed after ``mark``."""
        return self._replaced_at > mark or self._changed_at.get(key_id, 0) > mark

    def put(self, entry: KeyEntry, since: int | None = None) -> bool:
        """Add or replace a key (replacing takes effect for the next request).

        With ``since`` (the ``mark`` taken before ``entry`` was read), nothing happens when
        the key changed after it: what was read may be older than that change. Returns whether
        the entry was put.
        """
        if since is not None and self.changed_since(entry.key_id, since):
            return False
        old_hash = self._hash_by_id.get(entry.key_id)
        if old_hash is not None and old_hash != entry.key_hash:
            self._by_hash.pop(old_hash, None)
        self._by_hash[entry.key_hash] = entry
        self._hash_by_id[entry.key_id] = entry.key_hash
        self._unknown.pop(entry.key_hash, None)
        self._touch(entry.key_id)
        return True

    def remove(self, key_id: str, since: int | None = None) -> bool:
        """Forget a key (the next request with it looks it up); ``since`` as for ``put``."""
        if since is not None and self.changed_since(key_id, since):
            return False
        key_hash = self._hash_by_id.pop(key_id, None)
        if key_hash is not None:
            self._by_hash.pop(key_hash, None)
        self._touch(key_id)
        return True

    def _touch(self, key_id: str) -> None:
        self._version += 1
        self._changed_at[key_id] = self._version

    def pin(self, entry: KeyEntry) -> None:
        """Add a key that lives outside the store (the bootstrap admin key from config)."""
        self._pinned[entry.key_id] = entry
        self.put(entry)

    def replace_all(self, entries: list[KeyEntry], snapshot: int | None = None) -> bool:
        """Swap in a complete set (start-up, periodic reconcile); pinned keys stay.

        ``snapshot`` is what ``begin_snapshot`` gave before the set was read: a key changed
        since keeps what the index holds of it now, which is newer than what the set read (a
        key made or changed meanwhile stays; one removed stays out, its next request looks it
        up), and a snapshot older than the one in use is not applied at all. Returns whether
        the set was swapped in.
        """
        if snapshot is None:
            snapshot = self.begin_snapshot()
        if self.is_outdated(snapshot):
            return False
        changed = {key_id for key_id, at in self._changed_at.items() if at > snapshot}
        held = self._by_hash
        newer = [
            held[key_hash]
            for key_id in changed
            if (key_hash := self._hash_by_id.get(key_id)) is not None and key_hash in held
        ]
        everything = [
            *(entry for entry in entries if entry.key_id not in changed),
            *newer,
            *self._pinned.values(),
        ]
        self._by_hash = {entry.key_hash: entry for entry in everything}
        self._hash_by_id = {entry.key_id: entry.key_hash for entry in everything}
        self._unknown.clear()
        self._snapshot = snapshot
        self._version += 1
        self._replaced_at = self._version
        # A later snapshot begins after this one, and a single-key read marked before now
        # sees the swap as a change: only changes since this snapshot began still matter.
        self._changed_at = {key_id: at for key_id, at in self._changed_at.items() if at > snapshot}
        return True

    async def authenticate(
        self, secret: str, now: dt.datetime | None = None, source: str | None = None
    ) -> Principal:
        """The principal of ``secret``, or ``AuthenticationFailed`` saying why not;
        ``source``: the client's address, which a key not in memory is looked up for."""
        key_hash = hash_key(secret)
        entry = self._by_hash.get(key_hash)
        if entry is None:
            entry = await self._miss(key_hash, source)
        # The dict lookup found the entry by hash; compare the digests in constant time too.
        if entry is None or not hmac.compare_digest(entry.key_hash, key_hash):
            raise AuthenticationFailed(
                "Invalid API key: the key is not known.", code="invalid_api_key"
            )
        if entry.status != "active" or entry.expires_at is not None:
            # Only keys that can lapse need the clock (most keys never expire).
            _check_usable(entry, now or dt.datetime.now(dt.UTC))
        return entry.principal

    async def _miss(self, key_hash: str, source: str | None) -> KeyEntry | None:
        if self._lookup_miss is None:
            return None
        now = time.monotonic()
        seen = self._unknown.get(key_hash)
        if seen is not None and now - seen < _NEGATIVE_TTL:
            return None
        if self._miss_limit is not None and not self._miss_limit.admit(source):
            return None  # refused unasked, and not remembered: it is not known to be unknown
        mark = self.mark()
        entry = await self._lookup_miss(key_hash)
        if entry is None:
            if self._replaced_at <= mark:  # a reload meanwhile may have brought the key
                self._unknown[key_hash] = now
                self._unknown.move_to_end(key_hash)
                while len(self._unknown) > _NEGATIVE_MAX:
                    self._unknown.popitem(last=False)
            return None
        # Kept only when nothing changed the key while it was read (a revoke may have); this
        # request is judged on what it read either way, as one already in flight would be.
        self.put(entry, since=mark)
        return entry


def _check_usable(entry: KeyEntry, now: dt.datetime) -> None:
    whom = entry.principal  # a known key: the request log names it (never its secret)
    if entry.status == "revoked":
        # A rotated key is revoked with a grace period during which it still works.
        if entry.grace_until is None:
            raise AuthenticationFailed(
                "Invalid API key: the key has been revoked.", code="key_revoked", principal=whom
            )
        if now >= entry.grace_until:
            raise AuthenticationFailed(
                "Invalid API key: the key was rotated and its grace period is over.",
                code="key_rotated", principal=whom,
            )  # fmt: skip
    elif entry.status == "blocked":
        why = f": {entry.blocked_reason}" if entry.blocked_reason else ""
        raise AuthenticationFailed(
            f"Invalid API key: the key is blocked{why}.", code="key_blocked", principal=whom
        )
    if entry.expires_at is not None and now >= entry.expires_at:
        raise AuthenticationFailed(
            "Invalid API key: the key has expired.", code="key_expired", principal=whom
        )
