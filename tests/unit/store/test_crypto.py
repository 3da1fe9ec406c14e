"""The vault key box: round trips, fresh ciphertexts, clear errors, key rotation."""

from __future__ import annotations

import pytest

from tollway.store.crypto import VAULT_KEY_ENV, SecretBox, generate_vault_key
from tollway.store.errors import VaultKeyError


def test_round_trip_with_fresh_ciphertexts() -> None:
    box = SecretBox(generate_vault_key())
    first, second = box.encrypt("sk-secret"), box.encrypt("sk-secret")
    assert first != second
    assert b"sk-secret" not in first
    assert box.decrypt(first) == box.decrypt(second) == "sk-secret"
    assert box.decrypt(box.encrypt("ünïcødé ✓")) == "ünïcødé ✓"


def test_missing_key_names_the_variable_and_how_to_make_one() -> None:
    for environ in ({}, {VAULT_KEY_ENV: "  "}):
        with pytest.raises(VaultKeyError, match=f"{VAULT_KEY_ENV} is not set.*generate_key"):
            SecretBox.from_environ(environ)


def test_malformed_key() -> None:
    with pytest.raises(VaultKeyError, match="not a valid Fernet key"):
        SecretBox("too-short")
    with pytest.raises(VaultKeyError, match="empty"):
        SecretBox(" , ")


def test_wrong_key_is_a_clear_error() -> None:
    token = SecretBox(generate_vault_key()).encrypt("sk-secret")
    other = SecretBox.from_environ({VAULT_KEY_ENV: generate_vault_key()})
    with pytest.raises(VaultKeyError, match=f"credential 'x'.*{VAULT_KEY_ENV}.*another key"):
        other.decrypt(token, what="credential 'x'")
    with pytest.raises(VaultKeyError):
        other.decrypt(b"garbage")


def test_several_keys_rotate_the_vault_key() -> None:
    old, new = generate_vault_key(), generate_vault_key()
    token = SecretBox(old).encrypt("sk-secret")
    rotating = SecretBox(f"{new}, {old}")
    assert rotating.decrypt(token) == "sk-secret"
    # New secrets are encrypted with the first key only.
    assert SecretBox(new).decrypt(rotating.encrypt("sk-next")) == "sk-next"


def test_repr_hides_the_key() -> None:
    key = generate_vault_key()
    assert key not in repr(SecretBox(key))


def test_reencrypt_moves_a_secret_under_the_first_key_once() -> None:
    old, new = generate_vault_key(), generate_vault_key()
    token = SecretBox(old).encrypt("sk-secret")
    rotating = SecretBox(f"{new},{old}")
    assert not rotating.is_current(token)
    moved = rotating.reencrypt(token, what="credential 'x'")
    assert moved is not None and rotating.is_current(moved)
    assert SecretBox(new).decrypt(moved) == "sk-secret"
    assert rotating.reencrypt(moved) is None, "already under the first key: nothing to do"
    with pytest.raises(VaultKeyError, match=f"credential 'x'.*any key in {VAULT_KEY_ENV}"):
        SecretBox(generate_vault_key()).reencrypt(token, what="credential 'x'")
