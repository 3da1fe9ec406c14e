"""Text no store keeps, sent to the admin API of a gateway on a real port, on a SQLite file
and on PostgreSQL: a NUL character (``\\u0000`` in JSON, ``%00`` in a URL), which
PostgreSQL's text and JSONB refuse, is a 400 naming where it was, never a 500, and on both
stores alike (a name SQLite took would not survive a move to PostgreSQL).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import CLIENT_KEY, Process, chat_gateway_on

ADMIN = {"Authorization": f"Bearer {CLIENT_KEY}"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def gateway(
    request: pytest.FixtureRequest, log_dir: Path, simulator_url: str
) -> Iterator[tuple[str, Process]]:
    """A gateway on a fresh store of each backend."""
    yield from chat_gateway_on(request.param, log_dir, simulator_url, "text")


def test_a_nul_in_admin_input_is_a_400_naming_where_it_is(gateway: tuple[str, Process]) -> None:
    url, process = gateway
    admin = httpx.Client(base_url=url, headers=ADMIN, timeout=30)
    team = admin.post("/admin/teams", json={"name": f"plain-{uuid.uuid4().hex[:8]}"}).json()
    # (method, path, body, the parameter the 400 names)
    calls = [
        ("POST", "/admin/teams", {"name": "a\x00b"}, "name"),
        ("POST", "/admin/teams", {"name": "meta", "metadata": {"k": ["x\x00"]}}, "metadata.k[0]"),
        ("POST", "/admin/teams", {"name": "meta", "metadata": {"k\x00": 1}}, "metadata"),
        ("PATCH", f"/admin/teams/{team['id']}", {"organization": "\x00"}, "organization"),
        ("POST", "/admin/users", {"email": "a\x00@example.com"}, "email"),
        ("POST", "/admin/keys", {"name": "k\x00"}, "name"),
        ("POST", "/admin/keys", {"name": "k", "tags": {"env": "\x00"}}, "tags.env"),
        ("GET", "/admin/teams/%00", None, "team_id"),
        ("GET", "/admin/keys/x%00", None, "key_id"),
        ("GET", "/admin/audit?actor=%00", None, "actor"),
        ("GET", "/admin/audit?target_id=a%00", None, "target_id"),
        ("GET", "/admin/logs?model=%00", None, "model"),
        ("GET", "/admin/users?team_id=%00", None, "team_id"),
    ]
    wrong = []
    for method, path, body, param in calls:
        answer = admin.request(method, path, json=body)
        error = answer.json().get("error", {}) if answer.status_code == 400 else {}
        if answer.status_code != 400 or error.get("param") != param or "NUL" not in str(error):
            wrong.append((method, path, answer.status_code, answer.text))
    # The store stored none of it (on PostgreSQL it raised; on SQLite it kept it).
    names = [t["name"] for t in admin.get("/admin/teams").json()["data"]]
    assert "a\x00b" not in names and "meta" not in names
    assert not wrong, wrong
    assert admin.post("/admin/teams", json={"name": "after"}).status_code == 201
    assert "Traceback" not in process.output()
