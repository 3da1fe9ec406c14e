"""``tollway teams create|update`` and the OIDC group a team stands for (``--oidc-issuer``,
``--oidc-group``, ``--clear-oidc-group``; docs/oidc.md), through the CLI against a real
gateway whose sign-ins come from a real identity provider (oidc-provider under node,
tests/integration/oidc).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_oidc_gateway import ask, token
from tests.integration.test_oidc_provider import AUDIENCE, node, running_idp
from tests.support import CLIENT_KEY, running_gateway, tollway_command

__all__ = ["node"]  # the fixture, imported so this module can use it

ADMIN = {"Authorization": f"Bearer {CLIENT_KEY}"}


@pytest.fixture(scope="module")
def idp(node: str, log_dir: Path) -> Iterator[str]:
    with running_idp(node, log_dir) as issuer:
        yield issuer


@pytest.fixture(scope="module")
def gateway(idp: str, log_dir: Path, simulator_url: str) -> Iterator[str]:
    config = {
        "auth": {"oidc": [{"issuer": idp, "audience": [AUDIENCE], "team_claim": "groups"}]},
        "models": [{"name": "chat", "deployments": [{
            "provider": "openai", "model": "sim-chat", "api_base": simulator_url + "/v1",
            "api_key": "env:TEST_UPSTREAM_KEY"}]}],
    }  # fmt: skip
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, _):
        yield url


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOLLWAY_URL": url, "TOLLWAY_ADMIN_KEY": CLIENT_KEY, "COLUMNS": "250"}
    return subprocess.run(
        tollway_command(*args), capture_output=True, text=True, timeout=60, env=env
    )


def _printed(url: str, *args: str) -> dict[str, Any]:
    done = _cli(url, *args, "--json")
    assert done.returncode == 0, done.stderr
    record: dict[str, Any] = json.loads(done.stdout)
    return record


def _teams_of(url: str, credential: str) -> list[str]:
    """The teams a sign-in is in, after a request (which provisions it)."""
    ask(url, credential)
    me = httpx.get(url + "/admin/whoami", headers={"Authorization": f"Bearer {credential}"})
    teams: list[str] = me.json()["teams"]
    return teams


def test_a_team_made_and_changed_by_the_cli_is_the_one_its_groups_sign_ins_join(
    gateway: str, idp: str
) -> None:
    # Made before anyone of the group signs in, under a name that is not the group's: only
    # the binding makes bob's sign-in (groups: research) join it, not a new "research".
    lab = _printed(
        gateway, "teams", "create", "Research Lab", "--oidc-issuer", idp, "--oidc-group", "research"
    )
    assert (lab["name"], lab["oidc_issuer"], lab["oidc_group"]) == ("Research Lab", idp, "research")
    bob = token(idp, "bob-cli")
    assert _teams_of(gateway, bob) == [lab["id"]]

    listed = _cli(gateway, "teams", "list")
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if lab["id"] in line]
    assert "Research Lab" in row and "research" in row and idp in row

    # Renamed, it keeps its group; cleared, and set on another team, the group moves there.
    renamed = _printed(gateway, "teams", "update", lab["id"], "--name", "Lab")
    assert (renamed["name"], renamed["oidc_group"]) == ("Lab", "research")
    cleared = _printed(gateway, "teams", "update", lab["id"], "--clear-oidc-group")
    assert (cleared["oidc_issuer"], cleared["oidc_group"]) == (None, None)
    platform = _printed(gateway, "teams", "create", "Platform")
    assert platform["oidc_group"] is None
    moved = _printed(
        gateway, "teams", "update", platform["id"], "--oidc-issuer", idp, "--oidc-group", "research"
    )
    assert (moved["oidc_issuer"], moved["oidc_group"]) == (idp, "research")
    assert _teams_of(gateway, token(idp, "bob-cli")) == [platform["id"]]

    trail = httpx.get(gateway + "/admin/audit", params={"action": "team.*"}, headers=ADMIN)
    details = [(e["action"], e["target_id"], e["details"].get("oidc_group", "-"))
               for e in reversed(trail.json()["data"])
               if e["action"] in ("team.create", "team.update")
               and e["target_id"] in (lab["id"], platform["id"])]  # fmt: skip
    assert details == [
        ("team.create", lab["id"], "research"),
        ("team.update", lab["id"], "-"),
        ("team.update", lab["id"], None),
        ("team.create", platform["id"], "-"),
        ("team.update", platform["id"], "research"),
    ]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("--oidc-group", "g"), 2, "--oidc-group needs --oidc-issuer"),
        (("--oidc-issuer", "ISSUER"), 2, "--oidc-issuer needs --oidc-group"),
        # The gateway's rules, in its words: an issuer it does not accept tokens of.
        (("--oidc-issuer", "https://elsewhere.example", "--oidc-group", "g"), 1,
         "400: 'oidc_issuer': 'https://elsewhere.example' is not an issuer of auth.oidc[]"),
    ],
)  # fmt: skip
def test_teams_create_refuses_half_a_group_or_an_unknown_issuer(
    gateway: str, idp: str, args: tuple[str, ...], code: int, says: str
) -> None:
    args = tuple(idp if arg == "ISSUER" else arg for arg in args)
    done = _cli(gateway, "teams", "create", "refused", *args)
    assert done.returncode == code
    assert says in " ".join(done.stderr.split()), done.stderr
    names = {
        team["name"] for team in httpx.get(gateway + "/admin/teams", headers=ADMIN).json()["data"]
    }
    assert "refused" not in names


def test_a_group_stands_for_one_team_and_an_update_says_what_it_changes(
    gateway: str, idp: str
) -> None:
    ml = _printed(gateway, "teams", "create", "ML", "--oidc-issuer", idp, "--oidc-group", "ml")
    again = _cli(gateway, "teams", "create", "ML 2", "--oidc-issuer", idp, "--oidc-group", "ml")
    assert again.returncode == 1 and again.stderr.startswith("409: "), again.stderr
    assert ml["name"] in again.stderr  # the team that has it

    nothing = _cli(gateway, "teams", "update", ml["id"])
    assert nothing.returncode == 2 and "nothing to change" in nothing.stderr
    both = _cli(gateway, "teams", "update", ml["id"], "--clear-oidc-group",
                "--oidc-issuer", idp, "--oidc-group", "ml2")  # fmt: skip
    assert both.returncode == 2 and "not both" in both.stderr
    unknown = _cli(gateway, "teams", "update", "team_nope", "--name", "x")
    assert unknown.returncode == 1 and unknown.stderr.startswith("404: ")
    updated = _printed(gateway, "teams", "update", ml["id"], "--organization", "acme")
    assert (updated["name"], updated["organization"], updated["oidc_group"]) == ("ML", "acme", "ml")
