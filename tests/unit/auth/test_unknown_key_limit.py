"""The per-address limit on store lookups of unknown keys (auth/miss_limit.py)."""

from __future__ import annotations

import time

import pytest

from tollway.auth.keys import KeyEntry, KeyIndex
from tollway.auth.miss_limit import UnknownKeyLimit
from tollway.auth.principal import Principal
from tollway.core.errors import AuthenticationFailed
from tollway.store.keys import hash_key


async def _refused(index: KeyIndex, secret: str, source: str) -> str:
    with pytest.raises(AuthenticationFailed) as caught:
        await index.authenticate(secret, source=source)
    assert caught.value.code == "invalid_api_key"
    return caught.value.message


async def test_random_keys_beyond_an_address_burst_do_not_reach_the_store() -> None:
    asked: list[str] = []

    async def lookup(key_hash: str) -> KeyEntry | None:
        asked.append(key_hash)
        return None

    limit = UnknownKeyLimit(per_second=0.001, burst=2)
    index = KeyIndex(lookup, limit)
    known = KeyEntry("k1", hash_key("tw-known"), "active", None, None, Principal("key", "k1"))
    index.put(known)
    messages = {await _refused(index, f"tw-random-{n}", "192.0.2.1") for n in range(5)}
    assert len(asked) == 2 and limit.refused == 3
    assert len(messages) == 1  # the same 401 asked or not
    await _refused(index, "tw-random-x", "192.0.2.2")  # another address has its own bucket
    assert len(asked) == 3
    assert (await index.authenticate("tw-known", source="192.0.2.1")).id == "k1"
    assert limit.refused == 3  # a known key never touches the limit


def test_an_address_earns_lookups_back_at_its_rate() -> None:
    limit = UnknownKeyLimit(per_second=50.0, burst=1)
    assert limit.admit("192.0.2.1")
    assert not limit.admit("192.0.2.1")
    time.sleep(0.05)
    assert limit.admit("192.0.2.1")


def test_an_ipv6_64_network_shares_one_bucket() -> None:
    limit = UnknownKeyLimit(per_second=0.001, burst=1)
    assert limit.admit("2001:db8:1:2::1")
    assert not limit.admit("2001:db8:1:2:ffff::9")  # same /64
    assert limit.admit("2001:db8:1:3::1")  # another /64
    assert limit.admit("::ffff:192.0.2.7")  # an IPv4 client on a dual-stack socket
    assert not limit.admit("192.0.2.7")
    assert limit.admit(None) and not limit.admit(None)
