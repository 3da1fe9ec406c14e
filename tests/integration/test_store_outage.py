"""A gateway whose PostgreSQL store goes away: requests with keys it holds still run; what
needs the store (the admin API, a key it has not seen) is a clear 503 in the client's
dialect, never a 500 with a traceback; everything works again once the store is back."""

from __future__ import annotations

import time
from pathlib import Path

import anthropic
import httpx
import openai

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_request_log import log_config
from tests.integration.test_request_log_outage import cut, database, restore
from tests.support import CLIENT_KEY, running_gateway

__all__ = ["database"]  # the fixture, imported to be used here

UNKNOWN = "tw-" + "k" * 40  # a key this gateway never saw: it would have to ask the store


def assert_store_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "store_unavailable"
    assert answer.headers["retry-after"] == "1"


def test_while_the_store_is_down_what_needs_it_is_a_503_in_the_clients_dialect(
    log_dir: Path, simulator_url: str, database: str, tmp_path: Path
) -> None:
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": database}
    config = log_config(simulator_url, database, spool_dir=str(tmp_path / "spool"))
    config["auth"] = {"reconcile_interval": "200ms"}  # reloads fail during the outage too
    # So do the writes of budget spend (a line each, never a traceback).
    limits = {"spend_flush_interval": "200ms", "budgets": [
        {"scope": "org", "id": "*", "period": "day", "limit_usd": 1000}]}  # fmt: skip
    config["limits"] = limits
    with running_gateway(log_dir, config, env) as (url, process):
        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {CLIENT_KEY}"})
        member = admin.post("/admin/keys", json={"name": "known"}).json()["key"]
        cut(database)
        try:
            assert_store_unavailable(admin.get("/admin/keys"))
            assert_store_unavailable(admin.post("/admin/keys", json={"name": "during"}))
            assert_store_unavailable(admin.get("/admin/logs"))
            unknown = {"Authorization": f"Bearer {UNKNOWN}"}
            assert_store_unavailable(httpx.get(url + "/v1/models", headers=unknown))
            body = {"model": "priced-chat", "messages": [{"role": "user", "content": "x"}]}
            assert_store_unavailable(httpx.post(url + "/v1/estimate", json=body, headers=unknown))
            chat = openai.OpenAI(base_url=url + "/v1", api_key=UNKNOWN, max_retries=0)
            try:
                chat.chat.completions.create(**body)  # type: ignore[call-overload]
                raise AssertionError("an unknown key was let through")
            except openai.InternalServerError as exc:
                assert exc.status_code == 503
                assert exc.code == "store_unavailable"
            claude = anthropic.Anthropic(base_url=url, api_key=UNKNOWN, max_retries=0)
            try:
                claude.messages.create(
                    model="priced-claude", max_tokens=5, messages=[{"role": "user", "content": "x"}]
                )
                raise AssertionError("an unknown key was let through")
            except anthropic.APIStatusError as exc:
                assert exc.status_code == 503
                assert isinstance(exc.body, dict)
                assert exc.body["error"]["type"] == "overloaded_error"
            # Keys the gateway holds in memory do not need the store.
            known = openai.OpenAI(base_url=url + "/v1", api_key=member, max_retries=0)
            assert known.chat.completions.create(**body).choices  # type: ignore[call-overload]
            time.sleep(0.7)  # its spend is written every 200 ms: a few failed writes
        finally:
            restore(database)
        assert admin.get("/admin/keys").status_code == 200
        assert admin.post("/admin/keys", json={"name": "after"}).status_code == 201
        unknown = {"Authorization": f"Bearer {UNKNOWN}"}
        assert httpx.get(url + "/v1/models", headers=unknown).status_code == 401
        for _ in range(50):  # the next write of spend (every 200 ms) says it works again
            if "works again" in process.output():
                break
            time.sleep(0.1)
        output = process.output()
        # One traceback: the first failed write of spend; no other failure logs one.
        assert "Traceback" not in output, output[-3000:]
        # Each names the store as what failed (not Redis: there is none here).
        lines = output.splitlines()
        failed = sum("budget spend not written" in line for line in lines)
        assert failed == sum(": the store failed: " in line for line in lines), output[-3000:]
        assert failed >= 2 and "works again" in output, output[-3000:]
