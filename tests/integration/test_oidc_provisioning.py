"""Just-in-time provisioning of OIDC sign-ins (docs/oidc.md, "Users and teams in the store").

A real identity provider (oidc-provider under node, tests/integration/oidc) issues the
tokens; gateway processes on SQLite and on PostgreSQL (two replicas on one database for the
race) are driven through the admin API and the OpenAI SDK over HTTP.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_identity import Admin
from tests.integration.test_oidc_gateway import ask, token
from tests.integration.test_oidc_provider import AUDIENCE, node, running_idp
from tests.support import postgres_database, running_gateway, running_gateways

__all__ = ["node"]  # the fixture, imported so this module can use it


@pytest.fixture(scope="module")
def idp(node: str, log_dir: Path) -> Iterator[str]:
    with running_idp(node, log_dir) as issuer:
        yield issuer


def _config(idp: str, simulator_url: str, **issuer: Any) -> dict[str, Any]:
    return {
        "auth": {"oidc": [{"issuer": idp, "audience": [AUDIENCE], "team_claim": "groups",
                           **issuer}]},
        "models": [{"name": "chat", "deployments": [{
            "provider": "openai", "model": "sim-chat", "api_base": simulator_url + "/v1",
            "api_key": "env:TEST_UPSTREAM_KEY"}]}],
    }  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def gateway(
    request: pytest.FixtureRequest, idp: str, log_dir: Path, simulator_url: str
) -> Iterator[str]:
    """A fresh gateway and store (SQLite, or a new PostgreSQL database) for each test."""
    config = _config(idp, simulator_url)
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    databases = postgres_database() if request.param == "postgresql" else None
    if databases is not None:
        config["store"] = {"url": next(databases)}
        env["TOLLWAY_STORE_URL"] = config["store"]["url"]
    with running_gateway(log_dir, config, env) as (url, _):
        yield url
    if databases is not None:
        next(databases, None)


def as_token(url: str, credential: str) -> Admin:
    return Admin(url, credential)


def team_ids(admin: Admin) -> dict[str, str]:
    return {team["name"]: team["id"] for team in admin("GET", "/admin/teams")["data"]}


def audit(admin: Admin, action: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = admin("GET", f"/admin/audit?action={action}")["data"]
    return data


def test_a_signed_in_member_makes_their_own_key(gateway: str, idp: str) -> None:
    admin = Admin(gateway)
    bob_token = token(idp, "bob-cli")
    bob = as_token(gateway, bob_token)
    made = bob("POST", "/admin/keys", {"name": "laptop"}, 201)  # was 404 "no user with id"
    me = bob("GET", "/admin/whoami")
    research = team_ids(admin)["research"]
    assert (me["kind"], me["user"], me["teams"]) == ("oidc", made["user_id"], [research])
    assert made["team_id"] == research and made["bound_teams"] is None
    user = admin("GET", f"/admin/users/{me['user']}")
    assert (user["email"], user["oidc_issuer"], user["oidc_subject"]) == (
        "bob@example.com", idp, "bob@example.com",
    )  # fmt: skip
    assert [(m["team_id"], m["source"]) for m in user["teams"]] == [(research, "oidc")]
    assert "signed in" in (ask(gateway, made["key"]).choices[0].message.content or "")
    assert ask(gateway, bob_token).choices
    # Made once, audited once, with the identity as the actor; later requests write nothing.
    for _ in range(3):
        assert bob("GET", "/admin/whoami")["user"] == me["user"]
    provisioned = audit(admin, "user.provision")
    assert [(e["target_id"], e["actor"], e["details"]["how"]) for e in provisioned] == [
        (me["user"], "bob@example.com", "created")
    ]
    assert [e["target_id"] for e in audit(admin, "team.provision")] == [research]
    assert len(audit(admin, "team.member.add")) == 1


def test_limits_and_budgets_set_before_anyone_signs_in_apply(gateway: str, idp: str) -> None:
    admin = Admin(gateway)
    # The admin prepares the team the IdP group names and the user, then limits them.
    research = admin("POST", "/admin/teams", {"name": "research"}, 201)
    bob = admin("POST", "/admin/users", {"email": "bob@example.com"}, 201)
    admin("PUT", "/admin/limits", {"scope": "team", "scope_id": research["id"], "rpm": 1})
    admin("PUT", "/admin/budgets", {"scope": "user", "scope_id": bob["id"], "period": "day",
                                    "limit_usd": 50})  # fmt: skip
    bob_token = token(idp, "bob-cli")
    me = as_token(gateway, bob_token)("GET", "/admin/whoami")
    assert (me["user"], me["teams"]) == (bob["id"], [research["id"]])  # linked, not made again
    assert ask(gateway, bob_token).choices
    with pytest.raises(openai.RateLimitError):  # the team's limit holds for its OIDC members
        ask(gateway, bob_token)
    spend = admin("GET", f"/admin/budgets?scope=user&scope_id={bob['id']}")["data"]
    assert spend[0]["spent_usd"] > 0  # charged to the user the admin made
    assert [e["details"]["how"] for e in audit(admin, "user.provision")] == ["linked"]
    # The team called after the group is taken for it (and keeps it when renamed).
    linked = [(e["target_id"], e["details"]["how"]) for e in audit(admin, "team.provision")]
    assert linked == [(research["id"], "linked")]
    assert admin("GET", f"/admin/teams/{research['id']}")["oidc_group"] == "research"
    emails = [user["email"] for user in admin("GET", "/admin/users")["data"]]
    assert emails.count("bob@example.com") == 1


def set_groups(idp: str, client_id: str, groups: str) -> None:
    answer = httpx.post(f"{idp}/_admin/groups", params={"client_id": client_id, "groups": groups})
    assert answer.is_success


def test_leaving_a_group_at_the_idp_takes_effect(gateway: str, idp: str) -> None:
    try:
        left_a_group(gateway, idp)
    finally:
        set_groups(idp, "carol-cli", "research,ml")


def left_a_group(gateway: str, idp: str) -> None:
    admin = Admin(gateway)
    carol = as_token(gateway, token(idp, "carol-cli"))
    me = carol("GET", "/admin/whoami")
    teams = team_ids(admin)
    assert me["teams"] == [teams["research"], teams["ml"]]
    ml_key = carol("POST", "/admin/keys", {"name": "ml", "team_id": teams["ml"]}, 201)
    assert admin("GET", f"/admin/users/{me['user']}")["email"] == "carol@example.com"
    assert ask(gateway, ml_key["key"]).choices

    set_groups(idp, "carol-cli", "research")
    after = as_token(gateway, token(idp, "carol-cli"))("GET", "/admin/whoami")
    assert (after["user"], after["teams"]) == (me["user"], [teams["research"]])
    members = admin("GET", f"/admin/teams/{teams['ml']}")["members"]
    assert me["user"] not in [m["user_id"] for m in members]
    with pytest.raises(openai.AuthenticationError) as caught:
        ask(gateway, ml_key["key"])
    assert caught.value.code == "key_blocked"
    assert "no longer names the key's team" in caught.value.message
    removed = audit(admin, "team.member.remove")
    assert [(e["target_id"], e["details"]["blocked_keys"]) for e in removed] == [
        (teams["ml"], [ml_key["id"]])
    ]
    # A membership an admin made is the admin's: a sign-in without that group leaves it.
    admin("POST", f"/admin/teams/{teams['ml']}/members", {"user_id": me["user"]}, 201)
    again = as_token(gateway, token(idp, "carol-cli"))("GET", "/admin/whoami")
    assert again["teams"] == [teams["research"]]  # the token's teams, not the store's
    members = admin("GET", f"/admin/teams/{teams['ml']}")["members"]
    assert [(m["user_id"], m["source"]) for m in members] == [(me["user"], None)]


def test_without_provisioning_a_sign_in_keeps_its_claim_values(
    idp: str, log_dir: Path, simulator_url: str
) -> None:
    config = _config(idp, simulator_url, provision=False)
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, _):
        bob = as_token(url, token(idp, "bob-cli"))
        me = bob("GET", "/admin/whoami")
        assert (me["user"], me["teams"]) == ("bob@example.com", ["research"])
        refused = bob("POST", "/admin/keys", {"name": "laptop"}, 403)
        assert refused["error"]["code"] == "not_provisioned"
        admin = Admin(url)
        assert admin("GET", "/admin/teams")["data"] == []
        assert audit(admin, "user.provision") == []


def test_two_replicas_signing_in_one_identity_at_once_make_one_user(
    idp: str, log_dir: Path, simulator_url: str
) -> None:
    databases = postgres_database()
    store = next(databases)
    config = {**_config(idp, simulator_url), "store": {"url": store}}
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": store}
    # Replicas on PostgreSQL may start together (they migrate under an advisory lock).
    with running_gateways(log_dir, [(config, env)] * 2) as [(first, _), (second, _)]:
        dana = token(idp, "dana-cli")

        def whoami(url: str) -> Any:
            return as_token(url, dana)("GET", "/admin/whoami")

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(whoami, [first, second] * 8))
        assert len({answer["user"] for answer in answers}) == 1
        assert len({tuple(answer["teams"]) for answer in answers}) == 1
        admin = Admin(first)
        users = [
            u for u in admin("GET", "/admin/users")["data"] if u["email"] == "dana@example.com"
        ]
        assert [u["id"] for u in users] == [answers[0]["user"]]
        assert list(team_ids(admin)) == ["research"]
        assert len(audit(admin, "user.provision")) == 1
        assert len(audit(admin, "team.provision")) == 1
        assert len(audit(admin, "team.member.add")) == 1
    next(databases, None)


def test_a_renamed_team_still_matches_its_group(gateway: str, idp: str) -> None:
    admin = Admin(gateway)
    bob = as_token(gateway, token(idp, "bob-cli"))
    me = bob("GET", "/admin/whoami")
    research = team_ids(admin)["research"]
    assert me["teams"] == [research]
    key = bob("POST", "/admin/keys", {"name": "laptop"}, 201)
    renamed = admin("PATCH", f"/admin/teams/{research}", {"name": "Research Lab"})
    assert (renamed["name"], renamed["oidc_group"]) == ("Research Lab", "research")
    # Any reload of the identities (another change, the reconcile, a restart) reads the rename.
    admin("POST", "/admin/users", {"email": "eve@example.com"}, 201)

    # The group still names that team: no new one, the membership and the key stay.
    again = as_token(gateway, token(idp, "bob-cli"))("GET", "/admin/whoami")
    assert (again["user"], again["teams"]) == (me["user"], [research])
    assert team_ids(admin) == {"Research Lab": research}
    assert ask(gateway, key["key"]).choices
    assert [e["target_id"] for e in audit(admin, "team.provision")] == [research]
    assert audit(admin, "team.member.remove") == []

    # A team an admin names after the group later is not the group's: it stays apart.
    other = admin("POST", "/admin/teams", {"name": "research"}, 201)
    third = as_token(gateway, token(idp, "bob-cli"))("GET", "/admin/whoami")
    assert third["teams"] == [research] and other["id"] != research


def test_an_admin_sets_the_group_a_team_stands_for(gateway: str, idp: str) -> None:
    admin = Admin(gateway)
    # Made for the group before anyone signs in, under a name of the admin's choosing.
    lab = admin("POST", "/admin/teams", {"name": "Research Lab", "oidc_issuer": idp,
                                         "oidc_group": "research"}, 201)  # fmt: skip
    assert (lab["oidc_issuer"], lab["oidc_group"]) == (idp, "research")
    made = audit(admin, "team.create")
    assert [(e["target_id"], e["details"]["oidc_group"]) for e in made] == [(lab["id"], "research")]
    bob = token(idp, "bob-cli")
    me = as_token(gateway, bob)("GET", "/admin/whoami")
    assert me["teams"] == [lab["id"]]  # no team "research" made for the group
    assert team_ids(admin) == {"Research Lab": lab["id"]}
    assert audit(admin, "team.provision") == []

    # One team a group: a second one is a 409 naming the team that has it.
    taken = admin("POST", "/admin/teams", {"name": "Other", "oidc_issuer": idp,
                                           "oidc_group": "research"}, 409)  # fmt: skip
    assert taken["error"]["code"] == "conflict" and "'Research Lab'" in taken["error"]["message"]
    other = admin("POST", "/admin/teams", {"name": "Other"}, 201)
    taken = admin("PATCH", f"/admin/teams/{other['id']}",
                  {"oidc_issuer": idp, "oidc_group": "research"}, 409)  # fmt: skip
    assert lab["id"] in taken["error"]["message"]
    # The issuer must be one the gateway trusts; the pair goes together.
    for body, param in [
        ({"oidc_issuer": "https://elsewhere.example", "oidc_group": "research"}, "oidc_issuer"),
        ({"oidc_group": "research"}, "oidc_issuer"),
        ({"oidc_issuer": idp}, "oidc_group"),
        ({"oidc_issuer": idp, "oidc_group": None}, "oidc_group"),
    ]:
        refused = admin("PATCH", f"/admin/teams/{other['id']}", body, 400)
        assert refused["error"]["param"] == param, refused
    refused = admin("POST", "/admin/teams", {"name": "x", "oidc_issuer": "nope", "oidc_group": "g"},
                    400)  # fmt: skip
    assert refused["error"]["param"] == "oidc_issuer"

    # The group moves: cleared on one team, set on the other; the next sign-in follows it.
    cleared = admin("PATCH", f"/admin/teams/{lab['id']}", {"oidc_issuer": None,
                                                            "oidc_group": None})  # fmt: skip
    assert (cleared["oidc_issuer"], cleared["oidc_group"]) == (None, None)
    moved = admin("PATCH", f"/admin/teams/{other['id']}",
                  {"oidc_issuer": idp, "oidc_group": "research"})  # fmt: skip
    assert moved["oidc_group"] == "research"
    again = as_token(gateway, token(idp, "bob-cli"))("GET", "/admin/whoami")
    assert (again["user"], again["teams"]) == (me["user"], [other["id"]])
    assert admin("GET", f"/admin/teams/{lab['id']}")["members"] == []
    updates = [(e["target_id"], e["details"]) for e in audit(admin, "team.update")]
    unset = {"oidc_group": None, "oidc_issuer": None}
    research = {"oidc_group": "research", "oidc_issuer": idp}
    fields = ["oidc_group", "oidc_issuer"]
    assert updates == [
        (other["id"], {"fields": fields, **research, "before": unset, "after": research}),
        (lab["id"], {"fields": fields, **unset, "before": research, "after": unset}),
    ]
