"""A key a team admin made for a member acts in the teams that admin administered for the
member then, not in teams the member joins later (docs/identity.md, "Roles").

A gateway process on SQLite and on PostgreSQL, driven through the admin API over HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_identity import Admin, chat
from tests.support import postgres_database, running_gateway


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def gateway(request: pytest.FixtureRequest, log_dir: Path, simulator_url: str) -> Iterator[str]:
    config: dict[str, Any] = {
        "models": [
            {"name": "open-model", "deployments": [{"provider": "openai", "model": "sim-chat",
             "api_base": simulator_url + "/v1", "api_key": "env:TEST_UPSTREAM_KEY"}]},
        ],
    }  # fmt: skip
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    databases = postgres_database() if request.param == "postgresql" else None
    if databases is not None:
        store = next(databases)
        config["store"] = {"url": store}
        env["TOLLWAY_STORE_URL"] = store
    with running_gateway(log_dir, config, env) as (url, _):
        yield url
    if databases is not None:
        next(databases, None)


def _named(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _member(admin: Admin, team: dict[str, Any], user: dict[str, Any], role: str = "member") -> None:
    admin("POST", f"/admin/teams/{team['id']}/members", {"user_id": user["id"], "role": role}, 201)


def test_a_key_a_team_admin_made_does_not_act_in_a_team_its_owner_joins_later(
    gateway: str,
) -> None:
    admin = Admin(gateway)
    ours = admin("POST", "/admin/teams", {"name": _named("ours")}, 201)
    later = admin("POST", "/admin/teams", {"name": _named("later")}, 201)
    lead = admin("POST", "/admin/users", {"email": f"{_named('lead')}@example.com"}, 201)
    mia = admin("POST", "/admin/users", {"email": f"{_named('mia')}@example.com"}, 201)
    _member(admin, ours, lead, "team_admin")
    _member(admin, ours, mia)
    as_lead = Admin(gateway, admin("POST", "/admin/keys", {"name": "lead", "team_id": ours["id"],
                                   "user_id": lead["id"]}, 201)["key"])  # fmt: skip
    made = as_lead(
        "POST", "/admin/keys", {"name": "m", "user_id": mia["id"], "team_id": ours["id"]}, 201
    )
    assert made["bound_teams"] == [ours["id"]]
    own = Admin(gateway, mia_key := admin("POST", "/admin/keys", {"name": "own",
                "user_id": mia["id"], "team_id": ours["id"]}, 201)["key"])  # fmt: skip
    assert own("GET", "/admin/whoami")["teams"] == [ours["id"]]

    # Mia joins a team the lead does not administer, as its admin.
    _member(admin, later, mia, "team_admin")
    by_lead = Admin(gateway, made["key"])
    assert by_lead("GET", "/admin/whoami")["teams"] == [ours["id"]]
    assert by_lead("GET", f"/admin/teams/{later['id']}", expect=403)["error"]["code"] == (
        "outside_team"
    )
    refused = by_lead("POST", "/admin/keys", {"name": "x", "team_id": later["id"]}, 403)
    assert refused["error"]["code"] == "outside_team"
    assert chat(gateway, made["key"])  # in its own team it works as before
    # Her own key, and one an admin makes, act in every team of hers as before.
    assert own("GET", "/admin/whoami")["teams"] == [ours["id"], later["id"]]
    assert own("GET", f"/admin/teams/{later['id']}")["id"] == later["id"]
    assert chat(gateway, mia_key)

    # Rotating keeps the binding; promoting the owner to admin does not make the key one.
    rotated = by_lead("POST", f"/admin/keys/{made['id']}/rotate", {}, 201)
    assert rotated["bound_teams"] == [ours["id"]]
    admin("PATCH", f"/admin/users/{mia['id']}", {"role": "admin"})
    me = Admin(gateway, rotated["key"])("GET", "/admin/whoami")
    assert (me["role"], me["teams"]) == ("member", [ours["id"]])
    assert own("GET", "/admin/whoami")["role"] == "admin"


def test_a_key_a_team_admin_rotates_acts_only_in_the_teams_it_administers(gateway: str) -> None:
    admin = Admin(gateway)
    ours = admin("POST", "/admin/teams", {"name": _named("ours")}, 201)
    later = admin("POST", "/admin/teams", {"name": _named("later")}, 201)
    lead = admin("POST", "/admin/users", {"email": f"{_named('lead')}@example.com"}, 201)
    noa = admin("POST", "/admin/users", {"email": f"{_named('noa')}@example.com"}, 201)
    _member(admin, ours, lead, "team_admin")
    _member(admin, ours, noa)
    as_lead = Admin(gateway, admin("POST", "/admin/keys", {"name": "lead", "team_id": ours["id"],
                                   "user_id": lead["id"]}, 201)["key"])  # fmt: skip
    # Noa's own key: unbound. The lead rotates it and holds the new secret.
    key_id = admin("POST", "/admin/keys", {"name": "own", "user_id": noa["id"],
                   "team_id": ours["id"]}, 201)["id"]  # fmt: skip
    rotated = as_lead("POST", f"/admin/keys/{key_id}/rotate", {}, 201)
    assert rotated["bound_teams"] == [ours["id"]]
    _member(admin, later, noa)
    assert Admin(gateway, rotated["key"])("GET", "/admin/whoami")["teams"] == [ours["id"]]
    assert chat(gateway, rotated["key"])
