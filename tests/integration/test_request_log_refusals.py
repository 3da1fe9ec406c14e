"""Requests refused before the pipeline ran, in the request log (the audit trail).

Each kind of refusal goes over HTTP to a real ``tollway serve`` process on SQLite, with a
hash-chained request log; rows are read back through ``GET /admin/logs``, the reports, the
chain's verification and the database file itself. A second gateway with a low
``refusals_per_second`` shows the bound on a flood.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_request_log import PRICE
from tests.support import CLIENT_KEY, Process, running_gateway, tollway_command, wait_for_ids

UNKNOWN_SECRET = "tw-NeverStoredRefusal-" + uuid.uuid4().hex
"""A key no gateway knows: no part of it may appear in a row, a log line or a metric."""
SECRET_PARTS = (UNKNOWN_SECRET, UNKNOWN_SECRET[3:19], UNKNOWN_SECRET[-16:])

CHAT = {"model": "priced-chat", "messages": [{"role": "user", "content": "hello"}]}


@dataclass(frozen=True)
class Refusing:
    """The module's gateway and the keys made on it."""

    url: str
    process: Process
    store_url: str
    db_path: Path
    user: str
    team: str
    member_key: str
    member_key_id: str
    revoked: tuple[str, str]
    blocked: tuple[str, str]
    expired: tuple[str, str]


def _admin(url: str, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    response = httpx.request(
        method, url + path, json=body, headers={"Authorization": f"Bearer {CLIENT_KEY}"}
    )
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def _key(url: str, **fields: Any) -> tuple[str, str]:
    created = _admin(url, "POST", "/admin/keys", {"name": uuid.uuid4().hex[:8], **fields}, 201)
    return created["id"], created["key"]


def _config(simulator_url: str, store_url: str, **request_log: Any) -> dict[str, Any]:
    openai = {"provider": "openai", "api_base": f"{simulator_url}/v1",
              "api_key": "env:TEST_UPSTREAM_KEY", "price": PRICE}  # fmt: skip
    return {
        "store": {"url": store_url},
        "server": {"max_body_size": 4096},
        "auth": {"reconcile_interval": "1h"},
        "models": [
            {"name": "priced-chat", "deployments": [{**openai, "model": "sim-chat"}]},
            {"name": "priced-embed", "kind": "embedding",
             "deployments": [{**openai, "model": "sim-embed"}]},
        ],
        "telemetry": {"request_log": {"flush_interval": "100ms", **request_log}},
    }  # fmt: skip


@pytest.fixture(scope="module")
def refusing(
    log_dir: Path, simulator_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Refusing]:
    folder = tmp_path_factory.mktemp("refusals")
    store_url = f"sqlite+aiosqlite:///{folder}/tollway.db"
    config = _config(simulator_url, store_url, chain=True, spool_dir=str(folder / "spool"))
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": store_url}
    with running_gateway(log_dir, config, env) as (url, process):
        team = _admin(url, "POST", "/admin/teams", {"name": "audited"}, 201)["id"]
        user = _admin(url, "POST", "/admin/users", {"email": "ann@example.com"}, 201)["id"]
        _admin(url, "POST", f"/admin/teams/{team}/members", {"user_id": user}, 201)
        owned = {"user_id": user, "team_id": team, "tags": {"service": "batch"}}
        member_key_id, member_key = _key(url, **owned)
        revoked, blocked = _key(url, **owned), _key(url, **owned)
        _admin(url, "POST", f"/admin/keys/{revoked[0]}/revoke")
        _admin(url, "POST", f"/admin/keys/{blocked[0]}/block")
        expired = _key(url, **owned, expires_at="2020-01-01T00:00:00Z")  # ended already
        yield Refusing(
            url, process, store_url, folder / "tollway.db", user, team, member_key,
            member_key_id, revoked, blocked, expired,
        )  # fmt: skip


def _records(url: str, request_ids: set[str]) -> dict[str, Any]:
    """The request log records of ``request_ids``, once all are written."""
    path = "/admin/logs?limit=1000&since=1h"
    return wait_for_ids(lambda: _admin(url, "GET", path)["data"], request_ids, "logged")


def _send(url: str, path: str, rid: str, headers: dict[str, str], body: Any) -> httpx.Response:
    headers = {"x-request-id": rid, **headers}
    if isinstance(body, bytes):
        return httpx.post(url + path, content=body, headers=headers)
    return httpx.post(url + path, json=body, headers=headers)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# (name, path, credential, body, status, error code, whose row, model recorded)
CASES: list[tuple[str, str, str, Any, int, str | None, str, str]] = [
    ("no key", "/v1/chat/completions", "none", CHAT, 401, "missing_api_key", "nobody", ""),
    ("unknown key", "/v1/chat/completions", "unknown", CHAT, 401, "invalid_api_key", "nobody",
     ""),
    ("not bearer", "/v1/chat/completions", "basic", CHAT, 401, "invalid_authorization",
     "nobody", ""),
    ("revoked key", "/v1/chat/completions", "revoked", CHAT, 401, "key_revoked", "revoked", ""),
    ("blocked key", "/v1/chat/completions", "blocked", CHAT, 401, "key_blocked", "blocked", ""),
    ("expired key", "/v1/chat/completions", "expired", CHAT, 401, "key_expired", "expired", ""),
    ("not json", "/v1/chat/completions", "member", b'{"model": "priced-chat",', 400, None,
     "member", ""),
    ("missing field", "/v1/chat/completions", "member", {"model": "priced-chat"}, 400, None,
     "member", "priced-chat"),
    ("too large", "/v1/chat/completions", "member",
     {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}, 413, None, "member", ""),
    ("messages without key", "/v1/messages", "none",
     {"model": "priced-chat", "max_tokens": 5, "messages": CHAT["messages"]}, 401,
     "missing_api_key", "nobody", ""),
    ("responses bad field", "/v1/responses", "member", {"model": "priced-chat"}, 400, None,
     "member", "priced-chat"),
    ("embeddings revoked", "/v1/embeddings", "revoked", {"model": "priced-embed", "input": "x"},
     401, "key_revoked", "revoked", ""),
]  # fmt: skip
ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/messages": "messages",
             "/v1/responses": "responses", "/v1/embeddings": "embeddings"}  # fmt: skip


@pytest.mark.parametrize(
    ("path", "credential", "body", "status", "code", "whose", "model"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_a_request_refused_before_the_pipeline_is_in_the_request_log(
    refusing: Refusing,
    path: str,
    credential: str,
    body: Any,
    status: int,
    code: str | None,
    whose: str,
    model: str,
) -> None:
    keys = {"member": (refusing.member_key_id, refusing.member_key), "revoked": refusing.revoked,
            "blocked": refusing.blocked, "expired": refusing.expired}  # fmt: skip
    headers = {
        "none": {},
        "unknown": _bearer(UNKNOWN_SECRET),
        "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
        **{name: _bearer(key) for name, (_, key) in keys.items()},
    }[credential]
    rid = f"refused-{uuid.uuid4().hex[:12]}"
    response = _send(refusing.url, path, rid, headers, body)
    assert response.status_code == status, response.text

    row = _records(refusing.url, {rid})[rid]
    assert (row["status"], row["error_code"]) == (status, code)
    assert (row["endpoint"], row["model"]) == (ENDPOINTS[path], model)
    assert row["source_ip"] == "127.0.0.1"
    if whose == "nobody":
        assert [row[k] for k in ("principal_kind", "key_id", "user_id", "team_id")] == [None] * 4
    else:
        assert (row["principal_kind"], row["key_id"]) == ("key", keys[whose][0])
        assert (row["user_id"], row["team_id"], row["service"]) == (
            refusing.user, refusing.team, "batch",
        )  # fmt: skip
    # Refused before any call: no deployment, attempt, token, cost or body.
    assert (row["served_model"], row["deployment_id"], row["provider"]) == (None, None, None)
    assert (row["attempts"], row["fallbacks"], row["cost_micros"], row["cost_usd"]) == (0, 0, 0, 0)
    assert row["input_tokens"] == row["output_tokens"] == row["cached_tokens"] == 0
    assert row["prompt"] is None and row["response"] is None
    assert row["hash"] is not None  # in the module's hash chain


def _hang_up_mid_body(url: str, rid: str, headers: dict[str, str], chunked: bool) -> None:
    """Send a request's head and the start of its body, then close the connection."""
    host, port = url.split("//", 1)[1].split(":")
    framing = "Transfer-Encoding: chunked" if chunked else "Content-Length: 3000"
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    start = b'{"model": "priced-chat", "messages": [{"role": "user", "content": "'
    body = b"%x\r\n%s\r\n" % (len(start), start) if chunked else start
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nx-request-id: {rid}\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n{head}\r\n".encode()
            + body
        )
        time.sleep(0.2)  # the gateway is reading the body when the client goes


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_client_that_hangs_up_while_sending_its_body_is_499_not_a_server_error(
    refusing: Refusing, chunked: bool
) -> None:
    # A client that left while its body was on its way (a user pressing stop during a large
    # upload, a timeout on its side) was logged as the gateway failing, with a traceback, and
    # recorded as a 500: in every 5xx dashboard and alert, as if the gateway were broken.
    rid = f"hung-up-{uuid.uuid4().hex[:12]}"
    _hang_up_mid_body(refusing.url, rid, _bearer(refusing.member_key), chunked)
    row = _records(refusing.url, {rid})[rid]
    assert (row["status"], row["error_code"]) == (499, "client_disconnected")
    assert (row["principal_kind"], row["key_id"]) == ("key", refusing.member_key_id)
    assert (row["endpoint"], row["model"], row["attempts"]) == ("chat", "", 0)
    server_errors = _admin(refusing.url, "GET", "/admin/logs?status=5xx&since=1h")["data"]
    assert rid not in {r["request_id"] for r in server_errors}
    assert f"request {rid} failed unexpectedly" not in refusing.process.output()


def test_an_unknown_keys_secret_is_never_in_the_row_the_logs_or_the_metrics(
    refusing: Refusing,
) -> None:
    rids = {f"secret-{n}-{uuid.uuid4().hex[:8]}" for n in range(3)}
    for rid in rids:
        headers = (
            _bearer(UNKNOWN_SECRET) if rid.startswith("secret-0") else {"x-api-key": UNKNOWN_SECRET}
        )
        assert _send(refusing.url, "/v1/chat/completions", rid, headers, CHAT).status_code == 401
    # The admin API's own refusals stay out of the request log.
    admin_rid = f"admin-{uuid.uuid4().hex[:8]}"
    admin = httpx.get(refusing.url + "/admin/keys",
                      headers={**_bearer(UNKNOWN_SECRET), "x-request-id": admin_rid})  # fmt: skip
    assert admin.status_code == 401

    rows = _records(refusing.url, rids)
    assert {row["error_code"] for row in rows.values()} == {"invalid_api_key"}
    exported = httpx.get(
        refusing.url + "/admin/logs?format=jsonl&since=1h", headers=_bearer(CLIENT_KEY)
    ).text
    assert admin_rid not in exported
    metrics = httpx.get(refusing.url + "/metrics").text
    stored = b"".join(path.read_bytes() for path in refusing.db_path.parent.glob("tollway.db*"))
    for where, text in (("export", exported), ("metrics", metrics),
                        ("gateway log", refusing.process.output())):  # fmt: skip
        for part in SECRET_PARTS:
            assert part not in text, f"{where} holds the unknown key's secret"
    for part in SECRET_PARTS:
        assert part.encode() not in stored, "the store holds the unknown key's secret"


def _requests_total(url: str, **labels: str) -> float:
    """``tollway_requests_total`` summed over the series with ``labels``."""
    total = 0.0
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("tollway_requests_total{"):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(found.get(name) == value for name, value in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_request_refused_before_the_pipeline_is_counted_in_the_metrics(
    refusing: Refusing,
) -> None:
    # tollway_requests_total counts every request by status, but a request refused before the
    # pipeline (a revoked key, a body that does not parse) passed no stage and was counted
    # nowhere: a client whose key was revoked failed every call while the error rate in
    # /metrics stayed flat.
    cases = [  # (credential, body, status, the model label)
        (_bearer(refusing.revoked[1]), CHAT, 401, "(unknown)"),
        (_bearer(UNKNOWN_SECRET), CHAT, 401, "(unknown)"),
        (_bearer(refusing.member_key), {"model": "priced-chat"}, 400, "priced-chat"),
        (_bearer(refusing.member_key), {"model": "invented-model-name"}, 400, "(unknown)"),
    ]
    before = {
        (status, model): _requests_total(refusing.url, status=str(status), model=model)
        for _, _, status, model in cases
    }
    for headers, body, status, _ in cases:
        sent = _send(refusing.url, "/v1/chat/completions", uuid.uuid4().hex, headers, body)
        assert sent.status_code == status, sent.text
    grown = {
        key: _requests_total(refusing.url, status=str(key[0]), model=key[1]) - count
        for key, count in before.items()
    }
    assert grown == {(401, "(unknown)"): 2, (400, "priced-chat"): 1, (400, "(unknown)"): 1}
    metrics = httpx.get(refusing.url + "/metrics").text
    assert "invented-model-name" not in metrics  # a client's text is no label
    team = {"team": refusing.team, "status": "401"}
    assert _requests_total(refusing.url, **team) >= 1  # the revoked key's team


def test_refusals_are_chained_and_verify_and_cost_nothing_in_the_reports(
    refusing: Refusing,
) -> None:
    def spend() -> dict[str, Any]:
        report = _admin(refusing.url, "GET", "/admin/reports/usage?group_by=key,status")
        return {(r["key"], r["status"]): r for r in report["data"]}

    answered = f"paid-{uuid.uuid4().hex[:8]}"
    paid = _send(refusing.url, "/v1/chat/completions", answered,
                 _bearer(refusing.member_key), CHAT)  # fmt: skip
    assert paid.status_code == 200
    _records(refusing.url, {answered})
    before = spend()
    rids = {f"tried-{n}-{uuid.uuid4().hex[:8]}" for n in range(3)}
    for rid in rids:
        sent = _send(refusing.url, "/v1/chat/completions", rid, _bearer(refusing.revoked[1]), CHAT)
        assert sent.status_code == 401
    _records(refusing.url, rids)
    after = spend()

    # Who tried the revoked key, how often: in the report, at no cost.
    tried = after[(refusing.revoked[0], 401)]
    assert tried["requests"] - before.get((refusing.revoked[0], 401), {"requests": 0})[
        "requests"
    ] == len(rids)
    assert tried["cost_usd"] == 0 and tried["input_tokens"] == 0
    assert sum(r["cost_usd"] for r in after.values()) == sum(r["cost_usd"] for r in before.values())
    assert after[(refusing.member_key_id, 200)]["cost_usd"] > 0

    verified = subprocess.run(
        tollway_command("logs", "verify", "--store-url", refusing.store_url),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert re.search(r": OK \(seq 1\.\.\d+", verified.stdout), verified.stdout


def test_a_flood_of_refusals_is_recorded_up_to_its_rate_and_counted_beyond(
    log_dir: Path, simulator_url: str, tmp_path: Path
) -> None:
    store_url = f"sqlite+aiosqlite:///{tmp_path}/flood.db"
    # 1 a second of a kind: bursts of 10 rows, the rest counted.
    config = _config(simulator_url, store_url, refusals_per_second=1)
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": store_url}
    with running_gateway(log_dir, config, env) as (url, _):
        started = time.monotonic()
        with httpx.Client() as client:
            for n in range(200):
                headers = {**_bearer(UNKNOWN_SECRET), "x-request-id": f"flood-{n}"}
                sent = client.post(url + "/v1/chat/completions", json=CHAT, headers=headers)
                assert sent.status_code == 401
        seconds = time.monotonic() - started
        other = f"other-kind-{uuid.uuid4().hex[:8]}"
        assert _send(url, "/v1/chat/completions", other, {}, CHAT).status_code == 401
        _records(url, {other})  # another kind has a bucket of its own
        time.sleep(0.5)
        logged = _admin(url, "GET", "/admin/logs?limit=1000&status=401")["data"]
        flood = [row for row in logged if row["error_code"] == "invalid_api_key"]
        metrics = httpx.get(url + "/metrics").text

    counted = re.search(
        r'tollway_request_log_refusals_suppressed_total\{code="invalid_api_key",status="401"\} '
        r"(\d+)",
        metrics,
    )
    assert counted is not None, metrics
    assert 10 <= len(flood) <= 10 + seconds + 1
    assert len(flood) + int(counted.group(1)) == 200  # every refusal recorded or counted
    assert 'code="missing_api_key"' not in metrics


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", CHAT),
        ("/v1/messages", {"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/embeddings", {"input": "hi"}),
        ("/v1/responses", {"input": "hi"}),
    ],
    ids=["chat", "messages", "embeddings", "responses"],
)
@pytest.mark.parametrize("whole", [True, False], ids=["unknown-model", "refused-body"])
def test_a_key_pasted_as_the_model_is_not_kept_in_the_request_log(
    refusing: Refusing, path: str, body: dict[str, Any], whole: bool
) -> None:
    # The model a client asks for is kept as it typed it, a key pasted there too, for the
    # team's viewers and the reports to read: a model no group has (404, through the
    # pipeline), or a body refused before it (400, the model all it holds).
    key = refusing.member_key
    rid = f"model-key-{uuid.uuid4().hex[:8]}"
    sent = {**body, "model": key} if whole else {"model": key}
    answer = _send(refusing.url, path, rid, _bearer(key), sent)
    assert answer.status_code == (404 if whole else 400), answer.text
    row = _records(refusing.url, {rid})[rid]
    assert row["model"] == "[SECRET]"
    reports = _admin(refusing.url, "GET", "/admin/reports/usage?group_by=model&since=1h")
    stored = b"".join(path.read_bytes() for path in refusing.db_path.parent.glob("tollway.db*"))
    for part in (key, key[3:19], key[-16:]):
        assert part not in str(reports), "the reports hold the key"
        assert part.encode() not in stored, "the store holds the key"
