"""Edges of the admin API, on a gateway on a real port, on a SQLite file and on PostgreSQL:
times past the calendar's ends, a key's two forms of expiry at once, 400s that name their
parameter, and an OpenAPI document that says what the routes are and what they read.
"""

from __future__ import annotations

import re
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
    yield from chat_gateway_on(request.param, log_dir, simulator_url, "edges")


def _wrong(answer: httpx.Response, param: str) -> str | None:
    """What is wrong with ``answer`` for a 400 naming ``param``, or None."""
    error = answer.json().get("error", {}) if answer.status_code == 400 else {}
    if answer.status_code != 400 or error.get("param") != param:
        return f"{answer.status_code} {answer.text[:300]}"
    return None


# In UTC, one is past 9999-12-31 and the other before 0001-01-01: Python cannot hold either.
PAST_THE_END = "9999-12-31T23:59:59-05:00"
BEFORE_THE_START = "0001-01-01T00:00:00+05:00"


def test_a_time_past_the_calendar_in_utc_is_a_400_naming_it(
    gateway: tuple[str, Process],
) -> None:
    url, process = gateway
    admin = httpx.Client(base_url=url, headers=ADMIN, timeout=30)
    key = admin.post("/admin/keys", json={"name": "edges"}).json()
    calls = [
        ("GET", f"/admin/logs?since={BEFORE_THE_START.replace('+', '%2B')}", None, "since"),
        ("GET", f"/admin/logs?until={PAST_THE_END}", None, "until"),
        ("GET", f"/admin/logs?format=csv&until={PAST_THE_END}", None, "until"),
        ("GET", f"/admin/audit?until={PAST_THE_END}", None, "until"),
        ("GET", f"/admin/reports/usage?until={PAST_THE_END}", None, "until"),
        ("POST", "/admin/keys", {"name": "k", "expires_at": PAST_THE_END}, "expires_at"),
        ("POST", "/admin/keys", {"name": "k", "expires_at": BEFORE_THE_START}, "expires_at"),
        ("PATCH", f"/admin/keys/{key['id']}", {"expires_at": PAST_THE_END}, "expires_at"),
        ("PATCH", f"/admin/keys/{key['id']}", {"expires_at": "2030-01-01T00:00:00"}, "expires_at"),
    ]
    wrong = []
    for method, path, body, param in calls:
        problem = _wrong(admin.request(method, path, json=body), param)
        if problem is not None:
            wrong.append((method, path, body, problem))
    assert not wrong, wrong
    # Within the calendar, the same filters answer.
    assert admin.get("/admin/logs?until=9999-12-31T18:59:59-05:00").status_code == 200
    assert "Traceback" not in process.output()


def test_a_key_given_both_expires_at_and_expires_in_is_a_400(
    gateway: tuple[str, Process],
) -> None:
    url, _ = gateway
    admin = httpx.Client(base_url=url, headers=ADMIN, timeout=30)
    body = {"name": "both", "expires_at": "2030-01-01T00:00:00Z", "expires_in": "1h"}
    answer = admin.post("/admin/keys", json=body)
    # It was a 201 whose expiry was an hour away: the date given was dropped unsaid.
    assert _wrong(answer, "expires_in") is None, answer.text
    assert "not both" in answer.json()["error"]["message"]
    names = [k["name"] for k in admin.get("/admin/keys").json()["data"]]
    assert "both" not in names


def test_a_bad_filter_or_field_names_its_parameter(gateway: tuple[str, Process]) -> None:
    url, _ = gateway
    admin = httpx.Client(base_url=url, headers=ADMIN, timeout=30)
    calls = [
        ("GET", "/admin/logs?status=abc", None, "status"),
        ("GET", "/admin/logs?cursor=garbage", None, "cursor"),
        ("GET", "/admin/audit?cursor=garbage", None, "cursor"),
        ("POST", "/admin/users", {"email": "not-an-email"}, "email"),
        ("POST", "/admin/users", {"name": "no email"}, "email"),
    ]
    wrong = []
    for method, path, body, param in calls:
        problem = _wrong(admin.request(method, path, json=body), param)
        if problem is not None:
            wrong.append((method, path, problem))
    assert not wrong, wrong


METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

QUERIES = {
    ("/admin/keys", "get"): {"team_id", "user_id", "status"},
    ("/admin/users", "get"): {"team_id"},
    ("/admin/budgets", "get"): {"scope", "scope_id"},
    ("/admin/reports/usage", "get"): {
        "group_by", "since", "until", "format",
        "team", "user", "key", "service", "model", "provider",
    },
}  # fmt: skip
"""Query parameters these endpoints read, which their OpenAPI operations must name."""


def test_the_openapi_document_is_the_routes_the_gateway_answers(
    gateway: tuple[str, Process],
) -> None:
    url, _ = gateway
    admin = httpx.Client(base_url=url, headers=ADMIN, timeout=30)
    document = admin.get("/admin/openapi.json").json()
    # A path's methods: those of every documented path it matches (the PUT of
    # /admin/credentials/{name} is one of /admin/credentials/reencrypt too).
    templates = [
        (re.compile("^" + re.sub(r"{\w+}", "[^/]+", path) + "$"), operations)
        for path, operations in document["paths"].items()
    ]
    wrong = []
    for path in document["paths"]:
        concrete = path.replace("{", "x-").replace("}", "")
        served = {m for pattern, ops in templates if pattern.match(concrete) for m in ops}
        for method in METHODS:
            body = {} if method in ("POST", "PUT", "PATCH") else None
            if method == "POST" and path == "/admin/reload":
                continue  # answers, but reloads
            answer = admin.request(method, concrete, json=body)
            listed = method.lower() in served
            missing = answer.status_code == 405 or (
                answer.status_code == 404 and answer.json()["error"]["code"] == "unknown_url"
            )
            if listed == missing:
                wrong.append((method, path, listed, answer.status_code, answer.text[:200]))
    assert not wrong, wrong
    for (path, method), names in QUERIES.items():
        parameters = document["paths"][path][method].get("parameters", [])
        declared = {p["name"] for p in parameters if p["in"] == "query"}
        assert names <= declared, (path, names - declared)
    # A rotation without a body is a rotation without a grace period: the body is optional.
    rotate = document["paths"]["/admin/keys/{key_id}/rotate"]["post"]
    assert rotate["requestBody"]["required"] is False
    key = admin.post("/admin/keys", json={"name": "rotated"}).json()
    assert admin.post(f"/admin/keys/{key['id']}/rotate").status_code == 201
