"""Virtual keys, teams, users, roles, the vault and the audit trail, end to end.

A gateway process that requires keys, on SQLite and on PostgreSQL, driven through the admin
API (httpx) and the real ``openai`` SDK.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support import (
    CLIENT_KEY,
    Process,
    postgres_database,
    running_gateway,
    tollway_command,
)

ADMIN = {"Authorization": f"Bearer {CLIENT_KEY}"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def locked(
    request: pytest.FixtureRequest, log_dir: Path, simulator_url: str
) -> Iterator[tuple[str, Process]]:
    """A gateway that requires keys, with one model served through a vault credential."""
    config: dict[str, Any] = {
        "upstream": {"forward_headers": ["x-sim-*"]},
        "models": [
            {"name": "open-model", "deployments": [{"provider": "openai", "model": "sim-chat",
             "api_base": simulator_url + "/v1", "api_key": "env:TEST_UPSTREAM_KEY"}]},
            {"name": "other-model", "deployments": [{"provider": "openai", "model": "sim-chat",
             "api_base": simulator_url + "/v1", "api_key": "env:TEST_UPSTREAM_KEY"}]},
            {"name": "vaulted-model", "deployments": [{"provider": "openai", "model": "sim-chat",
             "api_base": simulator_url + "/v1", "api_key": "vault:sim-upstream"}]},
        ],
    }  # fmt: skip
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_VAULT_KEY": VAULT_KEY}
    if request.param == "postgresql":
        databases = postgres_database()
        url = next(databases)
        config["store"] = {"url": url}
        env["TOLLWAY_STORE_URL"] = url
        with running_gateway(log_dir, config, env) as running:
            yield running
        next(databases, None)
    else:
        with running_gateway(log_dir, config, env) as running:
            yield running


VAULT_KEY = "cMQ5ntLHFUx7ArDfh11W-S3pdvakc5TaHIM9p3pNBDg="  # a test-only Fernet key


class Admin:
    """The admin API as a test calls it."""

    def __init__(self, url: str, key: str = CLIENT_KEY) -> None:
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def __call__(
        self, method: str, path: str, body: dict[str, Any] | None = None, expect: int = 200
    ) -> Any:
        response = self.client.request(method, path, json=body)
        assert response.status_code == expect, response.text
        return response.json() if response.content else None


def chat(url: str, key: str, model: str = "open-model") -> str:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "who am i"}]
    )
    return reply.choices[0].message.content or ""


def refused(url: str, key: str | None, model: str = "open-model") -> openai.APIStatusError:
    client = openai.OpenAI(
        base_url=url + "/v1",
        api_key=key or "unused",
        max_retries=0,
        default_headers={} if key else {"Authorization": ""},
    )
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    return caught.value


def test_requests_need_a_valid_key(locked: tuple[str, Process]) -> None:
    url = locked[0]
    missing = httpx.post(
        url + "/v1/chat/completions",
        json={"model": "open-model", "messages": [{"role": "user", "content": "x"}]},
    )
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    unknown = refused(url, "tw-not-a-real-key-0000000000000000000000000000")
    assert unknown.status_code == 401 and "not known" in unknown.message
    anthropic_shape = httpx.post(url + "/v1/messages", headers={"x-api-key": "bogus"}, json={})
    assert anthropic_shape.status_code == 401
    assert anthropic_shape.json()["error"]["type"] == "authentication_error"
    # Every route, the Responses API's of a stored response too (a 404 to anyone before).
    for method in ("GET", "DELETE"):
        stored = httpx.request(method, url + "/v1/responses/resp_123")
        assert stored.status_code == 401 and stored.json()["error"]["code"] == "missing_api_key"
    assert _stored_response_refusal(url, "tw-not-a-real-key-0000000000000000000") == (
        401,
        "invalid_api_key",
    )
    known = httpx.get(
        url + "/v1/responses/resp_123", headers={"Authorization": f"Bearer {CLIENT_KEY}"}
    )
    assert known.status_code == 404 and known.json()["error"]["code"] == "response_not_stored"


def test_a_key_that_is_not_utf8_is_an_unknown_key(locked: tuple[str, Process]) -> None:
    url, process = locked
    body = {"model": "open-model", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    for headers, method, path, shape in [
        (
            {"Authorization": b"Bearer tw-\xff\xfe-not-utf8"},
            "POST",
            "/v1/chat/completions",
            "openai",
        ),
        ({"x-api-key": b"tw-\xff-not-utf8"}, "POST", "/v1/messages", "anthropic"),
        ({"Authorization": b"Bearer tw-\xff"}, "GET", "/v1/models", "openai"),
        ({"Authorization": b"Bearer tw-\xff"}, "GET", "/admin/whoami", "openai"),
    ]:
        answer = httpx.request(method, url + path, headers=headers, json=body)
        assert answer.status_code == 401, answer.text
        error = answer.json()["error"]
        if shape == "anthropic":
            assert error["type"] == "authentication_error"
        else:
            assert error["code"] == "invalid_api_key"
    assert "Traceback" not in process.output()


def test_key_lifecycle(locked: tuple[str, Process]) -> None:
    url, _ = locked
    admin = Admin(url)
    team = admin("POST", "/admin/teams", {"name": f"ml-{uuid.uuid4().hex[:6]}"}, 201)
    user = admin("POST", "/admin/users", {"email": f"{uuid.uuid4().hex[:6]}@example.com"}, 201)
    admin("POST", f"/admin/teams/{team['id']}/members", {"user_id": user["id"]}, 201)
    created = admin(
        "POST",
        "/admin/keys",
        {
            "name": "classifier",
            "user_id": user["id"],
            "team_id": team["id"],
            "allowed_models": ["open-model"],
            "tags": {"service": "classification-job"},
        },
        201,
    )
    key = created["key"]
    assert key.startswith("tw-") and created["prefix"] == key[:12]
    assert "key_hash" not in created

    assert "who am i" in chat(url, key)
    denied = refused(url, key, "other-model")
    assert denied.status_code == 403 and "other-model" in denied.message
    listed = admin("GET", f"/admin/keys?team_id={team['id']}")["data"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert all("key" not in k and "key_hash" not in k for k in listed)

    admin("POST", f"/admin/keys/{created['id']}/block")
    assert "blocked" in refused(url, key).message
    admin("POST", f"/admin/keys/{created['id']}/unblock")
    assert chat(url, key)

    rotated = admin("POST", f"/admin/keys/{created['id']}/rotate", {"grace_period": "60s"}, 201)
    assert chat(url, rotated["key"]) and chat(url, key)  # both work during the grace period
    again = admin("POST", f"/admin/keys/{rotated['id']}/rotate", {}, 201)
    assert "revoked" in refused(url, rotated["key"]).message  # no grace: gone at once
    admin("POST", f"/admin/keys/{again['id']}/revoke")
    assert "revoked" in refused(url, again["key"]).message

    short = admin("POST", "/admin/keys", {"name": "brief", "expires_in": "1s"}, 201)
    time.sleep(1.2)
    assert "expired" in refused(url, short["key"]).message


def test_a_key_counts_tokens_only_on_the_models_it_may_use(locked: tuple[str, Process]) -> None:
    url, _ = locked
    key = Admin(url)("POST", "/admin/keys", {"name": "n", "allowed_models": ["open-model"]}, 201)
    claude = anthropic.Anthropic(base_url=url, api_key=key["key"], max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "how long is this"}]
    assert claude.messages.count_tokens(model="open-model", messages=messages).input_tokens > 0
    with pytest.raises(anthropic.PermissionDeniedError) as sent:
        claude.messages.create(model="other-model", max_tokens=5, messages=messages)
    with pytest.raises(anthropic.PermissionDeniedError) as counted:
        claude.messages.count_tokens(model="other-model", messages=messages)
    refusal = counted.value.body
    assert isinstance(refusal, dict) and refusal["error"]["type"] == "permission_error"
    assert refusal["error"] == sent.value.body["error"]  # type: ignore[index]


def test_blocking_a_user_stops_their_keys(locked: tuple[str, Process]) -> None:
    url, _ = locked
    admin = Admin(url)
    user = admin(
        "POST",
        "/admin/users",
        {"name": "leaver", "email": f"leaver-{uuid.uuid4().hex[:6]}@example.com"},
        201,
    )
    key = admin("POST", "/admin/keys", {"name": "theirs", "user_id": user["id"]}, 201)["key"]
    assert chat(url, key)
    admin("PATCH", f"/admin/users/{user['id']}", {"blocked": True})
    assert refused(url, key).status_code == 401


def test_roles_are_enforced(locked: tuple[str, Process]) -> None:
    url, _ = locked
    admin = Admin(url)
    ours = admin("POST", "/admin/teams", {"name": f"ours-{uuid.uuid4().hex[:6]}"}, 201)
    theirs = admin("POST", "/admin/teams", {"name": f"theirs-{uuid.uuid4().hex[:6]}"}, 201)
    lead = admin(
        "POST",
        "/admin/users",
        {"name": "lead", "email": f"lead-{uuid.uuid4().hex[:6]}@example.com"},
        201,
    )
    admin(
        "POST",
        f"/admin/teams/{ours['id']}/members",
        {"user_id": lead["id"], "role": "team_admin"},
        201,
    )
    lead_key = admin(
        "POST",
        "/admin/keys",
        {
            "name": "lead",
            "user_id": lead["id"],
            "team_id": ours["id"],
        },
        201,
    )["key"]
    as_lead = Admin(url, lead_key)
    assert as_lead("GET", "/admin/whoami")["role"] == "team_admin"
    made = as_lead("POST", "/admin/keys", {"name": "svc", "team_id": ours["id"]}, 201)
    assert chat(url, made["key"])
    as_lead("POST", "/admin/keys", {"name": "x", "team_id": theirs["id"]}, 403)
    # Team-admin of one team, plain member of another: no admin rights in the second.
    admin(
        "POST",
        f"/admin/teams/{theirs['id']}/members",
        {"user_id": lead["id"], "role": "member"},
        201,
    )
    outsider = admin(
        "POST", "/admin/users", {"email": f"out-{uuid.uuid4().hex[:6]}@example.com"}, 201
    )
    theirs_key = admin("POST", "/admin/keys", {"name": "t", "team_id": theirs["id"]}, 201)
    as_lead(
        "POST",
        f"/admin/teams/{theirs['id']}/members",
        {"user_id": outsider["id"], "role": "member"},
        403,
    )
    as_lead("POST", f"/admin/keys/{theirs_key['id']}/revoke", expect=403)
    as_lead(
        "POST",
        "/admin/keys",
        {"name": "y", "team_id": theirs["id"], "user_id": outsider["id"]},
        403,
    )
    as_lead("POST", "/admin/keys", {"name": "svc2", "team_id": theirs["id"]}, 201)  # own key
    as_lead("POST", "/admin/keys", {"name": "z", "user_id": outsider["id"]}, 403)
    as_lead(
        "POST", "/admin/keys", {"name": "z", "team_id": ours["id"], "user_id": outsider["id"]}, 403
    )
    assert as_lead("GET", f"/admin/keys/{theirs_key['id']}")["id"] == theirs_key["id"]
    as_lead("POST", "/admin/teams", {"name": "nope"}, 403)
    as_lead("GET", "/admin/credentials", expect=403)
    assert {t["id"] for t in as_lead("GET", "/admin/teams")["data"]} == {ours["id"], theirs["id"]}

    viewer = admin(
        "POST",
        "/admin/users",
        {
            "name": "auditor",
            "email": f"auditor-{uuid.uuid4().hex[:6]}@example.com",
            "role": "viewer",
        },
        201,
    )
    viewer_key = admin("POST", "/admin/keys", {"name": "v", "user_id": viewer["id"]}, 201)["key"]
    Admin(url, viewer_key)("POST", "/admin/keys", {"name": "no"}, 403)
    assert refused(url, None).status_code == 401
    Admin(url, "tw-wrong-wrong-wrong-wrong-wrong")("GET", "/admin/teams", expect=401)


def test_vault_credentials_change_without_restart(
    locked: tuple[str, Process], simulator_url: str
) -> None:
    url, _ = locked
    admin = Admin(url)
    unavailable = refused(url, CLIENT_KEY, "vaulted-model")
    assert unavailable.status_code == 502 and "vault:sim-upstream" in unavailable.message
    admin(
        "POST",
        "/admin/credentials",
        {"name": "sim-upstream", "provider": "openai", "secret": UPSTREAM_KEY},
        201,
    )
    assert chat(url, CLIENT_KEY, "vaulted-model")
    listed = admin("GET", "/admin/credentials")["data"]
    assert [c["name"] for c in listed] == ["sim-upstream"]
    assert UPSTREAM_KEY not in str(listed)
    admin(
        "POST",
        "/admin/credentials",
        {"name": "sim-upstream", "provider": "openai", "secret": "sk-something-else"},
        409,
    )
    admin(
        "PUT",
        "/admin/credentials/sim-upstream",
        {"name": "sim-upstream", "provider": "openai", "secret": "sk-rotated-but-wrong"},
    )
    # The upstream refuses the rotated key: the gateway's credential, not the client's.
    wrong = refused(url, CLIENT_KEY, "vaulted-model")
    assert wrong.status_code == 502 and "refused the gateway's credential" in wrong.message
    admin(
        "PUT",
        "/admin/credentials/sim-upstream",
        {"name": "sim-upstream", "provider": "openai", "secret": UPSTREAM_KEY},
    )
    assert chat(url, CLIENT_KEY, "vaulted-model")


def test_audit_trail_and_openapi(locked: tuple[str, Process]) -> None:
    url, process = locked
    admin = Admin(url)
    made = admin("POST", "/admin/keys", {"name": "audited"}, 201)
    admin("POST", f"/admin/keys/{made['id']}/revoke")
    events = admin("GET", "/admin/audit?action=key.*&limit=50")["data"]
    revoke = next(e for e in events if e["action"] == "key.revoke" and e["target_id"] == made["id"])
    assert revoke["actor"] == "bootstrap-admin"
    assert revoke["source_ip"] == "127.0.0.1"
    assert revoke["request_id"]
    schema = httpx.get(url + "/admin/openapi.json").json()
    assert "/admin/keys/{key_id}/rotate" in schema["paths"]
    assert "KeyCreate" in schema["components"]["schemas"]
    assert made["key"] not in process.output()
    assert CLIENT_KEY not in process.output()


def cli(url: str, *args: str) -> Any:
    """Run ``tollway ARGS --json`` against the gateway and parse its output."""
    env = {**os.environ, "TOLLWAY_URL": url, "TOLLWAY_ADMIN_KEY": CLIENT_KEY, "COLUMNS": "250"}
    result = subprocess.run(
        tollway_command(*args), capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if "--json" in args else result.stdout


def test_cli_key_lifecycle(locked: tuple[str, Process]) -> None:
    url, _ = locked
    team = cli(url, "teams", "create", f"cli-{uuid.uuid4().hex[:6]}", "--json")
    user = cli(
        url, "users", "create", "--email", f"cli-{uuid.uuid4().hex[:6]}@example.com", "--json"
    )
    cli(url, "teams", "add-member", team["id"], user["id"])
    created = cli(
        url,
        "keys",
        "create",
        "--name",
        "from-cli",
        "--team",
        team["id"],
        "--user",
        user["id"],
        "--model",
        "open-*",
        "--tag",
        "service=batch",
        "--json",
    )
    assert created["tags"] == {"service": "batch"}
    assert chat(url, created["key"])
    table = cli(url, "keys", "list", "--team", team["id"])
    assert created["prefix"] in table and created["key"] not in table
    cli(url, "keys", "revoke", created["id"])
    assert refused(url, created["key"]).status_code == 401
    failed = subprocess.run(
        tollway_command("keys", "list"),
        capture_output=True,
        text=True,
        env={**os.environ, "TOLLWAY_URL": url, "TOLLWAY_ADMIN_KEY": "tw-not-a-key-at-all-xxxxxxxx"},
        timeout=60,
    )
    assert failed.returncode == 1 and "401" in failed.stderr


def test_a_key_gives_no_key_more_models_than_it_may_use(locked: tuple[str, Process]) -> None:
    url, _ = locked
    admin = Admin(url)
    team = admin("POST", "/admin/teams", {"name": f"narrow-{uuid.uuid4().hex[:6]}"}, 201)
    user = admin("POST", "/admin/users", {"email": f"n-{uuid.uuid4().hex[:6]}@example.com"}, 201)
    admin("POST", f"/admin/teams/{team['id']}/members", {"user_id": user["id"]}, 201)
    narrow = admin(
        "POST",
        "/admin/keys",
        {"name": "n", "user_id": user["id"], "team_id": team["id"], "allowed_models": ["open-*"]},
        201,
    )
    as_narrow = Admin(url, narrow["key"])
    # Naming no models (every model) or a model outside its own: refused.
    for wider in ([], ["other-model"], ["*"], ["open-*", "other-*"]):
        body = {"name": "w", "team_id": team["id"], "allowed_models": wider}
        refusal = as_narrow("POST", "/admin/keys", body, 403)
        assert refusal["error"]["code"] == "model_not_allowed"
        as_narrow("PATCH", f"/admin/keys/{narrow['id']}", {"allowed_models": wider}, 403)
    assert refused(url, narrow["key"], "other-model").status_code == 403
    # Within its own models: allowed.
    same = as_narrow("POST", "/admin/keys", {"name": "s", "allowed_models": ["open-*"]}, 201)
    exact = as_narrow("POST", "/admin/keys", {"name": "e", "allowed_models": ["open-model"]}, 201)
    assert chat(url, same["key"]) and chat(url, exact["key"])
    as_narrow("PATCH", f"/admin/keys/{exact['id']}", {"allowed_models": ["open-m*"]})
    # A team's service key (no owner) makes no keys: they would be nobody's, out of its team.
    service = admin(
        "POST", "/admin/keys", {"name": "svc", "team_id": team["id"], "allowed_models": []}, 201
    )
    orphan = Admin(url, service["key"])("POST", "/admin/keys", {"name": "orphan"}, 403)
    assert orphan["error"]["code"] == "insufficient_role"


def test_a_change_that_sets_a_required_field_to_null_is_a_clear_400(
    locked: tuple[str, Process],
) -> None:
    url, _ = locked
    admin = Admin(url)
    team = admin("POST", "/admin/teams", {"name": f"null-{uuid.uuid4().hex[:6]}"}, 201)
    user = admin("POST", "/admin/users", {"email": f"null-{uuid.uuid4().hex[:6]}@example.com"}, 201)
    key = admin("POST", "/admin/keys", {"name": "k", "allowed_models": ["open-model"]}, 201)
    for path, field in [
        (f"/admin/keys/{key['id']}", "name"),
        (f"/admin/keys/{key['id']}", "allowed_models"),
        (f"/admin/keys/{key['id']}", "tags"),
        (f"/admin/keys/{key['id']}", "metadata"),
        (f"/admin/users/{user['id']}", "role"),
        (f"/admin/users/{user['id']}", "blocked"),
        (f"/admin/users/{user['id']}", "metadata"),
        (f"/admin/teams/{team['id']}", "name"),
        (f"/admin/teams/{team['id']}", "metadata"),
    ]:
        error = admin("PATCH", path, {field: None}, 400)["error"]
        assert error["param"] == field and error["message"] == (
            f"'{field}': cannot be null (leave the field out to keep it as it is)"
        )
    assert admin("GET", f"/admin/keys/{key['id']}")["allowed_models"] == ["open-model"]
    # What can be cleared still is.
    assert admin("PATCH", f"/admin/keys/{key['id']}", {"expires_at": None})["expires_at"] is None
    assert admin("PATCH", f"/admin/teams/{team['id']}", {"organization": None})["name"]


def test_a_team_admin_cannot_make_or_rotate_an_admins_key(locked: tuple[str, Process]) -> None:
    url, _ = locked
    admin = Admin(url)
    team = admin("POST", "/admin/teams", {"name": f"climb-{uuid.uuid4().hex[:6]}"}, 201)
    lead = admin("POST", "/admin/users", {"email": f"l-{uuid.uuid4().hex[:6]}@example.com"}, 201)
    boss = admin(
        "POST",
        "/admin/users",
        {"email": f"b-{uuid.uuid4().hex[:6]}@example.com", "role": "admin"},
        201,
    )
    member = admin("POST", "/admin/users", {"email": f"m-{uuid.uuid4().hex[:6]}@example.com"}, 201)
    members = f"/admin/teams/{team['id']}/members"
    admin("POST", members, {"user_id": lead["id"], "role": "team_admin"}, 201)
    admin("POST", members, {"user_id": member["id"]}, 201)
    lead_key = admin(
        "POST", "/admin/keys", {"name": "l", "user_id": lead["id"], "team_id": team["id"]}, 201
    )
    as_lead = Admin(url, lead_key["key"])
    # The lead may add the admin to the team, but not make a key (which would act as admin).
    as_lead("POST", members, {"user_id": boss["id"]}, 201)
    refusal = as_lead(
        "POST", "/admin/keys", {"name": "x", "user_id": boss["id"], "team_id": team["id"]}, 403
    )
    assert refusal["error"]["code"] == "insufficient_role"
    bosses = admin(
        "POST", "/admin/keys", {"name": "b", "user_id": boss["id"], "team_id": team["id"]}, 201
    )
    as_lead("POST", f"/admin/keys/{bosses['id']}/rotate", {}, 403)
    as_lead("PATCH", f"/admin/keys/{bosses['id']}", {"name": "mine now"}, 403)
    as_lead("POST", f"/admin/keys/{bosses['id']}/revoke", expect=403)
    assert chat(url, bosses["key"])
    # Its members' keys it still makes and manages.
    made = as_lead(
        "POST", "/admin/keys", {"name": "m", "user_id": member["id"], "team_id": team["id"]}, 201
    )
    assert as_lead("POST", f"/admin/keys/{made['id']}/rotate", {}, 201)["key"]


def _key_for(admin: Admin, user_id: str, team_id: str | None = None) -> dict[str, Any]:
    body = {"name": "own", "user_id": user_id, **({"team_id": team_id} if team_id else {})}
    made: dict[str, Any] = admin("POST", "/admin/keys", body, 201)
    return made


def _user(admin: Admin, name: str) -> dict[str, Any]:
    made: dict[str, Any] = admin(
        "POST", "/admin/users", {"email": f"{name}-{uuid.uuid4().hex[:6]}@example.com"}, 201
    )
    return made


def test_a_member_makes_keys_only_in_a_team_of_its_own(locked: tuple[str, Process]) -> None:
    url, _ = locked
    admin = Admin(url)
    ours = admin("POST", "/admin/teams", {"name": f"own-{uuid.uuid4().hex[:6]}"}, 201)
    other = admin("POST", "/admin/teams", {"name": f"other-{uuid.uuid4().hex[:6]}"}, 201)
    member = _user(admin, "member")
    admin("POST", f"/admin/teams/{ours['id']}/members", {"user_id": member["id"]}, 201)
    as_member = Admin(url, _key_for(admin, member["id"])["key"])  # an admin's personal key
    # No team named: the member's only team, so that team's budgets apply to the key.
    made = as_member("POST", "/admin/keys", {"name": "x"}, 201)
    assert (made["team_id"], made["user_id"]) == (ours["id"], member["id"])
    assert chat(url, made["key"])
    refusal = as_member("POST", "/admin/keys", {"name": "x", "team_id": other["id"]}, 403)
    assert refusal["error"]["code"] == "outside_team"
    # In two teams: it must say which.
    admin("POST", f"/admin/teams/{other['id']}/members", {"user_id": member["id"]}, 201)
    unclear = as_member("POST", "/admin/keys", {"name": "x"}, 400)
    assert unclear["error"]["param"] == "team_id"
    assert as_member("POST", "/admin/keys", {"name": "x", "team_id": other["id"]}, 201)
    # A member of no team makes no keys (an admin may make it one).
    loner = _user(admin, "loner")
    as_loner = Admin(url, _key_for(admin, loner["id"])["key"])
    assert as_loner("POST", "/admin/keys", {"name": "x"}, 403)["error"]["code"] == "outside_team"
    # Leaving a team ends making keys there, even with a key of that team in hand.
    team_key = Admin(url, _key_for(admin, member["id"], ours["id"])["key"])
    admin("DELETE", f"/admin/teams/{ours['id']}/members/{member['id']}")
    gone = team_key("POST", "/admin/keys", {"name": "x", "team_id": ours["id"]}, 401)
    assert gone["error"]["code"] == "key_blocked"  # the key of that team stopped with it
    still = as_member("POST", "/admin/keys", {"name": "x", "team_id": ours["id"]}, 403)
    assert still["error"]["code"] == "outside_team"


def test_a_block_is_lifted_only_by_as_much_authority_as_made_it(
    locked: tuple[str, Process],
) -> None:
    url, _ = locked
    admin = Admin(url)
    team = admin("POST", "/admin/teams", {"name": f"blocks-{uuid.uuid4().hex[:6]}"}, 201)
    lead, member = _user(admin, "lead"), _user(admin, "member")
    members = f"/admin/teams/{team['id']}/members"
    admin("POST", members, {"user_id": lead["id"], "role": "team_admin"}, 201)
    admin("POST", members, {"user_id": member["id"]}, 201)
    as_lead = Admin(url, _key_for(admin, lead["id"], team["id"])["key"])
    as_member = Admin(url, _key_for(admin, member["id"], team["id"])["key"])
    key = _key_for(admin, member["id"], team["id"])
    path = f"/admin/keys/{key['id']}"

    admin("POST", path + "/block")
    for lower in (as_member, as_lead):
        refusal = lower("POST", path + "/unblock", expect=403)
        assert refusal["error"]["code"] == "insufficient_role"
        assert "an admin" in refusal["error"]["message"]
    assert refused(url, key["key"]).code == "key_blocked"
    assert admin("GET", path)["blocked_by"] == "admin"
    # Blocking again with less authority keeps the admin's block.
    assert as_member("POST", path + "/block")["blocked_by"] == "admin"
    as_member("POST", path + "/unblock", expect=403)
    assert admin("POST", path + "/unblock")["status"] == "active"
    assert chat(url, key["key"])

    assert as_lead("POST", path + "/block")["blocked_by"] == "team_admin"
    as_member("POST", path + "/unblock", expect=403)
    assert as_lead("POST", path + "/unblock")["blocked_by"] is None

    assert as_member("POST", path + "/block")["blocked_by"] == "owner"
    assert as_member("POST", path + "/unblock")["status"] == "active"
    assert chat(url, key["key"])


def _openai_refusal(url: str, key: str) -> tuple[int, str | None]:
    error = refused(url, key)
    return error.status_code, error.code


def _stored_response_refusal(url: str, key: str) -> tuple[int, str | None]:
    # The Responses API's routes of a stored response answered 404 whatever the key.
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.responses.retrieve("resp_123")
    return caught.value.status_code, caught.value.code


def _anthropic_refusal(url: str, key: str) -> tuple[int, str | None]:
    client = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(
            model="open-model", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error", body
    assert body["error"]["type"] == "authentication_error"
    return caught.value.status_code, None


def test_keys_that_ended_are_refused_with_a_401_in_each_dialect(
    locked: tuple[str, Process],
) -> None:
    url, process = locked
    admin = Admin(url)
    team = admin("POST", "/admin/teams", {"name": f"ended-{uuid.uuid4().hex[:6]}"}, 201)
    made = [
        admin("POST", "/admin/keys", {"name": "k", "team_id": team["id"]}, 201) for _ in "12345"
    ]
    expired, revoked, rotated, lapsed, deleted = made
    admin("PATCH", f"/admin/keys/{expired['id']}", {"expires_at": "2020-01-01T00:00:00Z"})
    admin("POST", f"/admin/keys/{revoked['id']}/revoke")
    admin("POST", f"/admin/keys/{rotated['id']}/rotate", {}, 201)
    admin("POST", f"/admin/keys/{lapsed['id']}/rotate", {"grace_period": "1s"}, 201)
    assert chat(url, lapsed["key"])  # in its grace period
    time.sleep(1.1)
    expected = [
        (expired, "key_expired"),
        (revoked, "key_revoked"),
        (rotated, "key_revoked"),
        (lapsed, "key_rotated"),
    ]
    for key, code in expected:
        assert _openai_refusal(url, key["key"]) == (401, code)
        assert _anthropic_refusal(url, key["key"]) == (401, None)
        assert _stored_response_refusal(url, key["key"]) == (401, code)
    # Deleting the team revokes its keys.
    assert chat(url, deleted["key"])
    admin("DELETE", f"/admin/teams/{team['id']}", expect=204)
    assert _openai_refusal(url, deleted["key"]) == (401, "key_revoked")
    assert _anthropic_refusal(url, deleted["key"]) == (401, None)
    assert all(key["key"] not in process.output() for key in made)


@pytest.mark.parametrize("ending", ["block", "revoke"])
def test_blocking_or_revoking_a_key_ends_the_grace_of_the_secrets_it_replaced(
    locked: tuple[str, Process], ending: str
) -> None:
    url, _ = locked
    admin = Admin(url)
    first = admin("POST", "/admin/keys", {"name": "k"}, 201)
    second = admin("POST", f"/admin/keys/{first['id']}/rotate", {"grace_period": "1h"}, 201)
    third = admin("POST", f"/admin/keys/{second['id']}/rotate", {"grace_period": "1h"}, 201)
    assert chat(url, first["key"]) and chat(url, second["key"])  # both in their grace period
    admin("POST", f"/admin/keys/{third['id']}/{ending}")
    # The older secrets are the same key: they stop with it, and stay stopped after an unblock.
    for older in (first, second):
        assert _openai_refusal(url, older["key"]) == (401, "key_revoked")
        assert _anthropic_refusal(url, older["key"]) == (401, None)
        assert admin("GET", f"/admin/keys/{older['id']}")["grace_until"] is None
    if ending == "block":
        admin("POST", f"/admin/keys/{third['id']}/unblock")
        assert chat(url, third["key"])
        assert _openai_refusal(url, first["key"]) == (401, "key_revoked")


def test_a_grace_period_is_at_most_a_week(locked: tuple[str, Process]) -> None:
    url, _ = locked
    admin = Admin(url)
    key = admin("POST", "/admin/keys", {"name": "k"}, 201)
    refusal = admin("POST", f"/admin/keys/{key['id']}/rotate", {"grace_period": "169h"}, 400)
    assert refusal["error"]["param"] == "grace_period"
    assert "168h" in refusal["error"]["message"]
    assert chat(url, key["key"])  # not rotated
    admin("POST", f"/admin/keys/{key['id']}/rotate", {"grace_period": "168h"}, 201)


def test_leaving_a_team_blocks_the_keys_the_member_owns_there(
    locked: tuple[str, Process],
) -> None:
    url, process = locked
    admin = Admin(url)
    ours = admin("POST", "/admin/teams", {"name": f"left-{uuid.uuid4().hex[:6]}"}, 201)
    other = admin("POST", "/admin/teams", {"name": f"stays-{uuid.uuid4().hex[:6]}"}, 201)
    lead, member, colleague = _user(admin, "lead"), _user(admin, "member"), _user(admin, "peer")
    members = f"/admin/teams/{ours['id']}/members"
    admin("POST", members, {"user_id": lead["id"], "role": "team_admin"}, 201)
    for user in (member, colleague):
        admin("POST", members, {"user_id": user["id"]}, 201)
    admin("POST", f"/admin/teams/{other['id']}/members", {"user_id": member["id"]}, 201)
    as_lead = Admin(url, _key_for(admin, lead["id"], ours["id"])["key"])
    in_team = _key_for(admin, member["id"], ours["id"])
    self_blocked = _key_for(admin, member["id"], ours["id"])
    Admin(url, in_team["key"])("POST", f"/admin/keys/{self_blocked['id']}/block")
    old_secret = _key_for(admin, member["id"], ours["id"])
    rotated = admin("POST", f"/admin/keys/{old_secret['id']}/rotate", {"grace_period": "1h"}, 201)
    elsewhere = _key_for(admin, member["id"], other["id"])
    peers = _key_for(admin, colleague["id"], ours["id"])
    service = admin("POST", "/admin/keys", {"name": "svc", "team_id": ours["id"]}, 201)
    assert chat(url, old_secret["key"])  # in its grace period

    removed = as_lead("DELETE", f"{members}/{member['id']}")

    # The answer says which keys stopped and why: blocked by the team admin who removed them
    # (the owner's own block raised to that), the rotated secret's grace ended.
    blocked = {key["id"]: key for key in removed["blocked_keys"]}
    assert set(blocked) == {in_team["id"], self_blocked["id"], rotated["id"]}
    for key in blocked.values():
        assert (key["status"], key["blocked_by"]) == ("blocked", "team_admin")
        assert (
            key["blocked_reason"]
            == removed["reason"]
            == "its owner was removed from the key's team"
        )
    assert [key["id"] for key in removed["ended_grace"]] == [old_secret["id"]]
    assert admin("GET", f"/admin/keys/{in_team['id']}")["blocked_reason"] == removed["reason"]
    refusal = refused(url, in_team["key"])
    assert (refusal.status_code, refusal.code) == (401, "key_blocked")
    assert "removed from the key's team" in refusal.message
    assert _anthropic_refusal(url, rotated["key"]) == (401, None)
    assert _openai_refusal(url, old_secret["key"]) == (401, "key_revoked")
    # Their keys in other teams, their colleagues' keys and the team's own keys go on.
    for key in (elsewhere, peers, service):
        assert chat(url, key["key"])
    event = admin("GET", f"/admin/audit?action=team.member.remove&target_id={ours['id']}")
    assert set(event["data"][0]["details"]["blocked_keys"]) == set(blocked)

    # Neither the owner nor the team admin brings a key of a non-member back; an admin may.
    as_member = Admin(url, elsewhere["key"])
    assert as_member("POST", f"/admin/keys/{in_team['id']}/unblock", expect=403)
    lead_refusal = as_lead("POST", f"/admin/keys/{in_team['id']}/unblock", expect=403)
    assert lead_refusal["error"]["code"] == "outside_team"
    assert admin("POST", f"/admin/keys/{self_blocked['id']}/unblock")["status"] == "active"
    # Back in the team, the keys stay blocked until the team admin (or an admin) lifts it.
    admin("POST", members, {"user_id": member["id"]}, 201)
    assert refused(url, in_team["key"]).code == "key_blocked"
    assert as_lead("POST", f"/admin/keys/{in_team['id']}/unblock")["blocked_reason"] is None
    assert chat(url, in_team["key"])
    # Removing nobody is a 404; a team admin removes no admin (their keys would stop).
    as_lead("DELETE", f"{members}/{colleague['id']}")
    assert as_lead("DELETE", f"{members}/{colleague['id']}", expect=404)
    boss = admin(
        "POST",
        "/admin/users",
        {"email": f"boss-{uuid.uuid4().hex[:6]}@example.com", "role": "admin"},
        201,
    )
    admin("POST", members, {"user_id": boss["id"]}, 201)
    denied = as_lead("DELETE", f"{members}/{boss['id']}", expect=403)
    assert denied["error"]["code"] == "insufficient_role"
    assert admin("DELETE", f"{members}/{boss['id']}")["blocked_keys"] == []
    assert all(key["key"] not in process.output() for key in (in_team, rotated, old_secret))
