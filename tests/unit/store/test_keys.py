"""Virtual key material: shape, prefix, hash, constant-time check, no key in reprs."""

from __future__ import annotations

import hashlib
import re

from tollway.store.keys import PREFIX_LENGTH, generate_key, hash_key, key_prefix, verify


def test_generated_keys_have_the_documented_shape() -> None:
    key, prefix, key_hash = generate_key()
    assert re.fullmatch(r"tw-[A-Za-z0-9_-]{40}", key)
    assert prefix == key[:PREFIX_LENGTH] == key_prefix(key) and len(prefix) == 12
    assert key_hash == hashlib.sha256(key.encode()).hexdigest() == hash_key(key)
    assert re.fullmatch(r"[0-9a-f]{64}", key_hash)


def test_generated_keys_differ() -> None:
    keys = {generate_key().key for _ in range(1000)}
    assert len(keys) == 1000


def test_verify() -> None:
    key, _, key_hash = generate_key()
    assert verify(key, key_hash)
    assert verify(key, key_hash.upper())
    assert not verify(key[:-1], key_hash)
    assert not verify(key, hash_key("tw-other"))
    assert not verify(key, "")


def test_repr_shows_the_prefix_not_the_key() -> None:
    generated = generate_key()
    assert generated.prefix in repr(generated)
    assert generated.key not in repr(generated) and generated.key not in str(generated)
    assert generated.key_hash not in repr(generated)
