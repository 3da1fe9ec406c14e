"""The in-memory key index across a full reload that overlaps changes."""

from __future__ import annotations

from tollway.auth.keys import KeyEntry, KeyIndex
from tollway.auth.principal import Principal
from tollway.store.keys import hash_key


def _entry(key_id: str, secret: str) -> KeyEntry:
    principal = Principal(kind="key", id=key_id, role="member")
    return KeyEntry(key_id, hash_key(secret), "active", None, None, principal)


async def test_a_key_made_while_a_full_reload_reads_the_store_stays_known() -> None:
    # The reload read the store before the key was made: its set lacks it. The key stayed
    # out, so its next request had to ask the store, and failed (503) while the store was
    # down, though the gateway had held the key in memory.
    asked: list[str] = []

    async def lookup(key_hash: str) -> KeyEntry | None:
        asked.append(key_hash)
        return None

    index = KeyIndex(lookup)
    old, removed = _entry("k-old", "tw-old"), _entry("k-gone", "tw-gone")
    index.replace_all([old, removed])
    snapshot = index.begin_snapshot()  # a reload starts reading the store
    index.put(_entry("k-new", "tw-new"))  # a key is made meanwhile
    index.remove("k-gone")  # and another revoked
    assert index.replace_all([old, removed], snapshot)  # what it read: before both
    assert (await index.authenticate("tw-new")).id == "k-new"
    assert (await index.authenticate("tw-old")).id == "k-old"
    assert asked == []  # neither needed the store
    try:
        await index.authenticate("tw-gone")
        raise AssertionError("a revoked key came back with an older read")
    except Exception as exc:  # unknown: looked up, not found
        assert "not known" in str(exc)
    assert asked == [hash_key("tw-gone")]
