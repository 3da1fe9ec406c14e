"""The audit trail of admin actions through a real gateway: what an auditor reads back.

Keys made and revoked, budgets and rate limits set, changed and removed: each leaves an
event naming who did it, from which request, to what, and what it set and replaced. (Config
reloads: tests/integration/test_routing_reload.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import UPSTREAM_KEY, gateway_config
from tests.support import CLIENT_KEY, running_gateway, tollway_command

ADMIN = {"Authorization": f"Bearer {CLIENT_KEY}"}


@pytest.fixture(scope="module")
def gateway(log_dir: Path, simulator_url: str) -> Iterator[str]:
    with running_gateway(log_dir, gateway_config(simulator_url), {
        "TEST_UPSTREAM_KEY": UPSTREAM_KEY
    }) as (url, _):  # fmt: skip
        yield url


def call(url: str, method: str, path: str, body: Any = None) -> httpx.Response:
    answer = httpx.request(method, url + path, json=body, headers=ADMIN, timeout=30)
    assert answer.status_code < 300, answer.text
    return answer


def events(url: str, **params: str) -> list[dict[str, Any]]:
    """Audit events, oldest first."""
    page = httpx.get(url + "/admin/audit", params=params, headers=ADMIN, timeout=30).json()
    return list(reversed(page["data"]))


def test_keys_made_and_revoked_are_on_record_with_who_and_which_request(gateway: str) -> None:
    name = f"audit-{uuid.uuid4().hex[:6]}"
    made = call(gateway, "POST", "/admin/keys", {"name": name, "allowed_models": ["test-chat"],
                                                 "tags": {"service": "audit"}})  # fmt: skip
    key_id, secret = made.json()["id"], made.json()["key"]
    revoked = call(gateway, "POST", f"/admin/keys/{key_id}/revoke")
    trail = events(gateway, target_id=key_id)
    assert [(e["action"], e["actor"]) for e in trail] == [
        ("key.create", "bootstrap-admin"), ("key.revoke", "bootstrap-admin"),
    ]  # fmt: skip
    assert [e["request_id"] for e in trail] == [
        made.headers["x-request-id"], revoked.headers["x-request-id"],
    ]  # fmt: skip
    # key.create held only the prefix: not what the key may do, nor whose it is.
    assert trail[0]["details"] == {
        "prefix": made.json()["prefix"], "name": name, "team_id": None, "user_id": None,
        "allowed_models": ["test-chat"], "expires_at": None, "tags": {"service": "audit"},
        "bound_teams": None,
    }  # fmt: skip
    assert secret not in str(trail)  # never the key itself


def test_budget_and_limit_changes_say_what_they_set_and_what_they_replaced(
    gateway: str,
) -> None:
    # A budget change recorded only the new limit and policy: not its soft limit or
    # downgrades, and not what it replaced, so an auditor could not tell a raise from a cut.
    made = call(gateway, "POST", "/admin/teams", {"name": f"team-{uuid.uuid4().hex[:8]}"})
    team = made.json()["id"]
    budget = {"scope": "team", "scope_id": team, "period": "month", "limit_usd": 50}
    call(gateway, "PUT", "/admin/budgets", budget)
    call(gateway, "PUT", "/admin/budgets", {**budget, "limit_usd": 500, "policy": "shrink",
         "soft_limit": 0.8, "downgrade": {"test-chat": "test-mistral"}})  # fmt: skip
    call(gateway, "DELETE", f"/admin/budgets/team/{team}/month")
    trail = events(gateway, target_id=f"team:{team}:month")
    first = {"limit_usd": 50.0, "policy": "reject", "soft_limit": None, "downgrade": {}}
    second = {"limit_usd": 500.0, "policy": "shrink", "soft_limit": 0.8,
              "downgrade": {"test-chat": "test-mistral"}}  # fmt: skip
    assert [(e["action"], e["details"]) for e in trail] == [
        ("budget.put", {**first, "previous": None}),
        ("budget.put", {**second, "previous": first}),
        ("budget.delete", {"previous": second}),
    ]
    limit = {"scope": "team", "scope_id": team, "rpm": 10}
    call(gateway, "PUT", "/admin/limits", limit)
    call(gateway, "PUT", "/admin/limits", {**limit, "rpm": None, "tpm": 1000})
    call(gateway, "DELETE", f"/admin/limits/team/{team}")
    trail = events(gateway, target_id=f"team:{team}")
    was = {"tpm": None, "rpm": 10, "max_concurrent": None}
    now = {"tpm": 1000, "rpm": None, "max_concurrent": None}
    assert [(e["action"], e["details"]) for e in trail] == [
        ("limit.put", {**was, "previous": None}),
        ("limit.put", {**now, "previous": was}),
        ("limit.delete", {"previous": now}),
    ]


def test_an_auditor_narrows_the_trail_by_address_and_time(gateway: str) -> None:
    before = call(gateway, "POST", "/admin/keys", {"name": f"audit-{uuid.uuid4().hex[:6]}"})
    made = call(gateway, "POST", "/admin/keys", {"name": f"audit-{uuid.uuid4().hex[:6]}"})
    key_id = made.json()["id"]
    (event,) = events(gateway, target_id=key_id)
    (earlier,) = events(gateway, target_id=before.json()["id"])
    assert event["source_ip"] == "127.0.0.1"
    # The address in any of its spellings (a dual-stack listener gives ::ffff:127.0.0.1).
    for spelling in ("127.0.0.1", "::ffff:127.0.0.1", "::ffff:7f00:1"):
        assert key_id in {e["target_id"] for e in events(gateway, source_ip=spelling)}
    assert events(gateway, source_ip="192.0.2.7") == []
    at = event["at"]
    assert [e["target_id"] for e in events(gateway, since=at, action="key.create")][:1] == [key_id]
    assert key_id not in {e["target_id"] for e in events(gateway, until=at)}
    assert earlier["target_id"] in {e["target_id"] for e in events(gateway, until=at)}
    listed = subprocess.run(
        tollway_command("audit", "list", "--source-ip", "::ffff:127.0.0.1", "--since", at,
                        "--action", "key.create", "--json"),
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "TOLLWAY_URL": gateway, "TOLLWAY_ADMIN_KEY": CLIENT_KEY},
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["data"][-1]["target_id"] == key_id
    for params, name in (({"source_ip": "10.0.0.0/8"}, "source_ip"), ({"since": "soon"}, "since")):
        refused = httpx.get(gateway + "/admin/audit", params=params, headers=ADMIN, timeout=30)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == name


def test_a_deleted_team_takes_its_budgets_and_limits_with_it(gateway: str) -> None:
    # Deleting a team revoked its keys but left its budgets and rate limits listed, applied
    # to nothing, and no longer settable (a budget on a team that does not exist is a 404).
    made = call(gateway, "POST", "/admin/teams", {"name": f"gone-{uuid.uuid4().hex[:6]}"})
    team_id = made.json()["id"]
    budget = {"scope": "team", "scope_id": team_id, "period": "month", "limit_usd": 5}
    call(gateway, "PUT", "/admin/budgets", budget)
    call(gateway, "PUT", "/admin/limits", {"scope": "team", "scope_id": team_id, "rpm": 9})
    call(gateway, "DELETE", f"/admin/teams/{team_id}")
    budgets = call(gateway, "GET", f"/admin/budgets?scope=team&scope_id={team_id}")
    assert budgets.json()["data"] == []
    limits = call(gateway, "GET", "/admin/limits").json()["data"]
    assert [r for r in limits if r["scope_id"] == team_id] == []
    (deleted,) = events(gateway, action="team.delete", target_id=team_id)
    assert deleted["details"]["removed"] == [
        f"budget:team:{team_id}:month",
        f"limit:team:{team_id}",
    ]


def test_deleting_a_team_names_the_keys_it_revoked(gateway: str) -> None:
    # Deleting a team revokes its keys, but its audit event named only the budgets and limits
    # it removed: an auditor asking when and why a key stopped working found no event naming
    # it (removing a member names the keys it blocks).
    team = call(gateway, "POST", "/admin/teams", {"name": f"gone-{uuid.uuid4().hex[:6]}"})
    team_id = team.json()["id"]
    kept = call(gateway, "POST", "/admin/keys", {"name": "app", "team_id": team_id}).json()
    rotated = call(gateway, "POST", "/admin/keys", {"name": "job", "team_id": team_id}).json()
    successor = call(
        gateway, "POST", f"/admin/keys/{rotated['id']}/rotate", {"grace_period": "1h"}
    ).json()
    outside = call(gateway, "POST", "/admin/keys", {"name": "other"}).json()
    call(gateway, "DELETE", f"/admin/teams/{team_id}")
    for key in (kept, successor):
        refused = httpx.post(
            gateway + "/v1/chat/completions",
            json={"model": "test-chat", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {key['key']}"},
            timeout=30,
        )
        assert refused.status_code == 401, refused.text
    (deleted,) = events(gateway, action="team.delete", target_id=team_id)
    details = deleted["details"]
    assert sorted(details["revoked_keys"]) == sorted([kept["id"], successor["id"]])
    assert details["ended_grace"] == [rotated["id"]]  # its old secret worked for an hour more
    assert outside["id"] not in str(details)
    assert kept["key"] not in str(deleted) and successor["key"] not in str(deleted)


def test_key_user_and_team_changes_say_what_they_were_and_what_they_became(
    gateway: str,
) -> None:
    # key.update, user.update and team.update named only the fields changed: an auditor
    # could not tell a user made admin from one made viewer, or what models a key lost.
    key = call(gateway, "POST", "/admin/keys", {"name": "before", "allowed_models": ["a"]})
    key_id, secret = key.json()["id"], key.json()["key"]
    change = {"name": "after", "allowed_models": ["a", "b"], "expires_at": "2099-01-02T03:04:05Z"}
    call(gateway, "PATCH", f"/admin/keys/{key_id}", change)
    (updated,) = events(gateway, action="key.update", target_id=key_id)
    assert updated["details"] == {
        "fields": ["allowed_models", "expires_at", "name"],
        "before": {"allowed_models": ["a"], "expires_at": None, "name": "before"},
        "after": {"allowed_models": ["a", "b"], "expires_at": "2099-01-02T03:04:05+00:00",
                  "name": "after"},
    }  # fmt: skip
    assert secret not in str(updated)
    user = call(gateway, "POST", "/admin/users", {"email": f"{uuid.uuid4().hex[:6]}@x.test",
                                                  "role": "viewer"})  # fmt: skip
    user_id = user.json()["id"]
    call(gateway, "PATCH", f"/admin/users/{user_id}", {"role": "admin"})
    (promoted,) = events(gateway, action="user.update", target_id=user_id)
    assert promoted["details"] == {
        "fields": ["role"], "before": {"role": "viewer"}, "after": {"role": "admin"},
    }  # fmt: skip
    team = call(gateway, "POST", "/admin/teams", {"name": "old-name"}).json()["id"]
    call(gateway, "PATCH", f"/admin/teams/{team}", {"name": "new-name"})
    (renamed,) = events(gateway, action="team.update", target_id=team)
    assert renamed["details"] == {
        "fields": ["name"], "before": {"name": "old-name"}, "after": {"name": "new-name"},
    }  # fmt: skip


def test_an_empty_audit_filter_is_a_400_naming_it(gateway: str) -> None:
    # /admin/audit?actor= filtered on actor "" and answered an empty trail, which reads as
    # "nobody did anything"; /admin/logs and /admin/reports/usage refuse an empty filter.
    for name in ("actor", "action", "target_type", "target_id"):
        for empty in ("", " "):
            refused = httpx.get(
                gateway + "/admin/audit", params={name: empty}, headers=ADMIN, timeout=30
            )
            assert refused.status_code == 400, (name, refused.text)
            assert refused.json()["error"]["param"] == name
            assert f"'{name}' is empty" in refused.json()["error"]["message"]


def test_a_members_role_change_says_the_role_it_replaced(gateway: str) -> None:
    # Adding a member again with another role changes their role, but team.member.add held
    # only the new one: a viewer made team admin read like a team admin added.
    team = call(gateway, "POST", "/admin/teams", {"name": f"roles-{uuid.uuid4().hex[:6]}"})
    team_id = team.json()["id"]
    user = call(gateway, "POST", "/admin/users", {"email": f"{uuid.uuid4().hex[:6]}@x.test"})
    user_id = user.json()["id"]
    for role in ("viewer", "team_admin"):
        call(gateway, "POST", f"/admin/teams/{team_id}/members",
             {"user_id": user_id, "role": role})  # fmt: skip
    trail = events(gateway, action="team.member.add", target_id=team_id)
    assert [e["details"] for e in trail] == [
        {"user_id": user_id, "role": "viewer", "previous_role": None},
        {"user_id": user_id, "role": "team_admin", "previous_role": "viewer"},
    ]


def test_the_cli_pages_the_trail_and_filters_it_as_the_api_does(gateway: str) -> None:
    # `tollway audit list` had no --cursor (nothing past its first page of at most 1000
    # events was reachable), no --actor, --target-type or --target-id, and dropped an empty
    # filter (--since "" listed everything), where `tollway logs list` refuses it.
    made = [call(gateway, "POST", "/admin/keys", {"name": f"page-{i}"}).json() for i in range(3)]
    env = {**os.environ, "TOLLWAY_URL": gateway, "TOLLWAY_ADMIN_KEY": CLIENT_KEY}

    def audit_list(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            tollway_command("audit", "list", *args), env=env, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip

    seen: list[str] = []
    cursor: list[str] = []
    for _ in range(3):
        listed = audit_list("--action", "key.create", "--actor", "bootstrap-admin",
                            "--target-type", "key", "--limit", "1", "--json", *cursor)  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        page = json.loads(listed.stdout)
        seen += [e["target_id"] for e in page["data"]]
        cursor = ["--cursor", page["next_cursor"]]
    assert seen == [key["id"] for key in reversed(made)]  # newest first, no gap, no repeat
    table = audit_list("--action", "key.create", "--limit", "1")
    assert "more: --cursor " in table.stdout
    one = json.loads(audit_list("--target-id", made[0]["id"], "--json").stdout)["data"]
    assert [e["action"] for e in one] == ["key.create"]
    empty = audit_list("--since", "")
    assert empty.returncode == 1
    assert "'since' is empty" in " ".join(empty.stderr.split())
