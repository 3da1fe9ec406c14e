"""Teams, users and memberships on both backends: round trips, conflicts, missing records."""

from __future__ import annotations

import datetime as dt

import pytest

from tollway.store import (
    InvalidRecord,
    RecordConflict,
    RecordNotFound,
    Store,
)

METADATA = {"cost_center": "ml-42", "nested": {"list": [1, 2.5, "x", None, True]}, "n": 3}


def assert_utc(value: dt.datetime | None) -> None:
    """``value`` is an aware datetime in UTC."""
    assert value is not None
    assert value.utcoffset() == dt.timedelta(0)


async def test_team_round_trip(store: Store) -> None:
    created = await store.teams.create("ml-platform", organization="acme", metadata=METADATA)
    assert created.metadata == METADATA
    assert_utc(created.created_at)
    assert_utc(created.updated_at)
    assert await store.teams.get(created.id) == created
    assert await store.teams.get_by_name("ml-platform") == created

    updated = await store.teams.update(created.id, name="ml", metadata={"k": "v"})
    assert (updated.name, updated.organization, updated.metadata) == ("ml", "acme", {"k": "v"})
    assert updated.updated_at >= created.updated_at
    cleared = await store.teams.update(created.id, organization=None)
    assert cleared.organization is None and cleared.name == "ml"

    await store.teams.delete(created.id)
    with pytest.raises(RecordNotFound):
        await store.teams.get(created.id)


async def test_team_names_are_unique(store: Store) -> None:
    await store.teams.create("search")
    other = await store.teams.create("ads")
    with pytest.raises(RecordConflict, match="search"):
        await store.teams.create("search")
    with pytest.raises(RecordConflict, match="search"):
        await store.teams.update(other.id, name="search")
    # The failed transactions left nothing behind.
    assert [team.name for team in await store.teams.find()] == ["ads", "search"]


async def test_find_teams_by_organization(store: Store) -> None:
    await store.teams.create("b", organization="acme")
    await store.teams.create("a", organization="acme")
    await store.teams.create("c", organization="globex")
    assert [team.name for team in await store.teams.find(organization="acme")] == ["a", "b"]
    assert len(await store.teams.find()) == 3


async def test_missing_teams_raise_not_found(store: Store) -> None:
    with pytest.raises(RecordNotFound, match="nope"):
        await store.teams.get("nope")
    with pytest.raises(RecordNotFound):
        await store.teams.get_by_name("nope")
    with pytest.raises(RecordNotFound):
        await store.teams.update("nope", name="x")
    with pytest.raises(RecordNotFound):
        await store.teams.delete("nope")


async def test_user_round_trip(store: Store) -> None:
    alice = await store.users.create(
        email="Alice@Example.com", name="Alice", role="admin", metadata=METADATA
    )
    assert alice.email == "alice@example.com"
    assert (alice.kind, alice.role, alice.blocked, alice.metadata) == (
        "human",
        "admin",
        False,
        METADATA,
    )
    assert_utc(alice.created_at)
    assert await store.users.get(alice.id) == alice
    assert await store.users.get_by_email("ALICE@example.com") == alice

    bot = await store.users.create(name="classifier", kind="service", role="member")
    assert bot.email is None
    blocked = await store.users.update(bot.id, blocked=True, role="viewer", name=None)
    assert (blocked.blocked, blocked.role, blocked.name) == (True, "viewer", None)

    assert [user.id for user in await store.users.find(kind="service")] == [bot.id]
    assert [user.id for user in await store.users.find(blocked=False)] == [alice.id]
    assert [user.id for user in await store.users.find(role="admin")] == [alice.id]
    assert len(await store.users.find()) == 2

    await store.users.delete(bot.id)
    with pytest.raises(RecordNotFound):
        await store.users.get(bot.id)


async def test_user_rules(store: Store) -> None:
    await store.users.create(email="bob@example.com")
    with pytest.raises(RecordConflict, match=r"bob@example\.com"):
        await store.users.create(email="BOB@example.com")
    with pytest.raises(InvalidRecord, match="email"):
        await store.users.create(name="no email", kind="human")
    with pytest.raises(InvalidRecord, match="role"):
        await store.users.create(email="c@example.com", role="owner")  # type: ignore[arg-type]
    with pytest.raises(InvalidRecord):
        await store.users.create(email="not-an-address")
    # Service accounts without email do not collide with one another.
    await store.users.create(kind="service", name="one")
    await store.users.create(kind="service", name="two")
    with pytest.raises(RecordNotFound):
        await store.users.get_by_email("nobody@example.com")


async def test_memberships(store: Store) -> None:
    ml = await store.teams.create("ml")
    ads = await store.teams.create("ads")
    carol = await store.users.create(email="carol@example.com")
    dave = await store.users.create(email="dave@example.com")

    added = await store.teams.add_member(ml.id, carol.id, "team_admin")
    assert (added.team_id, added.user_id, added.role) == (ml.id, carol.id, "team_admin")
    await store.teams.add_member(ads.id, carol.id)
    await store.teams.add_member(ml.id, dave.id, "viewer")
    changed = await store.teams.add_member(ml.id, dave.id, "member")
    assert changed.role == "member"

    assert {m.user_id for m in await store.teams.members(team_id=ml.id)} == {carol.id, dave.id}
    assert {m.team_id for m in await store.teams.members(user_id=carol.id)} == {ml.id, ads.id}
    assert {u.id for u in await store.users.find(team_id=ml.id)} == {carol.id, dave.id}
    assert len(await store.teams.members()) == 3

    await store.teams.remove_member(ml.id, dave.id)
    with pytest.raises(RecordNotFound):
        await store.teams.remove_member(ml.id, dave.id)
    with pytest.raises(RecordNotFound, match="user"):
        await store.teams.add_member(ml.id, "no-such-user")
    with pytest.raises(RecordNotFound, match="team"):
        await store.teams.add_member("no-such-team", carol.id)
    with pytest.raises(InvalidRecord):
        await store.teams.add_member(ml.id, carol.id, "admin")  # type: ignore[arg-type]

    # Memberships go with their team or user.
    await store.teams.delete(ml.id)
    await store.users.delete(carol.id)
    assert await store.teams.members() == []


async def test_timestamps_are_utc_whatever_zone_they_come_in(store: Store) -> None:
    from tollway.store import AuditEntry

    paris = dt.timezone(dt.timedelta(hours=2))
    at = dt.datetime(2026, 6, 1, 14, 30, 15, 123456, tzinfo=paris)
    event = await store.audit.append(AuditEntry(actor="bootstrap", action="test", at=at))
    assert event.at == at
    assert event.at.tzinfo == dt.UTC
    assert event.at.hour == 12
    page = await store.audit.page()
    assert page.events[0].at == at and page.events[0].at.tzinfo == dt.UTC
    with pytest.raises(InvalidRecord, match="timezone"):
        await store.audit.append(AuditEntry(actor="x", action="y", at=dt.datetime(2026, 1, 1)))


async def test_teams_are_provisioned_by_issuer_and_group_not_by_name(store: Store) -> None:
    made, changed = await store.teams.provision("https://a.example", ["research", "ml"])
    assert [(c.team.name, c.team.oidc_group, c.how) for c in changed] == [
        ("research", "research", "created"),
        ("ml", "ml", "created"),
    ]
    # Renamed, the team still stands for its group; found again, nothing changes.
    await store.teams.update(made["research"], name="Research Lab")
    assert await store.teams.provision("https://a.example", ["research"]) == (
        {"research": made["research"]},
        [],
    )
    # Another issuer's group of the same name is another group: its own team, named apart
    # from the one that holds the name ("ml" stands for issuer a's group).
    other, changed = await store.teams.provision("https://b.example", ["ml"])
    assert other["ml"] != made["ml"]
    (team,) = [c.team for c in changed]
    assert (team.name, team.oidc_issuer, team.oidc_group) == (
        f"ml ({team.id[:8]})",
        "https://b.example",
        "ml",
    )
    # A team an admin made under a group's name, standing for none, is taken for it.
    prepared = await store.teams.create("search")
    found, changed = await store.teams.provision("https://b.example", ["search"])
    assert found == {"search": prepared.id}
    assert [(c.team.id, c.how) for c in changed] == [(prepared.id, "linked")]
    # A name as long as a team name may be still fits with the id after it.
    long_group = "g" * 200
    await store.teams.create(long_group)
    await store.teams.provision("https://c.example", [long_group])
    _, changed = await store.teams.provision("https://d.example", [long_group])
    assert len(changed[0].team.name) == 200
