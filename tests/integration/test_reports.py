"""Issue 7's acceptance test: mixed traffic from two teams, read back as a report whose
numbers match what was sent to the cent and the token."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, running_gateway, tollway_command

PRICE = {"input": 2.5, "output": 10.0}
EMBED_PRICE = {"input": 0.02, "output": 0.0}


@pytest.fixture(scope="module")
def gateway(log_dir: Path, simulator_url: str) -> Iterator[str]:
    base = f"{simulator_url}/v1"
    key = "env:TEST_UPSTREAM_KEY"
    config = {
        "upstream": {"forward_headers": ["x-sim-*"]},
        "models": [
            {
                "name": "gpt-4o",
                "deployments": [
                    {
                        "provider": "openai",
                        "model": "sim-chat",
                        "api_base": base,
                        "api_key": key,
                        "price": PRICE,
                    },
                ],
            },
            {
                "name": "claude",
                "deployments": [
                    {
                        "provider": "anthropic",
                        "model": "sim-chat",
                        "api_base": simulator_url,
                        "api_key": key,
                        "price": {"input": 3.0, "output": 15.0},
                    },
                ],
            },
            {
                "name": "embed",
                "kind": "embedding",
                "deployments": [
                    {
                        "provider": "openai",
                        "model": "sim-embed",
                        "api_base": base,
                        "api_key": key,
                        "price": EMBED_PRICE,
                    },
                ],
            },
        ],
        "telemetry": {"request_log": {"flush_interval": "0.2s"}},
    }
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, _):
        yield url


def admin(url: str, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    response = httpx.request(
        method, url + path, json=body, headers={"authorization": f"Bearer {CLIENT_KEY}"}
    )
    assert response.status_code == status, response.text
    return response.json() if "json" in response.headers.get("content-type", "") else response


def team_key(url: str, team: str, service: str) -> tuple[str, str]:
    created = admin(
        url,
        "POST",
        "/admin/keys",
        {"name": service, "team_id": team, "tags": {"service": service}},
        201,
    )
    return created["id"], created["key"]


def report(url: str, query: str, expected_requests: int) -> list[dict[str, Any]]:
    """The report once the request log holds every request sent (it is written behind)."""
    deadline = time.monotonic() + 15
    while True:
        rows: list[dict[str, Any]] = admin(url, "GET", f"/admin/reports/usage?{query}")["data"]
        if sum(r["requests"] for r in rows) >= expected_requests or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_two_teams_report_matches_what_was_sent(gateway: str) -> None:
    suffix = uuid.uuid4().hex[:6]
    teams = {
        name: admin(gateway, "POST", "/admin/teams", {"name": f"{name}-{suffix}"}, 201)["id"]
        for name in ("alpha", "beta")
    }
    sent: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def account(team: str, model: str, tokens_in: int, tokens_out: int, cost: str) -> None:
        row = sent[(teams[team], model)]
        row["requests"] += 1
        row["input_tokens"] += tokens_in
        row["output_tokens"] += tokens_out
        row["cost"] += float(cost)

    for team, service, rounds in (("alpha", "chatbot", 7), ("beta", "batch-job", 4)):
        _, key = team_key(gateway, teams[team], service)
        client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
        for i in range(rounds):
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": f"{team} question {i}"}],
                max_tokens=10 + i,
            )
            usage = raw.parse().usage
            assert usage is not None
            account(
                team,
                "gpt-4o",
                usage.prompt_tokens,
                usage.completion_tokens,
                raw.headers["x-tollway-cost-usd"],
            )
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": f"{team} stream"}],
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
        ) as response:
            usage = None
            for chunk in response.parse():
                usage = chunk.usage or usage
        assert usage is not None
        cost = (
            usage.prompt_tokens * PRICE["input"] + usage.completion_tokens * PRICE["output"]
        ) / 1e6
        account(team, "gpt-4o", usage.prompt_tokens, usage.completion_tokens, str(cost))
        raw_embed = client.embeddings.with_raw_response.create(model="embed", input=f"{team} text")
        embedded = raw_embed.parse().usage
        account(team, "embed", embedded.prompt_tokens, 0, raw_embed.headers["x-tollway-cost-usd"])
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": "fail"}],
                extra_headers={"x-sim-fault": "status:500"},
            )
        account(team, "gpt-4o", 0, 0, "0")

    expected = int(sum(row["requests"] for row in sent.values()))
    rows = report(gateway, "group_by=team,model", expected)
    got = {(r["team"], r["model"]): r for r in rows if r["team"] in teams.values()}
    assert set(got) == set(sent)
    for group, want in sent.items():
        row = got[group]
        assert row["requests"] == want["requests"]
        assert row["input_tokens"] == want["input_tokens"]
        assert row["output_tokens"] == want["output_tokens"]
        assert row["cost_usd"] == pytest.approx(want["cost"], abs=0.005)  # to the cent
        assert row["avg_latency_ms"] > 0 and row["p95_latency_ms"] >= row["avg_latency_ms"] / 2
    alpha_chat = got[(teams["alpha"], "gpt-4o")]
    assert alpha_chat["errors"] == 1
    assert alpha_chat["p95_ttft_ms"] is not None  # one stream among them
    by_service = report(gateway, f"group_by=service&team={teams['beta']}", 0)
    assert [r["service"] for r in by_service] == ["batch-job"]
    assert by_service[0]["requests"] == sent[(teams["beta"], "gpt-4o")]["requests"] + 1
    by_day = report(gateway, "group_by=day", expected)
    assert by_day[-1]["day"] == time.strftime("%Y-%m-%d", time.gmtime())
    csv = admin(gateway, "GET", "/admin/reports/usage?group_by=team&format=csv")
    assert csv.text.splitlines()[0].startswith("team,requests,errors,input_tokens")
    bad = httpx.get(
        gateway + "/admin/reports/usage?group_by=colour",
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
    )
    assert bad.status_code == 400 and "colour" in bad.json()["error"]["message"]


def test_a_report_refuses_a_format_it_cannot_write_and_groups_by_a_name_once(
    gateway: str,
) -> None:
    # format=xml answered JSON (as if format were absent), and group_by=team,team made a
    # column "team_1"; /admin/logs refuses an unknown format with a 400.
    refused = admin(gateway, "GET", "/admin/reports/usage?format=xml", status=400)
    assert refused["error"]["param"] == "format"
    refused = admin(gateway, "GET", "/admin/reports/usage?group_by=team,colour", status=400)
    assert refused["error"]["param"] == "group_by"
    once = admin(gateway, "GET", "/admin/reports/usage?group_by=team,team")
    assert once["group_by"] == ["team"]
    assert all("team_1" not in row for row in once["data"])


REPORT_FILTERS = ("team", "user", "key", "service", "model", "provider", "since", "until")
LOG_FILTERS = ("team", "user", "key", "model", "status", "source_ip", "since", "until")


def test_an_empty_filter_is_a_400_naming_it_on_reports_logs_and_the_cli(gateway: str) -> None:
    # /admin/reports/usage?team= filtered on team "" (no rows: a report of nothing that
    # looked like one), while /admin/logs?team= dropped the filter (every row). Both now
    # refuse it, naming the parameter: a filter whose value went missing is a mistake.
    for route, names in (("/admin/reports/usage", REPORT_FILTERS), ("/admin/logs", LOG_FILTERS)):
        for name in names:
            for empty in ("", "%20"):
                refused = admin(gateway, "GET", f"{route}?{name}={empty}", status=400)
                assert refused["error"]["param"] == name, (route, name)
                assert f"'{name}' is empty" in refused["error"]["message"]
    env = {**os.environ, "TOLLWAY_URL": gateway, "TOLLWAY_ADMIN_KEY": CLIENT_KEY}
    for args, name in (
        (("report", "--team", ""), "team"),
        (("report", "--since", ""), "since"),
        (("logs", "list", "--model", ""), "model"),
        (("logs", "export", "--status", ""), "status"),
    ):
        done = subprocess.run(
            tollway_command(*args), env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 1, (args, done.stdout)
        assert f"'{name}' is empty" in " ".join(done.stderr.split()), done.stderr
