"""Admin requests denied (401, 403) in the audit trail: who tried the admin API without the
right to, from where, at what.

Each kind of denial goes over HTTP to a real ``tollway serve`` process, on SQLite and on
PostgreSQL, and is read back through ``GET /admin/audit``, ``tollway audit list`` and the
store itself; a gateway with a low ``auth.admin_denials_per_second`` shows the bound on a
flood.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import (
    CLIENT_KEY,
    Process,
    postgres_database,
    running_gateway,
    tollway_command,
    wait_for_ids,
)

UNKNOWN_SECRET = "tw-NeverAudited-" + uuid.uuid4().hex + "Zq"
"""A key no gateway knows: no part of it may appear in an event, a log line or a metric."""
SECRET_PARTS = (UNKNOWN_SECRET, UNKNOWN_SECRET[:12], UNKNOWN_SECRET[3:19], UNKNOWN_SECRET[-16:])
ADMIN = {"Authorization": f"Bearer {CLIENT_KEY}"}


@dataclass(frozen=True)
class Denying:
    """The module's gateway, its store and the keys made on it."""

    url: str
    process: Process
    store_url: str
    user: str
    team: str
    other_team: str
    keys: dict[str, tuple[str, str]]
    """By name (member, revoked, blocked, expired): the key's id and secret."""


def _admin(url: str, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    response = httpx.request(method, url + path, json=body, headers=ADMIN, timeout=30)
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def _key(url: str, **fields: Any) -> tuple[str, str]:
    created = _admin(url, "POST", "/admin/keys", {"name": uuid.uuid4().hex[:8], **fields}, 201)
    return created["id"], created["key"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def denying(
    request: pytest.FixtureRequest, log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Denying]:
    databases = None
    if request.param == "postgresql":
        databases = postgres_database()
        store_url = next(databases)
    else:
        store_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('denials')}/tollway.db"
    config = {"store": {"url": store_url}, "models": [], "auth": {"reconcile_interval": "1h"}}
    with running_gateway(log_dir, config, {"TOLLWAY_STORE_URL": store_url}) as (url, process):
        team = _admin(url, "POST", "/admin/teams", {"name": "denied"}, 201)["id"]
        other_team = _admin(url, "POST", "/admin/teams", {"name": "elsewhere"}, 201)["id"]
        user = _admin(url, "POST", "/admin/users", {"email": "bob@example.com"}, 201)["id"]
        _admin(url, "POST", f"/admin/teams/{team}/members", {"user_id": user}, 201)
        owned = {"user_id": user, "team_id": team}
        keys = {name: _key(url, **owned) for name in ("member", "revoked", "blocked")}
        _admin(url, "POST", f"/admin/keys/{keys['revoked'][0]}/revoke")
        _admin(url, "POST", f"/admin/keys/{keys['blocked'][0]}/block")
        keys["expired"] = _key(url, **owned, expires_at="2020-01-01T00:00:00Z")  # ended already
        yield Denying(url, process, store_url, user, team, other_team, keys)
    if databases is not None:
        next(databases, None)


def _denials(url: str, request_ids: set[str]) -> dict[str, Any]:
    """The ``admin.denied`` events of ``request_ids``, once all are written."""
    path = "/admin/audit?action=admin.denied&limit=1000"
    return wait_for_ids(lambda: _admin(url, "GET", path)["data"], request_ids, "audited")


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# (name, method, path, credential, status, error code, actor)
CASES: list[tuple[str, str, str, str, int, str, str]] = [
    ("no key", "GET", "/admin/keys", "none", 401, "missing_api_key", "anonymous"),
    ("unknown key", "GET", "/admin/keys", "unknown", 401, "invalid_api_key", "unknown"),
    ("not bearer", "GET", "/admin/teams", "basic", 401, "invalid_authorization", "unknown"),
    ("revoked key", "POST", "/admin/keys", "revoked", 401, "key_revoked", "revoked"),
    ("blocked key", "GET", "/admin/audit", "blocked", 401, "key_blocked", "blocked"),
    ("expired key", "GET", "/admin/keys", "expired", 401, "key_expired", "expired"),
    ("member on an admin route", "GET", "/admin/audit", "member", 403, "insufficient_role",
     "member"),
    ("member outside its team", "GET", "/admin/teams/{other_team}", "member", 403,
     "outside_team", "member"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "credential", "status", "code", "actor"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_a_denied_admin_request_is_in_the_audit_trail_with_who_where_and_what(
    denying: Denying, method: str, path: str, credential: str, status: int, code: str, actor: str
) -> None:
    headers = {
        "none": {},
        "unknown": _bearer(UNKNOWN_SECRET),
        "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
        **{name: _bearer(key) for name, (_, key) in denying.keys.items()},
    }[credential]
    rid = f"denied-{uuid.uuid4().hex[:12]}"
    asked = path.format(other_team=denying.other_team)
    body = {"name": "x"} if method == "POST" else None
    response = httpx.request(
        method, denying.url + asked, json=body, headers={**headers, "x-request-id": rid}
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code

    event = _denials(denying.url, {rid})[rid]
    assert (event["action"], event["target_type"]) == ("admin.denied", "route")
    assert event["target_id"] == path.replace("{other_team}", "{team_id}")  # the route
    assert (event["source_ip"], event["request_id"]) == ("127.0.0.1", rid)
    details = event["details"]
    assert (details["method"], details["path"]) == (method, asked)
    assert (details["status"], details["code"]) == (status, code)
    if actor in ("anonymous", "unknown"):
        assert event["actor"] == actor
        assert (details["user"], details["team"], details["role"]) == (None, None, None)
    else:  # a known key: by its id, never its prefix (a part of the secret)
        key_id, secret = denying.keys[actor]
        assert event["actor"] == key_id
        assert (details["user"], details["team"], details["role"]) == (
            denying.user, denying.team, "member",
        )  # fmt: skip
        assert secret[:12] not in json.dumps(event)


def test_allowed_admin_requests_leave_no_denial(denying: Denying) -> None:
    rid = f"allowed-{uuid.uuid4().hex[:12]}"
    member = denying.keys["member"][1]
    answer = httpx.get(
        denying.url + "/admin/whoami", headers={**_bearer(member), "x-request-id": rid}
    )
    assert answer.status_code == 200
    marker = f"marker-{uuid.uuid4().hex[:12]}"
    assert httpx.get(
        denying.url + "/admin/keys", headers={"x-request-id": marker}
    ).status_code == 401  # fmt: skip
    _denials(denying.url, {marker})  # written after the allowed one, so that one is settled
    page = _admin(denying.url, "GET", "/admin/audit?action=admin.denied&limit=1000")
    assert rid not in {e["request_id"] for e in page["data"]}


async def _stored_audit_text(store_url: str) -> str:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(store_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT * FROM audit_events"))
            return "\n".join(repr(tuple(row)) for row in rows)
    finally:
        await engine.dispose()


def test_an_unknown_keys_secret_is_in_no_event_log_line_metric_or_stored_row(
    denying: Denying,
) -> None:
    rids = {f"secret-{n}-{uuid.uuid4().hex[:8]}" for n in range(3)}
    for rid in rids:
        headers = _bearer(UNKNOWN_SECRET) if rid.startswith("secret-0") else {
            "x-api-key": UNKNOWN_SECRET
        }  # fmt: skip
        headers = {**headers, "x-request-id": rid}
        sent = httpx.post(denying.url + "/admin/keys", json={"name": "x"}, headers=headers)
        assert sent.status_code == 401
    events = _denials(denying.url, rids)
    assert {e["actor"] for e in events.values()} == {"unknown"}

    trail = httpx.get(denying.url + "/admin/audit?limit=1000", headers=ADMIN).text
    stored = asyncio.run(_stored_audit_text(denying.store_url))
    assert len(stored) > 0
    metrics = httpx.get(denying.url + "/metrics").text
    output = denying.process.output()
    for where, text in (("the audit trail", trail), ("the audit table", stored),
                        ("metrics", metrics), ("gateway log", output)):  # fmt: skip
        for part in SECRET_PARTS:
            assert part not in text, f"{where} holds the unknown key's secret"


def test_a_key_sent_in_the_path_of_a_denied_request_is_not_recorded(denying: Denying) -> None:
    # A client that puts its key in the URL (as if it were an id, or by a templating slip)
    # and is turned away: the event keeps the path, without the key.
    rid = f"in-path-{uuid.uuid4().hex[:8]}"
    sent = httpx.get(
        f"{denying.url}/admin/keys/{UNKNOWN_SECRET}?key={UNKNOWN_SECRET}",
        headers={"Authorization": "Basic eA==", "x-request-id": rid},
    )
    assert sent.status_code == 401
    event = _denials(denying.url, {rid})[rid]
    assert event["details"]["path"] == "/admin/keys/[SECRET]"
    stored = asyncio.run(_stored_audit_text(denying.store_url))
    for part in SECRET_PARTS:
        assert part not in stored, "the audit table holds a key sent in a path"


def test_tollway_audit_list_shows_who_the_admin_api_turned_away(denying: Denying) -> None:
    env = {**os.environ, "TOLLWAY_URL": denying.url}
    # The CLI with a wrong admin key is itself turned away, and that is on record.
    refused = subprocess.run(
        tollway_command("keys", "list"), capture_output=True, text=True, timeout=60,
        env={**env, "TOLLWAY_ADMIN_KEY": UNKNOWN_SECRET},
    )  # fmt: skip
    assert refused.returncode == 1 and "401" in refused.stderr
    listed = subprocess.run(
        tollway_command("audit", "list", "--action", "admin.denied", "--json"),
        capture_output=True, text=True, timeout=60, env={**env, "TOLLWAY_ADMIN_KEY": CLIENT_KEY},
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    events = json.loads(listed.stdout)["data"]
    newest = events[0]
    assert newest["action"] == "admin.denied" and newest["actor"] == "unknown"
    assert (newest["target_id"], newest["details"]["code"]) == ("/admin/keys", "invalid_api_key")
    for part in SECRET_PARTS:
        assert part not in listed.stdout and part not in refused.stderr


def test_a_flood_of_denials_is_recorded_up_to_its_rate_and_counted_beyond(
    log_dir: Path, tmp_path: Path
) -> None:
    store_url = f"sqlite+aiosqlite:///{tmp_path}/flood.db"
    # 1 a second of a kind (the default): bursts of 10 events, the rest counted.
    config = {"store": {"url": store_url}, "models": []}
    sent = 150
    with running_gateway(log_dir, config, {"TOLLWAY_STORE_URL": store_url}) as (url, process):
        started = time.monotonic()
        with httpx.Client() as client:
            for n in range(sent):
                headers = {**_bearer(UNKNOWN_SECRET), "x-request-id": f"flood-{n}"}
                assert client.get(url + "/admin/keys", headers=headers).status_code == 401
        seconds = time.monotonic() - started
        other = f"other-kind-{uuid.uuid4().hex[:8]}"
        assert httpx.get(url + "/admin/keys", headers={"x-request-id": other}).status_code == 401
        _denials(url, {other})  # another kind has a bucket of its own
        time.sleep(0.3)
        trail = _admin(url, "GET", "/admin/audit?action=admin.denied&limit=1000")["data"]
        flood = [e for e in trail if e["details"]["code"] == "invalid_api_key"]
        metrics = httpx.get(url + "/metrics").text
        output = process.output()

    counted = re.search(
        r'tollway_admin_denials_suppressed_total\{code="invalid_api_key",status="401"\} (\d+)',
        metrics,
    )
    assert counted is not None, metrics
    assert 10 <= len(flood) <= 10 + seconds + 1
    assert len(flood) + int(counted.group(1)) == sent  # every denial recorded or counted
    assert 'code="missing_api_key"' not in metrics
    assert "admin audit trail: denied admin requests (401 invalid_api_key)" in output
    # The request log's own counter is not the admin API's.
    assert 'tollway_request_log_refusals_suppressed_total{code="invalid_api_key"' not in metrics
