"""A key's change is never undone by a read of the store that began before it.

The identity service reloads everything from the store now and then (the reconcile), and
single keys when another replica announces a change or a request brings a key it does not
know. Each of those reads can start before a revoke (block, rotate, change) and land after
it; the newer change must win. These tests hold the real read between the database's answer
and its use (``held.py``), make the change meanwhile, then let the read land.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.integration.held import held_after
from tests.integration.store.conftest import Database
from tollway.auth.identity import Actor, Identity
from tollway.auth.principal import Principal
from tollway.core.errors import AuthenticationFailed
from tollway.store import KeyRecord, NewKey, RecordConflict, SecretBox, Store

ADMIN = Actor(Principal(kind="key", id="test-admin", role="admin", user="test-admin"))
ALL_USABLE_KEYS = r"FROM virtual_keys\s+WHERE virtual_keys.status IN"
"""The reload's read of every usable key (``KeyRepository.all_active``)."""
ALL_USERS = r"FROM users ORDER BY"
KEY_BY_HASH = r"virtual_keys.key_hash = "
KEY_BY_ID = r"virtual_keys.id = "


async def make_key(identity: Identity, **fields: object) -> tuple[KeyRecord, str]:
    def new(prefix: str, key_hash: str) -> NewKey:
        return NewKey(name="k", prefix=prefix, key_hash=key_hash, **fields)  # type: ignore[arg-type]

    return await identity.create_key(ADMIN, new)


async def refusal(identity: Identity, secret: str, model: str = "chat") -> str | None:
    """Why ``secret`` is refused for ``model`` now, or None when it would be let through."""
    try:
        principal = await identity.keys.authenticate(secret)
    except AuthenticationFailed as failed:
        return failed.code
    return None if principal.may_use(model) else "model_not_allowed"


Change = Callable[[Identity, KeyRecord], Awaitable[object]]
PAST = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
CHANGES: dict[str, tuple[Change, str]] = {
    "revoke": (lambda i, k: i.set_key_status(ADMIN, k.id, "revoked"), "key_revoked"),
    "block": (lambda i, k: i.set_key_status(ADMIN, k.id, "blocked"), "key_blocked"),
    "rotate": (lambda i, k: i.rotate_key(ADMIN, k.id, None), "key_revoked"),
    "expire": (lambda i, k: i.update_key(ADMIN, k.id, {"expires_at": PAST}), "key_expired"),
    "narrow": (
        lambda i, k: i.update_key(ADMIN, k.id, {"allowed_models": ("other",)}),
        "model_not_allowed",
    ),
}


@pytest.fixture
async def other_replica(database: Database, secret_box: SecretBox) -> AsyncIterator[Identity]:
    """A second identity service on the same database: another replica of the gateway."""
    store = database.store(secret_box)
    await store.open()
    identity = Identity(store)
    await identity.load()
    yield identity
    await store.close()


@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_a_change_made_while_a_reload_reads_is_not_undone_by_it(
    store: Store, change: str
) -> None:
    identity = Identity(store)
    key, secret = await make_key(identity)
    await identity.load()
    make_change, code = CHANGES[change]
    with held_after(ALL_USABLE_KEYS) as hold:
        reload = asyncio.create_task(identity.load())
        await hold.wait()  # the reload has read the key as it was
        await make_change(identity, key)
        assert await refusal(identity, secret) == code  # at once on this node
        hold.release()
        await reload
    assert await refusal(identity, secret) == code


async def test_another_replicas_change_applied_while_a_reload_reads_is_not_undone_by_it(
    store: Store, other_replica: Identity
) -> None:
    here = Identity(store)
    key, secret = await make_key(here)
    await here.load()
    with held_after(ALL_USABLE_KEYS) as hold:
        reload = asyncio.create_task(here.load())
        await hold.wait()
        await other_replica.set_key_status(ADMIN, key.id, "revoked")
        await here.reload_key(key.id)  # the change event reaching this replica
        assert await refusal(here, secret) == "key_revoked"
        hold.release()
        await reload
    assert await refusal(here, secret) == "key_revoked"


async def test_a_user_blocked_while_a_reconcile_reads_stays_blocked(store: Store) -> None:
    identity = Identity(store)
    user = await store.users.create(email=f"u-{uuid.uuid4().hex[:8]}@example.com")
    _, secret = await make_key(identity, user_id=user.id)
    await identity.load()
    with held_after(ALL_USERS) as hold:
        reconcile = asyncio.create_task(identity.load())
        await hold.wait()  # the reconcile has read the user as not blocked
        await store.users.update(user.id, blocked=True)
        await identity.identities_changed(ADMIN, "user.update", "user", user.id, {})
        assert await refusal(identity, secret) == "key_blocked"
        hold.release()
        await reconcile
    assert await refusal(identity, secret) == "key_blocked"


async def test_a_key_looked_up_while_it_is_revoked_is_not_remembered_as_usable(
    store: Store, other_replica: Identity
) -> None:
    here = Identity(store)
    await here.load()
    key, secret = await make_key(other_replica)  # unknown here: looked up by hash
    with held_after(KEY_BY_HASH) as hold:
        first = asyncio.create_task(here.keys.authenticate(secret))
        await hold.wait()  # the lookup has read the key as active
        await other_replica.set_key_status(ADMIN, key.id, "revoked")
        await here.reload_key(key.id)
        hold.release()
        await first  # in flight before the revoke reached here: judged on what it read
    assert await refusal(here, secret) == "key_revoked"


async def _race(
    store: Store, first: Callable[[], Awaitable[object]], second: Callable[[], Awaitable[object]]
) -> list[object]:
    """Run ``first`` up to its first statement on the key, then ``second``, then both out."""
    with held_after(KEY_BY_ID) as hold:
        one = asyncio.create_task(first())
        await hold.wait()
        two = asyncio.create_task(second())
        # Without a row lock the second finishes now; with one it waits for the first.
        await asyncio.wait({two}, timeout=1.0)
        hold.release()
        return await asyncio.gather(one, two, return_exceptions=True)


def _postgres_only(database: Database) -> None:
    # SQLite lets one writer at a time in: the races below need PostgreSQL's concurrency.
    if database.backend != "postgresql":
        pytest.skip("concurrent writers to one row need PostgreSQL")


async def test_a_change_written_across_a_revoke_does_not_bring_the_key_back(
    database: Database, store: Store
) -> None:
    _postgres_only(database)
    identity = Identity(store)
    key, secret = await make_key(identity)
    await identity.load()
    results = await _race(
        store,
        lambda: identity.update_key(ADMIN, key.id, {"name": "renamed"}),
        lambda: identity.set_key_status(ADMIN, key.id, "revoked"),
    )
    assert not any(isinstance(result, BaseException) for result in results), results
    assert await refusal(identity, secret) == "key_revoked"
    await identity.load()
    assert await refusal(identity, secret) == "key_revoked"


@pytest.mark.parametrize("late", ["unblock", "rotate"])
async def test_a_revoke_is_final_even_against_a_concurrent_unblock_or_rotation(
    database: Database, store: Store, late: str
) -> None:
    _postgres_only(database)
    identity = Identity(store)
    key, secret = await make_key(identity)
    if late == "unblock":
        await identity.set_key_status(ADMIN, key.id, "blocked")

    async def late_change() -> object:
        if late == "unblock":
            return await identity.set_key_status(ADMIN, key.id, "active")
        return await identity.rotate_key(ADMIN, key.id, dt.timedelta(hours=1))

    results = await _race(
        store, late_change, lambda: identity.set_key_status(ADMIN, key.id, "revoked")
    )
    # The late change either ran wholly before the revoke or was refused after it.
    assert results[1] is not None and not isinstance(results[1], BaseException), results
    assert not isinstance(results[0], BaseException) or isinstance(results[0], RecordConflict)
    stored = await store.keys.get(key.id)
    assert (stored.status, stored.grace_until) == ("revoked", None)
    await identity.load()
    assert await refusal(identity, secret) == "key_revoked"
