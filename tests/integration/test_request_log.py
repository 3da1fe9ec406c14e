"""The request log through a real gateway process: what each request leaves, the admin API,
the CLI, bodies and redaction, retention and the hash chain.

Requests go over HTTP to a ``tollway serve`` process on SQLite and from there to the
simulated provider; records are read back through ``GET /admin/logs`` (and the database
itself where a test must tamper with it). The store outage tests are in
test_request_log_outage.py.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import os
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import httpx
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, Process, running_gateway, tollway_command
from tollway.admin.logs import EXPORT_COLUMNS
from tollway.store import Store
from tollway.telemetry.spool import encode_row

PRICE = {"input": 1000.0, "output": 4000.0}  # USD per 1M tokens: whole micro-dollars a token


@dataclass(frozen=True)
class Logged:
    """The module's gateway: its URL, its SQLite file and the teams made before it started."""

    url: str
    store_url: str
    db_path: Path
    spool: Path
    bodies_team: str
    quiet_team: str


async def _teams(store_url: str) -> tuple[str, str]:
    store = Store(store_url)
    await store.open(migrate=True)
    try:
        bodies = await store.teams.create("bodies-team")
        quiet = await store.teams.create("quiet-team")
    finally:
        await store.close()
    return bodies.id, quiet.id


def log_config(simulator_url: str, store_url: str, **request_log: Any) -> dict[str, Any]:
    """Models on the simulator (priced chat, embeddings, Anthropic, one for upstream
    errors) and a request log that flushes every 100 ms."""
    base, key = f"{simulator_url}/v1", "env:TEST_UPSTREAM_KEY"
    openai = {"provider": "openai", "api_base": base, "api_key": key, "price": PRICE}
    return {
        "store": {"url": store_url},
        "upstream": {"forward_headers": ["x-sim-*"]},
        "auth": {"reconcile_interval": "1h"},
        "models": [
            {"name": "priced-chat", "deployments": [{**openai, "model": "sim-chat"}]},
            {"name": "err-chat", "deployments": [{**openai, "model": "sim-chat"}]},
            {"name": "priced-embed", "kind": "embedding",
             "deployments": [{**openai, "model": "sim-embed"}]},
            {"name": "priced-claude", "deployments": [{"provider": "anthropic",
             "model": "sim-chat", "api_base": simulator_url, "api_key": key, "price": PRICE}]},
        ],
        "telemetry": {"request_log": {"flush_interval": "100ms", **request_log}},
    }  # fmt: skip


@pytest.fixture(scope="module")
def logged(
    log_dir: Path, simulator_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Logged]:
    folder = tmp_path_factory.mktemp("request-log")
    store_url = f"sqlite+aiosqlite:///{folder}/tollway.db"
    bodies_team, quiet_team = asyncio.run(_teams(store_url))
    config = log_config(
        simulator_url, store_url, chain=True, purge_interval="1s",
        spool_dir=str(folder / "spool"), bodies={"teams": [bodies_team]},
    )  # fmt: skip
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": store_url}
    with running_gateway(log_dir, config, env) as (url, _):
        yield Logged(url, store_url, folder / "tollway.db", folder / "spool", bodies_team,
                     quiet_team)  # fmt: skip


def auth(key: str = CLIENT_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def admin(url: str, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    response = httpx.request(method, url + path, json=body, headers=auth())
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def new_key(url: str, **fields: Any) -> tuple[str, str]:
    """A fresh virtual key: (its id, the key itself)."""
    body = {"name": f"log-{uuid.uuid4().hex[:6]}", **fields}
    created = admin(url, "POST", "/admin/keys", body, 201)
    return created["id"], created["key"]


def chat(
    url: str, key: str = CLIENT_KEY, model: str = "priced-chat", **extra: Any
) -> httpx.Response:
    """A chat completion with a request id of our own (``x-request-id``)."""
    headers = {**auth(key), "x-request-id": f"t-{uuid.uuid4().hex[:16]}"}
    headers.update(extra.pop("headers", {}))
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=30)


def logs(url: str, as_key: str = CLIENT_KEY, **params: str) -> httpx.Response:
    """``GET /admin/logs`` with ``params``, as the caller with key ``as_key``."""
    return httpx.get(url + "/admin/logs", params=params, headers=auth(as_key), timeout=30)


def wait_for(url: str, request_ids: Iterable[str], timeout: float = 15.0) -> dict[str, Any]:
    """The records of ``request_ids`` once all are written (read with the admin key)."""
    wanted = set(request_ids)
    deadline = time.monotonic() + timeout
    while True:
        rows = logs(url, limit="1000", since="10m").json()["data"]
        found = {row["request_id"]: row for row in rows if row["request_id"] in wanted}
        if len(found) == len(wanted) or time.monotonic() > deadline:
            assert set(found) == wanted, f"not logged: {wanted - set(found)}"
            return found
        time.sleep(0.1)


def micros(cost: str) -> int:
    return round(float(cost) * 1_000_000)


def test_cache_writes_are_logged_and_reported_by_their_time_to_live(logged: Logged) -> None:
    # Anthropic bills prompt tokens written to its cache above plain input (1.25x for five
    # minutes, 2x for an hour): the log kept cache reads only, so a spend report could not
    # explain such a bill.
    key_id, key = new_key(logged.url)
    claude = anthropic.Anthropic(base_url=logged.url, api_key=key, max_retries=0)
    messages = [{"role": "user", "content": "a long shared context " * 50}]
    answers = []
    for ttl in ("5m", "1h", None):
        control = {} if ttl is None else {"cache_control": {"type": "ephemeral", "ttl": ttl}}
        raw = claude.messages.with_raw_response.create(
            model="priced-claude", messages=messages, max_tokens=10, extra_body=control,
            extra_headers={"x-request-id": f"t-cache-{uuid.uuid4().hex[:12]}"},
        )  # fmt: skip
        answers.append((raw.headers["x-request-id"], raw.parse().usage))
    records = wait_for(logged.url, [rid for rid, _ in answers])
    (five, five_usage), (hour, hour_usage), (plain, _) = answers
    written = five_usage.cache_creation_input_tokens
    assert written and written == hour_usage.cache_creation_input_tokens
    assert [
        (records[rid]["cache_write_tokens"], records[rid]["cache_write_1h_tokens"])
        for rid in (five, hour, plain)
    ] == [(written, 0), (written, written), (0, 0)]
    assert records[hour]["input_tokens"] == written  # every prompt token, writes included
    report = admin(logged.url, "GET", f"/admin/reports/usage?group_by=key&key={key_id}")
    (row,) = report["data"]
    assert (row["requests"], row["cache_write_tokens"], row["cache_write_1h_tokens"]) == (
        3, 2 * written, written,
    )  # fmt: skip
    exported = list(csv.DictReader(io.StringIO(logs(logged.url, key=key_id, format="csv").text)))
    assert sorted(int(r["cache_write_tokens"]) for r in exported) == [0, written, written]


def test_an_answer_without_usage_is_costed_from_its_content(logged: Logged) -> None:
    # An OpenAI-compatible server that leaves out usage: the client gets the answer as it
    # came, and the record the estimate (the answer's text, about 4 characters a token).
    answer = chat(logged.url, headers={"x-sim-usage": "omit"})
    assert answer.status_code == 200 and "usage" not in answer.json()
    text = answer.json()["choices"][0]["message"]["content"]
    record = wait_for(logged.url, [answer.headers["x-request-id"]])[answer.headers["x-request-id"]]
    assert record["usage_estimated"] is True
    assert record["output_tokens"] == -(-len(text) // 4) > 0
    assert record["input_tokens"] > 0
    assert record["cost_micros"] == micros(answer.headers["x-tollway-cost-usd"]) > 0


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_tool_calls_without_usage_are_costed_complete_or_streamed(logged: Logged) -> None:
    # A tool call's name and arguments are what the model generated: without usage they are
    # the estimate, whether the answer came whole or as a stream.
    ask = {"messages": [{"role": "user", "content": "weather in Paris?"}], "tools": [WEATHER]}
    omit = {"x-sim-usage": "omit"}
    whole = chat(logged.url, headers=omit, **ask)
    assert whole.status_code == 200 and "usage" not in whole.json()
    (call,) = whole.json()["choices"][0]["message"]["tool_calls"]
    whole_chars = len(call["function"]["name"]) + len(call["function"]["arguments"])
    streamed = chat(logged.url, headers=omit, stream=True, **ask)
    assert streamed.status_code == 200
    events = [
        json.loads(line[len("data: ") :])
        for line in streamed.text.splitlines()
        if line.startswith("data: {")
    ]
    assert all("usage" not in event or event["usage"] is None for event in events)
    deltas = [
        piece
        for event in events
        for choice in event["choices"]
        for piece in choice["delta"].get("tool_calls") or []
    ]
    assert deltas
    stream_chars = sum(
        len(d["function"].get("name") or "") + len(d["function"].get("arguments") or "")
        for d in deltas
    )
    rids = [whole.headers["x-request-id"], streamed.headers["x-request-id"]]
    records = wait_for(logged.url, rids)
    for rid, chars in zip(rids, (whole_chars, stream_chars), strict=True):
        assert records[rid]["usage_estimated"] is True
        assert records[rid]["output_tokens"] == -(-chars // 4) > 0


def test_each_kind_of_request_leaves_the_right_record(logged: Logged) -> None:
    url = logged.url
    plain = chat(url)
    assert plain.status_code == 200
    streamed = chat(url, stream=True, stream_options={"include_usage": True})
    assert streamed.status_code == 200
    stream_usage = [json.loads(line[6:]) for line in streamed.text.splitlines()
                    if line.startswith("data: {")][-1]["usage"]  # fmt: skip
    (stream_cost,) = [line.split("=", 1)[1] for line in streamed.text.splitlines()
                      if line.startswith(": x-tollway-cost-usd=")]  # fmt: skip
    embedded = httpx.post(
        url + "/v1/embeddings", json={"model": "priced-embed", "input": ["a", "b c"]},
        headers={**auth(), "x-request-id": "t-embed-" + uuid.uuid4().hex[:8]},
    )  # fmt: skip
    assert embedded.status_code == 200
    failed = chat(url, model="err-chat", headers={"x-sim-fault": "status:500"})
    assert failed.status_code == 502
    unknown = chat(url, model="no-such-model")
    assert unknown.status_code == 404
    claude = httpx.post(
        url + "/v1/messages",
        json={"model": "priced-claude", "max_tokens": 20,
              "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01",
                 "x-request-id": "t-claude-" + uuid.uuid4().hex[:8]},
    )  # fmt: skip
    assert claude.status_code == 200
    responses = httpx.post(
        url + "/v1/responses", json={"model": "priced-chat", "input": "hi"},
        headers={**auth(), "x-request-id": "t-responses-" + uuid.uuid4().hex[:8]},
    )  # fmt: skip
    assert responses.status_code == 200
    answers = (plain, streamed, embedded, failed, unknown, claude, responses)
    rid = [answer.headers["x-request-id"] for answer in answers]
    records = wait_for(url, rid)

    usage = plain.json()["usage"]
    record = records[rid[0]]
    assert (record["endpoint"], record["model"], record["served_model"]) == (
        "chat", "priced-chat", "sim-chat",
    )  # fmt: skip
    assert (record["status"], record["error_code"], record["stream"]) == (200, None, False)
    assert (record["input_tokens"], record["output_tokens"]) == (
        usage["prompt_tokens"], usage["completion_tokens"],
    )  # fmt: skip
    assert record["cost_micros"] == micros(plain.headers["x-tollway-cost-usd"]) > 0
    assert record["deployment_id"] == plain.headers["x-tollway-deployment"]
    assert (record["provider"], record["attempts"], record["fallbacks"]) == ("openai", 1, 0)
    assert (record["principal_kind"], record["key_id"]) == ("key", "bootstrap-admin")
    assert record["latency_ms"] > 0 and record["ttft_ms"] is None
    assert record["usage_estimated"] is False and record["prompt"] is None

    record = records[rid[1]]
    assert (record["stream"], record["status"]) == (True, 200)
    assert (record["input_tokens"], record["output_tokens"]) == (
        stream_usage["prompt_tokens"], stream_usage["completion_tokens"],
    )  # fmt: skip
    assert record["cost_micros"] == micros(stream_cost) > 0
    assert 0 < record["ttft_ms"] <= record["latency_ms"]

    record = records[rid[2]]
    assert (record["endpoint"], record["model"], record["served_model"]) == (
        "embeddings", "priced-embed", "sim-embed",
    )  # fmt: skip
    assert record["input_tokens"] == embedded.json()["usage"]["prompt_tokens"] > 0
    assert record["cost_micros"] == micros(embedded.headers["x-tollway-cost-usd"]) > 0

    record = records[rid[3]]
    assert (record["status"], record["error_code"]) == (502, failed.json()["error"]["code"])
    assert (record["deployment_id"], record["attempts"]) == (
        failed.headers["x-tollway-deployment"], 1,
    )  # fmt: skip

    record = records[rid[4]]
    assert (record["status"], record["model"], record["served_model"]) == (
        404, "no-such-model", None,
    )  # fmt: skip
    assert (record["attempts"], record["cost_micros"], record["input_tokens"]) == (0, 0, 0)
    assert record["error_code"] == unknown.json()["error"]["code"]

    record = records[rid[5]]
    assert (record["endpoint"], record["provider"], record["status"]) == (
        "messages", "anthropic", 200,
    )  # fmt: skip
    # Sent as the upstream's bytes and parsed only for its usage: still fully accounted.
    claude_usage = claude.json()["usage"]
    assert (record["input_tokens"], record["output_tokens"]) == (
        claude_usage["input_tokens"], claude_usage["output_tokens"],
    )  # fmt: skip
    assert record["cost_micros"] == micros(claude.headers["x-tollway-cost-usd"]) > 0

    record = records[rid[6]]
    assert (record["endpoint"], record["provider"], record["status"]) == (
        "responses", "openai", 200,
    )  # fmt: skip
    assert record["output_tokens"] == responses.json()["usage"]["output_tokens"] > 0


async def _leave_after_first_event(url: str, request_id: str) -> None:
    body = {"model": "priced-chat", "stream": True, "max_tokens": 200,
            "messages": [{"role": "user", "content": "a long story"}]}  # fmt: skip
    headers = {**auth(), "x-request-id": request_id, "x-sim-tpot-ms": "20"}
    async with aiohttp.ClientSession() as session:
        response = await session.post(url + "/v1/chat/completions", json=body, headers=headers)
        assert response.status == 200
        await response.content.readline()
        response.close()  # the client walks away after the first event


def test_a_client_leaving_mid_stream_is_499_not_a_server_error(logged: Logged) -> None:
    """A user pressing stop is not a 5xx: it counted in every 5xx dashboard and alert."""
    request_id = f"t-left-{uuid.uuid4().hex[:12]}"
    asyncio.run(_leave_after_first_event(logged.url, request_id))
    record = wait_for(logged.url, [request_id])[request_id]
    assert (record["status"], record["error_code"]) == (499, "client_disconnected")
    assert (record["stream"], record["attempts"]) == (True, 1)
    assert record["output_tokens"] > 0 and record["cost_micros"] > 0  # what was generated
    server_errors = logs(logged.url, status="5xx", since="10m").json()["data"]
    assert request_id not in {row["request_id"] for row in server_errors}
    metrics = httpx.get(logged.url + "/metrics").text
    assert 'model="priced-chat",provider="openai",status="499"' in metrics


def test_admin_api_filters_pages_and_exports(logged: Logged) -> None:
    url = logged.url
    red = admin(url, "POST", "/admin/teams", {"name": f"red-{uuid.uuid4().hex[:6]}"}, 201)["id"]
    blue = admin(url, "POST", "/admin/teams", {"name": f"blue-{uuid.uuid4().hex[:6]}"}, 201)["id"]
    red_key_id, red_key = new_key(url, team_id=red, tags={"service": "batch-job"})
    blue_key_id, blue_key = new_key(url, team_id=blue)
    before = dt.datetime.now(dt.UTC)
    sent = [chat(url, red_key) for _ in range(3)]
    sent += [
        httpx.post(url + "/v1/embeddings", json={"model": "priced-embed", "input": "x"},
                   headers=auth(blue_key))
        for _ in range(2)
    ]  # fmt: skip
    sent.append(chat(url, blue_key, model="err-chat", headers={"x-sim-fault": "status:500"}))
    wait_for(url, [answer.headers["x-request-id"] for answer in sent])
    red_ids = [answer.headers["x-request-id"] for answer in sent[:3]]

    def ids(**params: str) -> list[str]:
        response = logs(url, **params)
        assert response.status_code == 200, response.text
        return [row["request_id"] for row in response.json()["data"]]

    assert ids(team=red) == red_ids[::-1]  # newest first
    assert len(ids(key=blue_key_id)) == 3
    assert len(ids(team=blue, model="priced-embed")) == 2
    assert len(ids(key=blue_key_id, status="5xx")) == 1
    assert len(ids(key=blue_key_id, status="ok")) == 2
    assert ids(team=red, until=before.isoformat()) == []
    assert len(ids(team=red, since=before.isoformat(), until="2999-01-01T00:00:00")) == 3
    assert ids(key=red_key_id) == ids(team=red)
    assert {row["service"] for row in logs(url, team=red).json()["data"]} == {"batch-job"}

    first = logs(url, team=red, limit="2").json()
    second = logs(url, team=red, limit="2", cursor=first["next_cursor"]).json()
    assert [r["request_id"] for r in first["data"] + second["data"]] == red_ids[::-1]
    assert second["next_cursor"] is None
    for bad in ({"status": "teapot"}, {"since": "yesterday"}, {"format": "xml"},
                {"limit": "0"}, {"cursor": "zzz"}):  # fmt: skip
        response = logs(url, **bad)
        assert response.status_code == 400 and "error" in response.json()

    exported = logs(url, team=red, format="csv")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    assert [row["request_id"] for row in rows] == red_ids[::-1]
    costs = {r.headers["x-request-id"]: r.headers["x-tollway-cost-usd"] for r in sent[:3]}
    assert all(int(row["cost_micros"]) == micros(costs[row["request_id"]]) for row in rows)
    assert {row["stream"] for row in rows} == {"false"}

    lines = logs(url, team=blue, format="jsonl").text.splitlines()
    assert len(lines) == 3
    assert {json.loads(line)["key_id"] for line in lines} == {blue_key_id}

    cli_env = {**os.environ, "TOLLWAY_URL": url, "TOLLWAY_ADMIN_KEY": CLIENT_KEY}
    listed = subprocess.run(
        tollway_command("logs", "list", "--team", red, "--json"),
        env=cli_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert [row["request_id"] for row in json.loads(listed.stdout)["data"]] == red_ids[::-1]
    table = subprocess.run(
        tollway_command("logs", "list", "--team", red), env={**cli_env, "COLUMNS": "160"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert table.stdout.count("priced-chat → sim-chat") == 3, table.stdout
    assert all(rid in table.stdout for rid in red_ids)
    export = subprocess.run(
        tollway_command("logs", "export", "--format", "jsonl", "--key", blue_key_id),
        env=cli_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    assert len(export.stdout.splitlines()) == 3


def test_text_a_client_chose_is_no_spreadsheet_formula_in_a_csv_export(logged: Logged) -> None:
    """A model name or request id is the client's text: in a CSV opened in a spreadsheet,
    ``=``, ``+``, ``-`` or ``@`` first would make it a formula (a link, a command). The CSV
    exports (logs and reports) quote it as text; JSON keeps it as it came."""
    url = logged.url
    key_id, key = new_key(url)
    sent = {
        '=HYPERLINK("http://evil.example","x")': "+1+1",
        "@SUM(A1:A9)": "-2+3",
        "\t=1+1": "plain-id",
    }
    for model, request_id in sent.items():
        assert chat(url, key, model=model, headers={"x-request-id": request_id}).status_code == 404
    wait_for(url, sent.values())

    exported = list(csv.DictReader(io.StringIO(logs(url, key=key_id, format="csv").text)))
    assert {(row["model"], row["request_id"]) for row in exported} == {
        ('\'=HYPERLINK("http://evil.example","x")', "'+1+1"),
        ("'@SUM(A1:A9)", "'-2+3"),
        ("'\t=1+1", "plain-id"),
    }
    assert {row["status"] for row in exported} == {"404"}  # numbers are left as they are
    lines = logs(url, key=key_id, format="jsonl").text.splitlines()
    assert {json.loads(line)["model"] for line in lines} == set(sent)

    report = httpx.get(
        url + "/admin/reports/usage", params={"group_by": "model", "key": key_id, "format": "csv"},
        headers=auth(), timeout=30,
    )  # fmt: skip
    assert report.status_code == 200, report.text
    models = {row["model"]: row for row in csv.DictReader(io.StringIO(report.text))}
    assert set(models) == {"'" + model for model in sent}
    assert {row["requests"] for row in models.values()} == {"1"}


def test_the_cli_tables_show_a_clients_text_as_it_is_not_as_markup(logged: Logged) -> None:
    """Rich reads ``[...]`` in a cell as markup: a model named ``[/x]`` made ``tollway logs
    list`` and ``tollway report`` fail with a MarkupError, and ``[link=...]`` in a request
    id turned into a link in the admin's terminal."""
    url = logged.url
    key_id, key = new_key(url)
    model, request_id = "[/oops]", "[link=http://evil.example]x[/link]"
    assert chat(url, key, model=model, headers={"x-request-id": request_id}).status_code == 404
    wait_for(url, [request_id])
    env = {**os.environ, "TOLLWAY_URL": url, "TOLLWAY_ADMIN_KEY": CLIENT_KEY, "COLUMNS": "200"}
    shown = {}
    commands = (("logs", "list", "--key", key_id), ("report", "--by", "model", "--model", model))
    for command in commands:
        done = subprocess.run(
            tollway_command(*command), env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        shown[command[0]] = done.stdout
    assert model in shown["logs"] and request_id in shown["logs"], shown["logs"]
    assert model in shown["report"], shown["report"]


def test_a_cursor_out_of_range_is_a_400_not_a_500(logged: Logged) -> None:
    """A cursor is the client's text: one whose time or id is past what the store holds was
    a 500 and a traceback in the gateway's log (an OverflowError), for the request log and
    the admin audit trail alike."""
    huge = "9" * 20
    for path, cursor in (
        ("/admin/logs", f"{huge}.1"), ("/admin/logs", f"-{huge}.1"),
        ("/admin/logs", f"1.{huge}"), ("/admin/audit", huge), ("/admin/audit", f"-{huge}"),
    ):  # fmt: skip
        response = httpx.get(logged.url + path, params={"cursor": cursor}, headers=auth())
        assert response.status_code == 400, (path, cursor, response.text)
        assert "cursor" in response.json()["error"]["message"]


def test_a_member_reads_only_their_own_records(logged: Logged) -> None:
    url = logged.url
    email = f"m-{uuid.uuid4().hex[:6]}@example.com"
    user = admin(url, "POST", "/admin/users", {"email": email, "role": "member"}, 201)
    member_key_id, member_key = new_key(url, user_id=user["id"])
    mine = [chat(url, member_key) for _ in range(2)]
    others = [chat(url) for _ in range(2)]
    wait_for(url, [r.headers["x-request-id"] for r in mine + others])
    seen = logs(url, member_key, limit="1000").json()["data"]
    assert {row["request_id"] for row in seen} == {r.headers["x-request-id"] for r in mine}
    assert {row["key_id"] for row in seen} == {member_key_id}
    # Filters cannot widen what a member sees.
    assert logs(url, member_key, key="bootstrap-admin").json()["data"] == []
    exported = logs(url, member_key, format="jsonl").text.splitlines()
    assert {json.loads(line)["key_id"] for line in exported} == {member_key_id}
    assert logs(url, "tw-not-a-real-key-000000000000000000000000000").status_code == 401
    # The report reads what the log shows: it counted only the caller's teams' rows, so a
    # member's key of no team read its requests in the log and a report of nothing.
    for params in ({"group_by": "key"}, {"group_by": "key", "key": member_key_id}):
        report = httpx.get(
            url + "/admin/reports/usage", params=params, headers=auth(member_key), timeout=30
        ).json()["data"]
        assert [(row["key"], row["requests"]) for row in report] == [(member_key_id, 2)]
        assert report[0]["cost_usd"] == sum(row["cost_usd"] for row in seen)
    hidden = httpx.get(
        url + "/admin/reports/usage",
        params={"key": "bootstrap-admin"},
        headers=auth(member_key),
        timeout=30,
    )
    assert hidden.json()["data"] == []


def test_bodies_are_kept_for_the_enabled_team_only_and_redacted(logged: Logged) -> None:
    url = logged.url
    _, bodies_key = new_key(url, team_id=logged.bodies_team)
    _, quiet_key = new_key(url, team_id=logged.quiet_team)
    secret = "sk-proj-" + "a1B2c3D4e5F6g7H8i9J0"
    prompt = (
        f"mail ana.lima@example.com, card 4111 1111 1111 1111, key {secret}, "
        f"order 1234 5678 9012 3456, ssn 123-45-6789"
    )
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": prompt}]
    kept = chat(url, bodies_key, messages=messages)
    streamed = chat(url, bodies_key, messages=messages, stream=True)
    quiet = chat(url, quiet_key, messages=messages)
    assert {kept.status_code, streamed.status_code, quiet.status_code} == {200}
    records = wait_for(url, [r.headers["x-request-id"] for r in (kept, streamed, quiet)])

    # The order number fails the Luhn check: not a card.
    redacted = "mail [EMAIL], card [CARD], key [SECRET], order 1234 5678 9012 3456, ssn [SSN]"
    for answer in (kept, streamed):
        record = records[answer.headers["x-request-id"]]
        assert record["prompt"] == {"messages": [
            {"role": "system", "content": "be brief"}, {"role": "user", "content": redacted},
        ]}  # fmt: skip
        stored = json.dumps(record)
        assert "ana.lima" not in stored and secret not in stored and "4111" not in stored
    # The simulator echoes the prompt's first words: the kept answer is redacted the same way.
    reply = kept.json()["choices"][0]["message"]["content"]
    assert "ana.lima@example.com" in reply and "4111 1111 1111 1111" in reply
    expected = reply.replace("ana.lima@example.com", "[EMAIL]")
    expected = expected.replace("4111 1111 1111 1111", "[CARD]")
    for answer in (kept, streamed):
        assert records[answer.headers["x-request-id"]]["response"] == {"text": expected}
    record = records[quiet.headers["x-request-id"]]
    assert record["prompt"] is None and record["response"] is None
    # Never the client's credential, whatever else is kept.
    with sqlite3.connect(logged.db_path) as db:
        dump = "\n".join(map(str, db.execute("SELECT * FROM request_log")))
    assert bodies_key not in dump and quiet_key not in dump and CLIENT_KEY not in dump


def test_a_text_cut_to_max_chars_keeps_nothing_unredacted_from_past_the_cut(
    logged: Logged,
) -> None:
    """A long text is redacted a little past ``max_chars`` (so an address across the cut is
    found whole) and then cut. The cut was made in the redacted text: each ``[EMAIL]``
    shortened it, so the cut moved into the margin, past texts the margin had cut in half and
    left unredacted. A pasted contact list was stored up to an address's raw first half."""
    url = logged.url
    _, bodies_key = new_key(url, team_id=logged.bodies_team)
    # 33 characters an address; 700 of them, past the default max_chars (20,000) and its margin.
    contacts = "".join(f"customer{i:04d}.someone@example.com;" for i in range(700))
    answer = chat(url, bodies_key, messages=[{"role": "user", "content": contacts}])
    assert answer.status_code == 200, answer.text
    request_id = answer.headers["x-request-id"]
    kept = wait_for(url, [request_id])[request_id]["prompt"]["messages"][0]["content"]
    assert "someone" not in kept and "@" not in kept
    # Addresses 0..605 end before character 20,000; address 606 (from 19,998) is across the
    # cut: redacted whole. Nothing after it.
    assert kept == "[EMAIL];" * 606 + "[EMAIL]" + f"…[{len(contacts) - 20_000} more chars]"


def test_redacting_a_long_unbroken_text_does_not_stall_the_gateway(logged: Logged) -> None:
    """Kept bodies are redacted on the gateway's event loop. The e-mail pattern was tried
    from every character of a run of letters and digits (a pasted base64 blob, a hex dump):
    about 0.5 s for one 20,000-character text, in which nothing else was answered."""
    url = logged.url
    _, bodies_key = new_key(url, team_id=logged.bodies_team)
    blob = "QUJD" * 4_700 + " mail bob@example.com"  # 18,800 characters of base64, then more
    messages = [{"role": "user", "content": blob}] * 8
    stalls: list[float] = []

    async def probe_while_written() -> str:
        async with aiohttp.ClientSession() as session:
            async with session.post(
                url + "/v1/chat/completions", headers=auth(bodies_key),
                json={"model": "priced-chat", "messages": messages},
            ) as answer:  # fmt: skip
                assert answer.status == 200
                request_id = answer.headers["x-request-id"]
            # The writer redacts the bodies within a flush interval (100 ms) of the answer.
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                started = time.monotonic()
                async with session.get(url + "/health/live") as live:
                    assert live.status == 200
                stalls.append(time.monotonic() - started)
                await asyncio.sleep(0.02)
            return request_id

    request_id = asyncio.run(probe_while_written())
    record = wait_for(url, [request_id])[request_id]
    assert all(m["content"].endswith("mail [EMAIL]") for m in record["prompt"]["messages"])
    assert max(stalls) < 1.0, f"the gateway stopped answering for {max(stalls):.2f} s"


def test_retention_purges_old_records(logged: Logged) -> None:
    now = dt.datetime.now(dt.UTC)
    chain = "old-" + uuid.uuid4().hex[:8]
    rows = [
        _row(chain, 1, now - dt.timedelta(days=120)),
        _row(chain, 2, now - dt.timedelta(days=80)),
    ]
    asyncio.run(_insert(logged.store_url, rows))
    deadline = time.monotonic() + 15
    while True:
        with sqlite3.connect(logged.db_path) as db:
            query = "SELECT seq FROM request_log WHERE chain_id = ? ORDER BY seq"
            seqs = [seq for (seq,) in db.execute(query, (chain,))]
        if seqs == [2] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert seqs == [2]  # 120 days old: purged (retention 90 days); 80 days: kept


def _row(chain: str, seq: int, at: dt.datetime) -> dict[str, Any]:
    return {
        "at": at, "chain_id": chain, "seq": seq, "request_id": f"old-{seq}",
        "principal_kind": "key", "key_id": "k", "user_id": None, "team_id": None,
        "service": None, "endpoint": "chat", "model": "m", "served_model": "m",
        "deployment_id": "d", "provider": "openai", "attempts": 1, "fallbacks": 0,
        "status": 200, "error_code": None, "stream": False, "input_tokens": 1,
        "output_tokens": 1, "cached_tokens": 0, "usage_estimated": False, "cost_micros": 1,
        "latency_ms": 1.0, "ttft_ms": None, "cache": None, "guardrails": [], "prompt": None,
        "response": None, "prev_hash": None, "hash": None,
    }  # fmt: skip


async def _insert(store_url: str, rows: list[dict[str, Any]]) -> None:
    store = Store(store_url)
    await store.open()
    try:
        await store.request_log.insert(rows)
    finally:
        await store.close()


def test_the_chain_verifies_and_an_edited_row_breaks_it(logged: Logged) -> None:
    answers = [chat(logged.url) for _ in range(3)]
    wait_for(logged.url, [a.headers["x-request-id"] for a in answers])
    verify = tollway_command("logs", "verify", "--store-url", logged.store_url)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(verify, capture_output=True, text=True, timeout=60)

    ok = run()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ": OK (seq 1.." in ok.stdout and "BROKEN" not in ok.stdout
    target = answers[1].headers["x-request-id"]
    with sqlite3.connect(logged.db_path) as db:
        (row_id, tokens) = db.execute(
            "SELECT id, output_tokens FROM request_log WHERE request_id = ?", (target,)
        ).fetchone()
        db.execute("UPDATE request_log SET output_tokens = ? WHERE id = ?", (tokens - 1, row_id))
    broken = run()
    assert broken.returncode == 1
    assert f"BROKEN at record id {row_id} " in broken.stdout
    assert "the hash does not match the record's contents" in broken.stdout
    with sqlite3.connect(logged.db_path) as db:
        db.execute("UPDATE request_log SET output_tokens = ? WHERE id = ?", (tokens, row_id))
    assert run().returncode == 0


def test_a_chain_whose_hashes_were_stripped_fails_verify_with_require_chain(
    logged: Logged,
) -> None:
    """Clearing ``hash`` and ``prev_hash`` on every row of a chain (after editing any of
    them) made it read as a chain written with ``chain: false``: "not chained", exit 0.
    ``--require-chain`` says every chain must be hashed."""
    chain = f"stripped-{uuid.uuid4().hex[:8]}"
    now = dt.datetime.now(dt.UTC)
    asyncio.run(_insert(logged.store_url, [_row(chain, seq, now) for seq in (1, 2, 3)]))
    verify = tollway_command("logs", "verify", "--store-url", logged.store_url)
    try:
        lenient = subprocess.run(verify, capture_output=True, text=True, timeout=60)
        assert lenient.returncode == 0, lenient.stdout + lenient.stderr
        assert f"chain {chain}: not chained" in lenient.stdout
        strict = subprocess.run(
            [*verify, "--require-chain"], capture_output=True, text=True, timeout=60
        )
        assert strict.returncode == 1, strict.stdout + strict.stderr
        assert f"chain {chain}: NOT CHAINED (seq 1..3, 3 records)" in strict.stdout
        assert ": OK (seq 1.." in strict.stdout  # the gateway's own chain still verifies
    finally:
        with sqlite3.connect(logged.db_path) as db:
            db.execute("DELETE FROM request_log WHERE chain_id = ?", (chain,))


def test_a_row_the_store_refuses_verifies_as_a_refusal_not_a_break(logged: Logged) -> None:
    # The store refusing a row (here a trigger an operator added) left a gap in the chain,
    # and `tollway logs verify` called the chain BROKEN, as it does a deleted row.
    refuse = (
        "CREATE TRIGGER refuse_err_chat BEFORE INSERT ON request_log WHEN NEW.model = "
        "'err-chat' BEGIN SELECT RAISE(ABORT, 'err-chat rows are refused here'); END"
    )
    with sqlite3.connect(logged.db_path) as db:
        db.execute(refuse)
    try:
        refused = chat(logged.url, model="err-chat")
        after = chat(logged.url)
        assert refused.status_code == after.status_code == 200
        rid = refused.headers["x-request-id"]
        records = wait_for(logged.url, [rid, after.headers["x-request-id"]])
    finally:
        with sqlite3.connect(logged.db_path) as db:
            db.execute("DROP TRIGGER refuse_err_chat")
    placeholder = records[rid]
    assert placeholder["refused"] == "IntegrityError: err-chat rows are refused here"
    assert (placeholder["model"], placeholder["status"]) == ("", 0)
    verify = tollway_command("logs", "verify", "--store-url", logged.store_url)
    rejected = ["--rejected", str(logged.spool / "rejected")]
    for args in ([], rejected):
        done = subprocess.run(verify + args, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "BROKEN" not in done.stdout and "UNCONFIRMED" not in done.stdout
        assert "1 refused by the store, placeholders at seq " in done.stdout
        # Without the set-aside rows, nothing vouches for what a placeholder says.
        assert ("not checked: give --rejected" in done.stdout) is (not args), done.stdout
    # What the placeholder says cannot be changed unseen when the set-aside rows are given.
    with sqlite3.connect(logged.db_path) as db:
        db.execute("UPDATE request_log SET key_id = 'k' WHERE request_id = ?", (rid,))
    try:
        done = subprocess.run(verify + rejected, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and "the placeholder is not what its set-aside row" in (
            done.stdout
        )
    finally:
        with sqlite3.connect(logged.db_path) as db:
            db.execute("UPDATE request_log SET key_id = NULL WHERE request_id = ?", (rid,))


def test_records_still_queued_at_shutdown_are_written(
    log_dir: Path, simulator_url: str, tmp_path: Path
) -> None:
    store_url = f"sqlite+aiosqlite:///{tmp_path}/tollway.db"
    # Nothing would be written for a minute: only the shutdown flush can write these.
    config = log_config(simulator_url, store_url, flush_interval="60s", batch_size=1000)
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": store_url}
    with running_gateway(log_dir, config, env) as (url, _):
        sent = {chat(url).headers["x-request-id"] for _ in range(4)}
        with sqlite3.connect(tmp_path / "tollway.db") as db:
            assert db.execute("SELECT count(*) FROM request_log").fetchone() == (0,)
    with sqlite3.connect(tmp_path / "tollway.db") as db:
        stored = {rid for (rid,) in db.execute("SELECT request_id FROM request_log")}
    assert stored == sent


async def _load_until_stopped(url: str, process: Process) -> dict[str, str]:
    """Quick requests answered, then slow ones (streamed and not) in flight with a burst of
    quick ones when SIGTERM comes; how each ended for the client, by request id."""
    ended: dict[str, str] = {}

    async def send(session: aiohttp.ClientSession, kind: str, stream: bool) -> None:
        rid = f"t-{kind}-{uuid.uuid4().hex[:12]}"
        slow = {"x-sim-ttft-ms": "6000"} if kind == "slow" else {}
        if kind == "slow" and stream:
            slow = {"x-sim-tpot-ms": "100", "x-sim-output-tokens": "100"}
        body = {"model": "priced-chat", "stream": stream,
                "messages": [{"role": "user", "content": "hello"}]}  # fmt: skip
        try:
            async with session.post(
                url + "/v1/chat/completions", json=body,
                headers={**auth(), "x-request-id": rid, **slow},
            ) as response:  # fmt: skip
                text = await response.text()
                whole = "[DONE]" in text if stream else '"choices"' in text
                ended[rid] = "answered" if response.status == 200 and whole else "cut"
        except aiohttp.ClientError:
            ended[rid] = "cut"

    async with aiohttp.ClientSession() as session:
        for _ in range(10):
            await send(session, "quick", False)
        slow = [asyncio.create_task(send(session, "slow", n % 2 == 0)) for n in range(10)]
        await asyncio.sleep(1.0)  # the slow ones are waiting on the simulator
        burst = [asyncio.create_task(send(session, "burst", False)) for _ in range(40)]
        await asyncio.sleep(0.02)
        process.proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*slow, *burst)
    return ended


def test_a_shutdown_under_load_records_every_request_once_as_it_ended(
    log_dir: Path, simulator_url: str, tmp_path: Path
) -> None:
    # Requests still running when the shutdown timeout ran out were cancelled, and recorded
    # as 200 (nothing had failed): a client cut off with no answer read as served.
    store_url = f"sqlite+aiosqlite:///{tmp_path}/tollway.db"
    config = log_config(simulator_url, store_url, flush_interval="60s", batch_size=1000)
    config["server"] = {"shutdown_timeout": "1s"}
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": store_url}
    with running_gateway(log_dir, config, env) as (url, process):
        ended = asyncio.run(_load_until_stopped(url, process))
        assert process.proc.wait(30) == 0
        assert "Traceback" not in process.output()
    with sqlite3.connect(tmp_path / "tollway.db") as db:
        rows = db.execute("SELECT request_id, status, error_code FROM request_log").fetchall()
    logged: dict[str, list[tuple[int, str | None]]] = {}
    for rid, status, code in rows:
        logged.setdefault(rid, []).append((status, code))
    assert set(logged) <= set(ended) and all(len(seen) == 1 for seen in logged.values())
    for rid, how in ended.items():
        if how == "answered":  # every answer the client got is on record, as answered
            assert logged[rid] == [(200, None)], rid
        elif rid.startswith("t-slow-"):  # cut by the shutdown: on record as cut
            assert logged[rid] == [(503, "request_cancelled")], rid
    assert sum(how == "answered" for how in ended.values()) >= 10
    assert sum(rid.startswith("t-slow-") and how == "cut" for rid, how in ended.items()) == 10


def test_a_spool_others_may_write_to_is_not_replayed(
    log_dir: Path, simulator_url: str, tmp_path: Path
) -> None:
    # What is replayed from a spool goes into the request log as it is, and the default
    # spool is under the shared temp dir: a file planted there by another user was stored
    # as a record of a request nobody made (and every spool file was world-readable).
    spool = tmp_path / "spool"
    spool.mkdir()
    spool.chmod(0o777)
    forged = _row("forged-chain", 1, dt.datetime.now(dt.UTC))
    (spool / "00000000000000000001-forged-chain-000001.jsonl").write_bytes(encode_row(forged))
    store_url = f"sqlite+aiosqlite:///{tmp_path}/tollway.db"
    config = log_config(simulator_url, store_url, spool_dir=str(spool))
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": store_url}
    with running_gateway(log_dir, config, env) as (url, process):
        answer = chat(url)
        wait_for(url, [answer.headers["x-request-id"]])
        assert "request log spool" in process.output() and "may be written by other users" in (
            process.output()
        )
    with sqlite3.connect(tmp_path / "tollway.db") as db:
        chains = {chain for (chain,) in db.execute("SELECT DISTINCT chain_id FROM request_log")}
    assert "forged-chain" not in chains and len(chains) == 1
