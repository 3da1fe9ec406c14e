"""How far a non-admin reaches through the admin API: never into a team it has no rights in,
whatever key it holds, through any route or filter.

A gateway process that requires keys, driven through the admin API over HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_identity import Admin, chat
from tests.support import Process, running_gateway


@pytest.fixture(scope="module")
def gateway(log_dir: Path, simulator_url: str) -> Iterator[tuple[str, Process]]:
    config: dict[str, Any] = {
        "telemetry": {"request_log": {"flush_interval": "100ms"}},
        "models": [
            {"name": "open-model", "deployments": [{"provider": "openai", "model": "sim-chat",
             "api_base": simulator_url + "/v1", "api_key": "env:TEST_UPSTREAM_KEY"}]},
        ],
    }  # fmt: skip
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as running:
        yield running


def _named(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def key_for(user: dict[str, Any], team: dict[str, Any]) -> dict[str, Any]:
    return {"name": "k", "user_id": user["id"], "team_id": team["id"]}


def test_a_team_admin_gains_nothing_in_another_team_through_the_keys_of_a_member(
    gateway: tuple[str, Process],
) -> None:
    url, _ = gateway
    admin = Admin(url)
    ours = admin("POST", "/admin/teams", {"name": _named("ours")}, 201)
    theirs = admin("POST", "/admin/teams", {"name": _named("theirs")}, 201)
    lead = admin("POST", "/admin/users", {"email": f"{_named('lead')}@example.com"}, 201)
    carol = admin("POST", "/admin/users", {"email": f"{_named('carol')}@example.com"}, 201)
    admin("POST", f"/admin/teams/{ours['id']}/members",
          {"user_id": lead["id"], "role": "team_admin"}, 201)  # fmt: skip
    # Carol administers their team and is a plain member of ours.
    admin("POST", f"/admin/teams/{theirs['id']}/members",
          {"user_id": carol["id"], "role": "team_admin"}, 201)  # fmt: skip
    admin("POST", f"/admin/teams/{ours['id']}/members", {"user_id": carol["id"]}, 201)
    their_key = admin("POST", "/admin/keys", {"name": "theirs", "team_id": theirs["id"]}, 201)
    assert chat(url, their_key["key"])  # a row of their team in the request log

    as_lead = Admin(url, admin("POST", "/admin/keys", key_for(lead, ours), 201)["key"])
    # A key acts with its owner's rights in each of the owner's teams, and whoever makes or
    # rotates one holds its secret: our lead must not make (or rotate) a key for Carol.
    refusal = as_lead("POST", "/admin/keys", key_for(carol, ours), 403)
    assert refusal["error"]["code"] == "insufficient_role"
    carols = admin("POST", "/admin/keys", key_for(carol, ours), 201)
    as_lead("POST", f"/admin/keys/{carols['id']}/rotate", {}, 403)
    as_lead("POST", f"/admin/keys/{carols['id']}/block", expect=200)  # managing it gives nothing
    # Had it been made, that key would have reached into their team: Carol's own key does.
    as_carol = Admin(url, carols["key"])
    admin("POST", f"/admin/keys/{carols['id']}/unblock")
    assert as_carol("GET", f"/admin/keys?team_id={theirs['id']}")["data"]
    # A member of our team alone: its keys our lead still makes and rotates.
    dave = admin("POST", "/admin/users", {"email": f"{_named('dave')}@example.com"}, 201)
    admin("POST", f"/admin/teams/{ours['id']}/members", {"user_id": dave["id"]}, 201)
    daves = as_lead("POST", "/admin/keys", key_for(dave, ours), 201)
    assert as_lead("POST", f"/admin/keys/{daves['id']}/rotate", {}, 201)["key"]
    assert chat(url, their_key["key"])
