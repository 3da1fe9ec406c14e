"""Provider credentials on both backends: encrypted at rest, revealed only on request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text

from tests.integration.store.conftest import Database
from tollway.store import (
    VAULT_KEY_ENV,
    RecordNotFound,
    Reencryption,
    ReencryptionInterrupted,
    SecretBox,
    Store,
    VaultKeyError,
    generate_vault_key,
)
from tollway.store.engine import make_engine

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


async def ciphertexts(database: Database) -> dict[str, bytes]:
    rows = await database.fetch("SELECT name, ciphertext FROM provider_credentials")
    return {name: bytes(ciphertext) for name, ciphertext in rows}


@asynccontextmanager
async def opened(database: Database, keys: str) -> AsyncIterator[Store]:
    """A store on ``database`` whose vault key variable holds ``keys`` (a replica)."""
    replica = database.store(SecretBox(keys))
    await replica.open()
    try:
        yield replica
    finally:
        await replica.close()


async def test_reencrypt_moves_every_credential_under_the_first_key(
    store: Store, database: Database
) -> None:
    old_key, new_key = generate_vault_key(), generate_vault_key()
    async with opened(database, old_key) as before:
        await before.credentials.put("a", "openai", "secret-a")
        await before.credentials.put("b", "openai", "secret-b")
        records = {r.name: r for r in await before.credentials.find()}

    async with opened(database, f"{new_key},{old_key}") as rotating:
        await rotating.credentials.put("c", "openai", "secret-c")  # under the new key already
        assert await rotating.credentials.under_older_keys() == ["a", "b"]
        assert await rotating.credentials.reencrypt() == Reencryption(reencrypted=2, current=1)
        assert await rotating.credentials.under_older_keys() == []
        assert await rotating.credentials.reencrypt() == Reencryption(reencrypted=0, current=3)
        # The secrets did not change: replicas holding them must have nothing to reload.
        after = {r.name: r for r in await rotating.credentials.find()}
        assert all(after[name] == records[name] for name in ("a", "b"))

    async with opened(database, new_key) as rotated:
        for name in ("a", "b", "c"):
            assert await rotated.credentials.reveal(name) == f"secret-{name}"
    async with opened(database, generate_vault_key()) as wrong:
        assert await wrong.credentials.under_older_keys() == ["a", "b", "c"]


async def test_a_credential_no_key_decrypts_is_named_and_left_as_it_is(
    store: Store, database: Database
) -> None:
    old_key, new_key, stray_key = (generate_vault_key() for _ in range(3))
    async with opened(database, old_key) as before:
        await before.credentials.put("a", "openai", "secret-a")
        await before.credentials.put("z", "openai", "secret-z")
    async with opened(database, stray_key) as stray:
        await stray.credentials.put("m-stray", "openai", "secret-m")
    stored = await ciphertexts(database)

    async with opened(database, f"{new_key},{old_key}") as rotating:
        result = await rotating.credentials.reencrypt()
    assert result == Reencryption(reencrypted=2, current=0, undecryptable=("m-stray",))
    now = await ciphertexts(database)
    assert now["m-stray"] == stored["m-stray"]
    assert now["a"] != stored["a"] and now["z"] != stored["z"]
    async with opened(database, new_key) as rotated:
        assert await rotated.credentials.reveal("z") == "secret-z"


async def test_reencrypting_beside_writes_and_another_replica_loses_nothing(
    store: Store, database: Database
) -> None:
    old_key, new_key = generate_vault_key(), generate_vault_key()
    names = [f"cred-{i:03}" for i in range(150)]  # more than two write batches
    async with opened(database, old_key) as before:
        for name in names:
            await before.credentials.put(name, "openai", f"old-{name}")
    rotating = f"{new_key},{old_key}"
    async with (
        opened(database, rotating) as first,
        opened(database, rotating) as second,
        opened(database, rotating) as writer,
    ):

        async def write() -> None:
            # Puts and deletes while both replicas re-encrypt: none may be overwritten.
            for name in names[::3]:
                await writer.credentials.put(name, "openai", f"new-{name}")
                await asyncio.sleep(0)
            for name in names[1::6]:
                await writer.credentials.delete(name)

        one, two, _ = await asyncio.gather(
            first.credentials.reencrypt(), second.credentials.reencrypt(), write()
        )
    deleted, put = set(names[1::6]), set(names[::3])
    async with opened(database, new_key) as rotated:
        assert {r.name for r in await rotated.credentials.find()} == set(names) - deleted
        for name in sorted(set(names) - deleted):
            expected = f"new-{name}" if name in put else f"old-{name}"
            assert await rotated.credentials.reveal(name) == expected, name
        assert await rotated.credentials.under_older_keys() == []
    assert one.undecryptable == two.undecryptable == ()
    # Each credential left under the old key was re-encrypted by exactly one replica.
    untouched = len(names) - len(deleted) - len(put)
    assert untouched <= one.reencrypted + two.reencrypted <= len(names)


async def test_reencrypt_needs_the_vault_key(
    store: Store, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.credentials.put("openai", "openai", SECRET)
    from_env = database.store()
    await from_env.open()
    try:
        monkeypatch.delenv(VAULT_KEY_ENV, raising=False)
        with pytest.raises(VaultKeyError, match=f"{VAULT_KEY_ENV} is not set"):
            await from_env.credentials.reencrypt()
    finally:
        await from_env.close()


async def test_a_reencryption_cut_short_says_what_it_did(store: Store, database: Database) -> None:
    # A write batch that lost to other writers was reported as "nothing was changed" although
    # the batches before it were committed: the count of those is what the operator needs.
    if database.backend != "postgresql":
        pytest.skip("PostgreSQL's row locks make the interruption deterministic")
    old_key, new_key = generate_vault_key(), generate_vault_key()
    names = [f"cred-{i:03}" for i in range(100)]  # two write batches: 64, then 36
    async with opened(database, old_key) as before:
        for name in names:
            await before.credentials.put(name, "openai", f"old-{name}")
    engine = make_engine(database.url, schema=database.schema)
    lock = "SELECT name FROM provider_credentials WHERE name = :name FOR UPDATE"
    try:
        async with engine.connect() as other, other.begin():
            await other.execute(text(lock), {"name": "cred-090"})
            async with opened(database, f"{new_key},{old_key}") as rotating:
                running = asyncio.create_task(rotating.credentials.reencrypt())
                await asyncio.sleep(0.3)  # the second batch holds cred-064.. and waits on 090
                # A row the second batch holds: a deadlock, which PostgreSQL breaks (after its
                # deadlock_timeout, 1 s) by cancelling the batch that waited first.
                await other.execute(text(lock), {"name": "cred-064"})
                with pytest.raises(ReencryptionInterrupted) as caught:
                    await running
    finally:
        await engine.dispose()
    assert caught.value.done == Reencryption(reencrypted=64, current=0)
    assert "64 credential(s) were re-encrypted" in str(caught.value)
    assert "nothing was changed" not in str(caught.value)
    async with opened(database, new_key) as rotated:
        assert await rotated.credentials.under_older_keys() == names[64:]
    async with opened(database, f"{new_key},{old_key}") as again:
        assert await again.credentials.reencrypt() == Reencryption(reencrypted=36, current=64)
