"""What the tests of the unknown-key lookup limit (auth/miss_limit.py) read and make: the
refusals the gateway counted, and a key written to the store behind the gateway's back (as
another replica would make one), which shows whether the store was asked."""

from __future__ import annotations

import re

import httpx

from tollway.store import NewKey, Store, generate_key


def refused_unasked(url: str) -> int:
    """Unknown keys the gateway at ``url`` refused without asking its store, so far."""
    metrics = httpx.get(url + "/metrics").text
    found = re.search(r"^tollway_unknown_key_lookups_refused_total (\S+)$", metrics, re.M)
    assert found, metrics
    return int(float(found.group(1)))


async def key_made_elsewhere(store_url: str) -> str:
    """A key written straight to the store: the gateway holds it only once it looks it up."""
    store = Store(store_url)
    await store.open()
    try:
        made = generate_key()
        await store.keys.create(
            NewKey(name="elsewhere", prefix=made.prefix, key_hash=made.key_hash)
        )
        return made.key
    finally:
        await store.close()
