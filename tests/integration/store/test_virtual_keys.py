"""Virtual keys on both backends: hashes, filters, status, rotation, the cache load."""

from __future__ import annotations

import datetime as dt

import pytest

from tollway.store import (
    InvalidRecord,
    KeyStatus,
    NewKey,
    RecordConflict,
    RecordNotFound,
    Store,
    generate_key,
    hash_key,
    verify,
)

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def new_key(name: str = "job", **fields: object) -> tuple[str, NewKey]:
    """A generated key and the record to store for it."""
    key, prefix, key_hash = generate_key()
    return key, NewKey(name=name, prefix=prefix, key_hash=key_hash, **fields)  # type: ignore[arg-type]


async def test_create_and_find_by_hash(store: Store) -> None:
    team = await store.teams.create("ml")
    user = await store.users.create(email="erin@example.com")
    expires = dt.datetime(2027, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    key, new = new_key(
        "classification",
        user_id=user.id,
        team_id=team.id,
        allowed_models=("gpt-4o-mini", "claude-*"),
        expires_at=expires,
        tags={"service": "classification-job"},
        metadata={"owner": {"slack": "#ml"}},
        limits={"budget": {"usd": 25.5, "period": "month"}, "rpm": 60},
    )
    created = await store.keys.create(new)
    assert (created.status, created.user_id, created.team_id) == ("active", user.id, team.id)
    assert created.allowed_models == ("gpt-4o-mini", "claude-*")
    assert created.tags == {"service": "classification-job"}
    assert created.metadata == {"owner": {"slack": "#ml"}}
    assert created.limits == {"budget": {"usd": 25.5, "period": "month"}, "rpm": 60}
    assert created.expires_at == expires and created.expires_at.tzinfo == dt.UTC
    assert created.last_used_at is None and created.revoked_at is None

    found = await store.keys.get_by_hash(hash_key(key))
    assert found == created == await store.keys.get(created.id)
    assert verify(key, found.key_hash)
    assert not verify(key + "x", found.key_hash)
    assert key not in repr(found) and found.key_hash not in repr(found)
    assert key.startswith(found.prefix)
    with pytest.raises(RecordNotFound):
        await store.keys.get_by_hash(hash_key("tw-unknown"))


async def test_key_hashes_are_unique_and_owners_must_exist(store: Store) -> None:
    _, new = new_key()
    await store.keys.create(new)
    with pytest.raises(RecordConflict, match="hash"):
        await store.keys.create(NewKey(name="again", prefix=new.prefix, key_hash=new.key_hash))
    with pytest.raises(RecordNotFound, match="team"):
        await store.keys.create(new_key(team_id="no-such-team")[1])
    with pytest.raises(RecordNotFound, match="user"):
        await store.keys.create(new_key(user_id="no-such-user")[1])
    with pytest.raises(RecordNotFound):
        await store.keys.get("no-such-key")


async def test_find_with_filters(store: Store) -> None:
    ml, ads = await store.teams.create("ml"), await store.teams.create("ads")
    frank = await store.users.create(email="frank@example.com")
    a = await store.keys.create(new_key("a", team_id=ml.id)[1])
    b = await store.keys.create(new_key("b", team_id=ml.id, user_id=frank.id)[1])
    c = await store.keys.create(new_key("c", team_id=ads.id)[1])
    await store.keys.set_status(a.id, "blocked")

    assert [k.name for k in await store.keys.find(team_id=ml.id)] == ["a", "b"]
    assert [k.name for k in await store.keys.find(user_id=frank.id)] == ["b"]
    assert [k.name for k in await store.keys.find(status="active")] == ["b", "c"]
    assert [k.name for k in await store.keys.find(team_id=ml.id, status="blocked")] == ["a"]
    assert [k.name for k in await store.keys.find(prefix=c.prefix)] == ["c"]
    assert len(await store.keys.find()) == 3
    assert b.id in {k.id for k in await store.keys.find(status="active")}


async def test_update_sets_and_clears(store: Store) -> None:
    key = await store.keys.create(
        new_key(limits={"rpm": 10}, expires_at=NOW, allowed_models=("a",))[1]
    )
    updated = await store.keys.update(
        key.id, name="renamed", allowed_models=[], tags={"env": "prod"}, limits=None
    )
    assert (updated.name, updated.allowed_models, updated.tags) == ("renamed", (), {"env": "prod"})
    assert updated.limits is None and updated.expires_at == NOW
    assert (await store.keys.update(key.id, expires_at=None)).expires_at is None
    with pytest.raises(InvalidRecord, match="timezone"):
        await store.keys.update(key.id, expires_at=dt.datetime(2027, 1, 1))
    with pytest.raises(RecordNotFound):
        await store.keys.update("no-such-key", name="x")


async def test_status_changes_and_revocation_is_final(store: Store) -> None:
    key = await store.keys.create(new_key()[1])
    assert (await store.keys.set_status(key.id, "blocked")).status == "blocked"
    assert (await store.keys.set_status(key.id, "active")).status == "active"
    revoked = await store.keys.set_status(key.id, "revoked")
    assert revoked.status == "revoked" and revoked.revoked_at is not None
    assert revoked.revoked_at.tzinfo == dt.UTC
    with pytest.raises(RecordConflict, match="revoked"):
        await store.keys.set_status(key.id, "active")
    with pytest.raises(InvalidRecord):
        await store.keys.set_status(key.id, "deleted")  # type: ignore[arg-type]


async def test_a_block_is_lifted_only_by_as_much_authority_as_made_it(store: Store) -> None:
    key = await store.keys.create(new_key()[1])
    assert (await store.keys.set_status(key.id, "blocked", authority="team_admin")).blocked_by == (
        "team_admin"
    )
    with pytest.raises(RecordConflict, match="blocked by team_admin"):
        await store.keys.set_status(key.id, "active", authority="owner")
    # A weaker block leaves the stronger one as it is; a stronger one replaces it.
    weaker = await store.keys.set_status(key.id, "blocked", authority="owner")
    assert (weaker.status, weaker.blocked_by) == ("blocked", "team_admin")
    assert (await store.keys.set_status(key.id, "blocked")).blocked_by == "admin"
    with pytest.raises(RecordConflict):
        await store.keys.set_status(key.id, "active", authority="team_admin")
    lifted = await store.keys.set_status(key.id, "active")
    assert (lifted.status, lifted.blocked_by) == ("active", None)
    await store.keys.set_status(key.id, "blocked", authority="owner")
    assert (await store.keys.set_status(key.id, "active", authority="owner")).status == "active"


@pytest.mark.parametrize("ending", ["blocked", "revoked"])
async def test_ending_a_key_ends_the_grace_of_the_keys_it_replaced(
    store: Store, ending: KeyStatus
) -> None:
    first = await store.keys.create(new_key()[1])
    grace = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    second = await store.keys.rotate(
        first.id, prefix="tw-2", key_hash=hash_key("2"), grace_until=grace
    )
    third = await store.keys.rotate(
        second.id, prefix="tw-3", key_hash=hash_key("3"), grace_until=grace
    )
    other = await store.keys.create(new_key()[1])
    assert {k.id for k in await store.keys.all_active()} == {
        first.id,
        second.id,
        third.id,
        other.id,
    }
    await store.keys.set_status(third.id, ending)
    assert {k.id for k in await store.keys.all_active()} == {third.id, other.id} - (
        {third.id} if ending == "revoked" else set()
    )
    assert [(await store.keys.get(k.id)).grace_until for k in (first, second)] == [None, None]


async def test_rotation_keeps_the_old_key_through_its_grace_period(store: Store) -> None:
    team = await store.teams.create("ml")
    old = await store.keys.create(
        new_key("svc", team_id=team.id, tags={"service": "x"}, limits={"rpm": 5})[1]
    )
    grace = NOW + dt.timedelta(hours=1)
    replacement_key, prefix, key_hash = generate_key()
    new = await store.keys.rotate(old.id, prefix=prefix, key_hash=key_hash, grace_until=grace)
    assert (new.rotated_from, new.name, new.team_id, new.status) == (
        old.id,
        "svc",
        team.id,
        "active",
    )
    assert (new.tags, new.limits) == ({"service": "x"}, {"rpm": 5})
    assert verify(replacement_key, new.key_hash)

    rotated = await store.keys.get(old.id)
    assert (rotated.status, rotated.grace_until) == ("revoked", grace)
    assert rotated.accepts_requests(NOW) and not rotated.accepts_requests(grace)
    in_grace = {k.id for k in await store.keys.all_active(NOW)}
    after_grace = {k.id for k in await store.keys.all_active(grace + dt.timedelta(seconds=1))}
    assert in_grace == {old.id, new.id}
    assert after_grace == {new.id}

    with pytest.raises(RecordConflict, match="only active keys rotate"):
        await store.keys.rotate(old.id, prefix="tw-x", key_hash=hash_key("tw-x"))
    # Revoking a key in its grace period ends the grace at once.
    await store.keys.set_status(old.id, "revoked")
    assert {k.id for k in await store.keys.all_active(NOW)} == {new.id}


async def test_all_active_loads_what_the_key_cache_needs(store: Store) -> None:
    active = await store.keys.create(new_key("active")[1])
    blocked = await store.keys.create(new_key("blocked")[1])
    revoked = await store.keys.create(new_key("revoked")[1])
    expired = await store.keys.create(new_key("expired", expires_at=NOW)[1])
    await store.keys.set_status(blocked.id, "blocked")
    await store.keys.set_status(revoked.id, "revoked")

    loaded = {k.id: k for k in await store.keys.all_active(NOW)}
    assert set(loaded) == {active.id, blocked.id, expired.id}
    assert loaded[active.id].key_hash == active.key_hash
    assert [k.accepts_requests(NOW) for k in (loaded[active.id], loaded[blocked.id])] == [
        True,
        False,
    ]
    assert not loaded[expired.id].accepts_requests(NOW)


async def test_last_used_is_written_in_batches(store: Store) -> None:
    first = await store.keys.create(new_key("first")[1])
    second = await store.keys.create(new_key("second")[1])
    await store.keys.record_use({first.id: NOW, second.id: NOW + dt.timedelta(minutes=1)})
    assert (await store.keys.get(first.id)).last_used_at == NOW
    assert (await store.keys.get(second.id)).last_used_at == NOW + dt.timedelta(minutes=1)
    await store.keys.record_use({})


async def test_a_keys_last_use_never_moves_back(store: Store) -> None:
    # Replicas write their batches at their own moments: an earlier use written later stays
    # behind the later use already written.
    key = await store.keys.create(new_key("shared")[1])
    await store.keys.record_use({key.id: NOW + dt.timedelta(minutes=1)})
    await store.keys.record_use({key.id: NOW})
    assert (await store.keys.get(key.id)).last_used_at == NOW + dt.timedelta(minutes=1)
    await store.keys.record_use({key.id: NOW + dt.timedelta(minutes=2)})
    assert (await store.keys.get(key.id)).last_used_at == NOW + dt.timedelta(minutes=2)


async def test_deleting_a_team_or_user_revokes_their_keys(store: Store) -> None:
    team = await store.teams.create("ml")
    user = await store.users.create(email="gina@example.com")
    team_key = await store.keys.create(new_key("team", team_id=team.id)[1])
    user_key = await store.keys.create(new_key("user", user_id=user.id)[1])
    await store.teams.delete(team.id)
    await store.users.delete(user.id)
    for key_id in (team_key.id, user_key.id):
        kept = await store.keys.get(key_id)
        assert kept.status == "revoked" and (kept.team_id, kept.user_id) == (None, None)
    assert await store.keys.all_active(NOW) == []
