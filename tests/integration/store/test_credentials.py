"""Provider credentials on both backends: encrypted at rest, revealed only on request."""

from __future__ import annotations

import pytest

from tests.integration.store.conftest import Database
from tollway.store import (
    VAULT_KEY_ENV,
    RecordNotFound,
    SecretBox,
    Store,
    VaultKeyError,
    generate_vault_key,
)

SECRET = "sk-proj-0123456789abcdefghijklmnop"


async def test_secrets_are_encrypted_at_rest(store: Store, database: Database) -> None:
    record = await store.credentials.put("openai-prod", "openai", SECRET)
    (first,) = await database.fetch(
        "SELECT ciphertext FROM provider_credentials WHERE name = :name", name="openai-prod"
    )
    ciphertext = bytes(first[0])
    assert SECRET.encode() not in ciphertext and ciphertext != SECRET.encode()

    rotated = await store.credentials.put("openai-prod", "openai", SECRET)
    (second,) = await database.fetch("SELECT ciphertext FROM provider_credentials")
    assert bytes(second[0]) != ciphertext, "the same secret must not encrypt the same twice"
    assert rotated.id == record.id and record.rotated_at is None
    assert rotated.rotated_at is not None and rotated.rotated_at >= record.created_at

    assert await store.credentials.reveal("openai-prod") == SECRET


async def test_records_never_carry_the_secret(store: Store) -> None:
    await store.credentials.put("anthropic", "anthropic", SECRET)
    await store.credentials.put("azure-east", "azure_openai", "azure-secret")
    listed = await store.credentials.find()
    assert [c.name for c in listed] == ["anthropic", "azure-east"]
    assert [c.name for c in await store.credentials.find(provider="anthropic")] == ["anthropic"]
    shown = repr(listed) + repr(await store.credentials.get("anthropic")) + repr(store)
    assert SECRET not in shown and "azure-secret" not in shown
    assert not hasattr(listed[0], "secret") and not hasattr(listed[0], "ciphertext")


async def test_put_replaces_and_delete_removes(store: Store) -> None:
    await store.credentials.put("shared", "openai", "old")
    await store.credentials.put("shared", "azure_openai", "new")
    assert (await store.credentials.get("shared")).provider == "azure_openai"
    assert await store.credentials.reveal("shared") == "new"
    await store.credentials.delete("shared")
    for missing in (store.credentials.get, store.credentials.reveal, store.credentials.delete):
        with pytest.raises(RecordNotFound, match="shared"):
            await missing("shared")


async def test_a_different_vault_key_cannot_decrypt(store: Store, database: Database) -> None:
    await store.credentials.put("openai", "openai", SECRET)
    other = database.store(SecretBox(generate_vault_key()))
    await other.open()
    try:
        with pytest.raises(VaultKeyError, match=f"credential 'openai'.*{VAULT_KEY_ENV}"):
            await other.credentials.reveal("openai")
    finally:
        await other.close()


async def test_vault_key_comes_from_the_environment(
    store: Store, database: Database, secret_box: SecretBox, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.credentials.put("openai", "openai", SECRET)
    from_env = database.store()
    await from_env.open()
    try:
        monkeypatch.delenv(VAULT_KEY_ENV, raising=False)
        with pytest.raises(VaultKeyError, match=f"{VAULT_KEY_ENV} is not set"):
            await from_env.credentials.put("x", "openai", SECRET)
        monkeypatch.setenv(VAULT_KEY_ENV, "not-a-fernet-key")
        with pytest.raises(VaultKeyError, match="not a valid Fernet key"):
            await from_env.credentials.reveal("openai")
        monkeypatch.setenv(VAULT_KEY_ENV, generate_vault_key())
        with pytest.raises(VaultKeyError, match="another key"):
            await from_env.credentials.reveal("openai")
    finally:
        await from_env.close()


async def test_changing_the_vault_key(store: Store, database: Database) -> None:
    old_key, new_key = generate_vault_key(), generate_vault_key()
    before = database.store(SecretBox(old_key))
    await before.open()
    await before.credentials.put("a", "openai", "secret-a")
    await before.credentials.put("b", "openai", "secret-b")
    await before.close()

    rotating = database.store(SecretBox(f"{new_key},{old_key}"))
    await rotating.open()
    assert await rotating.credentials.reencrypt_all() == 2
    await rotating.close()

    after = database.store(SecretBox(new_key))
    await after.open()
    try:
        assert await after.credentials.reveal("a") == "secret-a"
        assert await after.credentials.reveal("b") == "secret-b"
        wrong = database.store(SecretBox(generate_vault_key()))
        with pytest.raises(VaultKeyError, match="any key"):
            await wrong.credentials.reencrypt_all()
        await wrong.close()
    finally:
        await after.close()
