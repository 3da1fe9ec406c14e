"""Alerts from a real gateway process to webhook receivers running in the test.

The gateway (``tollway serve``) sits in front of the simulated provider; budgets are set
through the admin API; traffic goes through the OpenAI SDK. Two webhooks (one Slack, one
JSON) point at a receiver in this process, a third at a closed port. Windows are seconds
long here so conditions build and clear within a test.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_telemetry_metrics import sample
from tests.support import CLIENT_KEY, Process, free_port, running_gateway
from tests.webhooks import WebhookReceiver, webhook_receiver

PRICEY = {"input": 1000.0, "output": 4000.0}  # USD per 1M tokens: cents per request
CHEAP = {"input": 1.0, "output": 2.0}
SLACK_PATH = "/slack/services/T0TOLLWAY/B0ALERTS/slack-secret-token-77"
JSON_PATH = "/json/hooks/json-secret-token-88"
DEAD_PATH = "/dead/hooks/dead-secret-token-99"


def alerts_config(simulator_url: str) -> dict[str, Any]:
    base = f"{simulator_url}/v1"
    key = "env:TEST_UPSTREAM_KEY"

    def deployment(**extra: Any) -> dict[str, Any]:
        return {
            "provider": "openai",
            "model": "sim-chat",
            "api_base": base,
            "api_key": key,
            **extra,
        }

    closed = f"http://127.0.0.1:{free_port()}/v1"
    return {
        "upstream": {
            "timeouts": {"connect": "1s", "first_byte": "2s", "total": "5s"},
            "forward_headers": ["x-sim-*"],
        },
        "models": [
            {"name": "pricey", "deployments": [deployment(price=PRICEY)]},
            {"name": "cheap", "deployments": [deployment(price=CHEAP)]},
            {"name": "flaky", "deployments": [deployment(price=CHEAP, id="flaky-dep")]},
            {
                "name": "tight",
                "deadline": "300ms",
                "deployments": [deployment(price=CHEAP, id="slow-dep")],
            },
            {
                "name": "shaky",
                "deployments": [
                    deployment(price=CHEAP, id="dead-primary", api_base=closed),
                    deployment(price=CHEAP, id="live-secondary"),
                ],
            },
        ],
        "limits": {"spend_flush_interval": "1s"},
        "alerts": {
            "webhooks": [
                {"name": "ops-slack", "url": "env:TEST_SLACK_HOOK", "format": "slack"},
                {"name": "ops-json", "url": "env:TEST_JSON_HOOK", "format": "json"},
                {"name": "dead", "url": "env:TEST_DEAD_HOOK", "kinds": ["error_storm"]},
            ],
            "spend_rate": {
                "window": "2s",
                "baseline": "20s",
                "factor": 5,
                "min_usd": 0.5,
                "scopes": ["key"],
            },
            "errors": {"window": "2s", "min_attempts": 5, "error_ratio": 0.5, "min_fallbacks": 4},
            "dedup_window": "10m",
            "evaluate_interval": "200ms",
            "retries": 2,
            "retry_backoff": "100ms",
            "timeout": "2s",
        },
    }


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def gateway(
    log_dir: Path, simulator_url: str, receiver: WebhookReceiver
) -> Iterator[tuple[str, Process]]:
    env = {
        "TEST_UPSTREAM_KEY": UPSTREAM_KEY,
        "TEST_SLACK_HOOK": receiver.url + SLACK_PATH,
        "TEST_JSON_HOOK": receiver.url + JSON_PATH,
        "TEST_DEAD_HOOK": f"http://127.0.0.1:{free_port()}{DEAD_PATH}",
    }
    with running_gateway(log_dir, alerts_config(simulator_url), env) as running:
        yield running


def admin(url: str, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    response = httpx.request(
        method, url + path, json=body, headers={"authorization": f"Bearer {CLIENT_KEY}"}
    )
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def new_key(url: str) -> tuple[str, openai.OpenAI]:
    """A fresh virtual key: its id and a client using it."""
    created = admin(url, "POST", "/admin/keys", {"name": f"job-{uuid.uuid4().hex[:6]}"}, 201)
    client = openai.OpenAI(base_url=url + "/v1", api_key=created["key"], max_retries=0)
    return created["id"], client


def chat(client: openai.OpenAI, model: str, **extra: Any) -> float:
    """One small completion; its cost."""
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=10, **extra
    )
    return float(raw.headers["x-tollway-cost-usd"])


def of(bodies: list[Any], kind: str, scope_id: str, status: str = "firing") -> list[Any]:
    """JSON bodies of one alert kind about one scope id."""
    return [
        b for b in bodies if (b["kind"], b["scope_id"], b["status"]) == (kind, scope_id, status)
    ]


def arrived(receiver: WebhookReceiver, kind: str, scope_id: str) -> list[Any]:
    """The firing JSON alerts of ``kind`` about ``scope_id``, once there is one."""
    return of(receiver.wait_for(lambda b: of(b, kind, scope_id), JSON_PATH), kind, scope_id)


def slack_about(bodies: list[Any], *words: str) -> list[Any]:
    """Slack bodies whose text has every one of ``words``."""
    return [b for b in bodies if all(word in b["text"] for word in words)]


def test_budget_crossing_50_and_80_percent_alerts_each_once_in_both_formats(
    gateway: tuple[str, Process], receiver: WebhookReceiver
) -> None:
    url, _ = gateway
    key_id, client = new_key(url)
    body = {"scope": "key", "scope_id": key_id, "period": "day", "limit_usd": 0.5}
    admin(url, "PUT", "/admin/budgets", body)
    spent = 0.0
    while spent < 0.85 * 0.5:
        spent += chat(client, "pricey")
    assert spent < 0.5
    json_bodies = receiver.wait_for(
        lambda bodies: len(of(bodies, "budget", key_id)) >= 2, JSON_PATH
    )
    slack = receiver.wait_for(lambda b: len(slack_about(b, key_id)) >= 2, SLACK_PATH)
    time.sleep(1.0)  # anything sent twice would have arrived by now
    alerts = of(receiver.bodies(JSON_PATH), "budget", key_id)
    assert [a["values"]["threshold"] for a in alerts] == [0.5, 0.8]
    fifty = alerts[0]
    assert fifty["scope"] == "key" and fifty["severity"] == "info"
    assert fifty["message"].startswith(f"key {key_id} crossed 50% of its daily budget")
    assert fifty["message"].endswith("of $0.50")
    assert fifty["dedup_key"].startswith(f"budget:key:{key_id}:day:")
    assert fifty["time"].endswith("Z")
    assert len(of(json_bodies, "budget", key_id)) == 2
    slack = slack_about(receiver.bodies(SLACK_PATH), key_id)
    assert len(slack) == 2
    assert "crossed 50% of its daily budget" in slack[0]["text"]
    assert "crossed 80% of its daily budget" in slack[1]["text"]
    assert slack[1]["blocks"][0]["text"]["text"].startswith(":warning: *Budget threshold*")


def test_a_lowered_limit_sends_the_thresholds_it_passed_once_saying_the_limit_changed(
    gateway: tuple[str, Process], receiver: WebhookReceiver
) -> None:
    # 40% of $1.00 spent, then the limit cut to $0.50: that is 80%, but no crossing happens
    # (spend did not move), so neither the 50% nor the 80% alert was ever sent.
    url, _ = gateway
    key_id, client = new_key(url)
    budget = {"scope": "key", "scope_id": key_id, "period": "day", "limit_usd": 1.0}
    admin(url, "PUT", "/admin/budgets", budget)
    spent = 0.0
    while spent < 0.42:
        spent += chat(client, "pricey")
    assert spent < 0.5
    admin(url, "PUT", "/admin/budgets", {**budget, "limit_usd": 0.5})
    alerts = receiver.wait_for(lambda b: len(of(b, "budget", key_id)) >= 2, JSON_PATH)
    fifty, eighty = of(alerts, "budget", key_id)
    assert (fifty["values"]["threshold"], eighty["values"]["threshold"]) == (0.5, 0.8)
    assert eighty["values"]["limit_usd"] == 0.5
    assert eighty["values"]["limit_changed"] is True
    assert eighty["values"]["previous_limit_usd"] == 1.0
    assert "limit changed from $1.00" in eighty["message"]
    # Raised and cut again in the same period: nothing already sent is sent again.
    admin(url, "PUT", "/admin/budgets", {**budget, "limit_usd": 1.0})
    admin(url, "PUT", "/admin/budgets", {**budget, "limit_usd": 0.5})
    time.sleep(1.0)
    assert len(of(receiver.bodies(JSON_PATH), "budget", key_id)) == 2


def test_delivery_is_retried_when_the_receiver_fails_and_arrives_once(
    gateway: tuple[str, Process], receiver: WebhookReceiver
) -> None:
    url, _ = gateway
    key_id, client = new_key(url)
    admin(
        url,
        "PUT",
        "/admin/budgets",
        {"scope": "key", "scope_id": key_id, "period": "day", "limit_usd": 0.4},
    )
    failed_before = receiver.failed
    receiver.fail_next(2)
    spent = 0.0
    while spent < 0.55 * 0.4:
        spent += chat(client, "pricey")
    receiver.wait_for(lambda b: len(of(b, "budget", key_id)) >= 1, JSON_PATH)
    receiver.wait_for(lambda b: len(slack_about(b, key_id)) >= 1, SLACK_PATH)
    time.sleep(1.0)
    assert receiver.failed - failed_before == 2
    assert len(of(receiver.bodies(JSON_PATH), "budget", key_id)) == 1
    assert len(slack_about(receiver.bodies(SLACK_PATH), key_id)) == 1


@pytest.fixture(scope="module")
def habits(gateway: tuple[str, Process]) -> dict[str, tuple[str, openai.OpenAI]]:
    """Keys with a baseline: one request a second for 8 s from each (built once, for the
    two tests below, as it takes that long): "runaway" and "rotated" on the pricey model,
    "quiet" on the cheap one. Each key is used by one test only."""
    url, _ = gateway
    keys = {"runaway": new_key(url), "quiet": new_key(url), "rotated": new_key(url)}
    for _ in range(8):
        for name, (_, client) in keys.items():
            chat(client, "cheap" if name == "quiet" else "pricey")
        time.sleep(1.0)
    return keys


def test_runaway_job_alerts_once_and_a_quiet_key_with_a_tiny_burst_does_not(
    gateway: tuple[str, Process],
    receiver: WebhookReceiver,
    habits: dict[str, tuple[str, openai.OpenAI]],
) -> None:
    url, _ = gateway
    runaway_id, runaway = habits["runaway"]
    quiet_id, quiet = habits["quiet"]
    assert of(receiver.bodies(JSON_PATH), "spend_rate", runaway_id) == []

    def burst(client: openai.OpenAI, model: str) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: chat(client, model), range(32)))

    burst(quiet, "cheap")  # thousands of times its habit, but well under min_usd
    started = time.monotonic()
    burst(runaway, "pricey")
    [alert] = arrived(receiver, "spend_rate", runaway_id)
    assert time.monotonic() - started < 8
    assert alert["scope"] == "key" and alert["severity"] == "warning"
    assert alert["values"]["ratio"] > 5 and alert["values"]["window_usd"] >= 0.5
    assert f"key {runaway_id} is spending $" in alert["message"]
    assert alert["dedup_key"] == f"spend_rate:key:{runaway_id}:2s"
    receiver.wait_for(lambda b: slack_about(b, runaway_id, "Tollway spend rate"), SLACK_PATH)
    burst(runaway, "pricey")  # the same condition again, within the dedup window
    time.sleep(2.0)
    assert len(of(receiver.bodies(JSON_PATH), "spend_rate", runaway_id)) == 1
    assert len(slack_about(receiver.bodies(SLACK_PATH), runaway_id, "spend rate")) == 1
    assert of(receiver.bodies(JSON_PATH), "spend_rate", quiet_id) == []
    metrics = httpx.get(url + "/metrics").text
    assert sample(metrics, "tollway_alerts_deduplicated_total", kind="spend_rate") >= 1


def test_a_key_rotated_mid_habit_keeps_its_baseline_and_alerts_under_its_chains_first_id(
    gateway: tuple[str, Process],
    receiver: WebhookReceiver,
    habits: dict[str, tuple[str, openai.OpenAI]],
) -> None:
    url, _ = gateway
    first_id, _ = habits["rotated"]  # a habit: one request a second before its rotation
    assert of(receiver.bodies(JSON_PATH), "spend_rate", first_id) == []
    rotated = admin(url, "POST", f"/admin/keys/{first_id}/rotate", {"grace_period": "1h"}, 201)
    new = openai.OpenAI(base_url=url + "/v1", api_key=rotated["key"], max_retries=0)
    with ThreadPoolExecutor(8) as pool:  # the new secret runs away
        list(pool.map(lambda _: chat(new, "pricey"), range(32)))
    # Judged against the old secret's habit (a key with no baseline would not alert), and
    # about the key as its budgets know it: its rotation chain's first id.
    [alert] = arrived(receiver, "spend_rate", first_id)
    assert alert["values"]["ratio"] > 5
    assert alert["dedup_key"] == f"spend_rate:key:{first_id}:2s"
    assert of(receiver.bodies(JSON_PATH), "spend_rate", rotated["id"]) == []


def test_a_deployment_behind_a_closed_port_raises_an_error_storm_naming_it(
    gateway: tuple[str, Process], receiver: WebhookReceiver
) -> None:
    url, _ = gateway
    client = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    for _ in range(6):  # every one served by the secondary after the primary refuses
        chat(client, "shaky")
    [alert] = arrived(receiver, "error_storm", "dead-primary")
    assert alert["scope"] == "deployment" and alert["severity"] == "critical"
    assert alert["values"]["errors"] >= 4 and alert["values"]["fallbacks"] >= 4
    assert alert["message"].startswith("deployment dead-primary is failing: ")
    assert "fell back to another deployment" in alert["message"]
    assert "UpstreamUnavailable" in alert["message"]
    receiver.wait_for(lambda b: slack_about(b, "dead-primary", "error storm"), SLACK_PATH)
    assert of(receiver.bodies(JSON_PATH), "error_storm", "live-secondary") == []


def test_error_storm_from_faults_then_recovery_sends_resolved(
    gateway: tuple[str, Process], receiver: WebhookReceiver
) -> None:
    url, _ = gateway
    client = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    for _ in range(6):
        with pytest.raises(openai.APIStatusError):
            chat(client, "flaky", extra_headers={"x-sim-fault": "status:503"})
    [alert] = arrived(receiver, "error_storm", "flaky-dep")
    assert alert["values"]["errors"] == alert["values"]["attempts"] >= 6
    assert "last error UpstreamStatusError (503)" in alert["message"]
    assert of(receiver.bodies(JSON_PATH), "error_storm", "flaky-dep", "resolved") == []
    deadline = time.monotonic() + 15
    while not of(receiver.bodies(JSON_PATH), "error_storm", "flaky-dep", "resolved"):
        assert time.monotonic() < deadline, "no resolved alert"
        chat(client, "flaky")
        time.sleep(0.3)
    [resolved] = of(receiver.bodies(JSON_PATH), "error_storm", "flaky-dep", "resolved")
    assert resolved["message"].startswith("deployment flaky-dep recovered: ")
    assert resolved["values"]["error_ratio"] < 0.5 and resolved["severity"] == "info"
    assert resolved["dedup_key"] == alert["dedup_key"]
    receiver.wait_for(lambda b: slack_about(b, "flaky-dep", "error storm resolved"), SLACK_PATH)


def test_attempts_a_deadline_cut_short_raise_no_error_storm(
    gateway: tuple[str, Process], receiver: WebhookReceiver
) -> None:
    """The deadline's timeout is not the deployment's failure (its circuit does not count
    it): a deployment slower than a tight deadline is no storm; its own failures still are."""
    url, _ = gateway
    client = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    for _ in range(6):
        with pytest.raises(openai.APIStatusError) as refused:
            chat(client, "tight", extra_headers={"x-sim-ttft-ms": "1000"})
        assert refused.value.status_code == 504
        assert refused.value.code == "deadline_exceeded"  # never the deployment's own timeout
    time.sleep(1.0)  # five evaluations, the cut attempts still in the 2 s window
    assert of(receiver.bodies(JSON_PATH), "error_storm", "slow-dep") == []
    # Six of the deployment's own failures. The group's 300 ms deadline holds for them too:
    # on a loaded machine one may be cut short all the same (a 504 that counts for nothing,
    # as above), so failures are sent until six were the deployment's.
    failed = 0
    while failed < 6:
        with pytest.raises(openai.APIStatusError) as caught:
            chat(client, "tight", extra_headers={"x-sim-fault": "status:503"})
        if caught.value.status_code == 503:
            failed += 1
        else:
            assert caught.value.code == "deadline_exceeded"
    [alert] = arrived(receiver, "error_storm", "slow-dep")
    assert "last error UpstreamStatusError (503)" in alert["message"]
    values = alert["values"]
    # Only those failures are its attempts (no cut one among them). The storm is judged every
    # 200 ms and sent once: it may fire as soon as min_attempts (5) of the six are in, before
    # the sixth is (as it did under load), so not necessarily with all six.
    assert values["errors"] == values["attempts"]
    assert values["min_attempts"] <= values["attempts"] <= failed


def test_webhook_urls_never_appear_in_the_gateways_output(
    gateway: tuple[str, Process], receiver: WebhookReceiver
) -> None:
    url, process = gateway
    metrics = httpx.get(url + "/metrics").text
    assert sample(metrics, "tollway_alert_delivery_failures_total", webhook="dead") >= 1
    assert sample(metrics, "tollway_alerts_total", kind="budget", status="firing") >= 3
    output = process.output()
    assert "not delivered to webhook dead after 3 attempt(s): ClientConnectorError" in output
    for path in (SLACK_PATH, JSON_PATH, DEAD_PATH):
        assert path.rsplit("/", 1)[1] not in output
        assert path not in metrics
    assert receiver.url not in output


def test_without_resolved_alerts_a_storm_after_a_recovery_is_still_news(
    log_dir: Path, simulator_url: str, receiver: WebhookReceiver
) -> None:
    # The resolved alert was what forgot a storm's dedup key: with ``errors.resolved: false``
    # nothing did, so a deployment that failed, recovered, and failed again within the
    # dedup window (15 minutes by default) paged no one the second time.
    config = alerts_config(simulator_url)
    config["alerts"]["webhooks"] = [{"name": "only-json", "url": "env:TEST_JSON_HOOK"}]
    config["alerts"]["errors"] = {"window": "2s", "min_attempts": 3, "resolved": False}
    path = f"/json/hooks/unresolved-{uuid.uuid4().hex[:8]}"
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TEST_JSON_HOOK": receiver.url + path}
    with running_gateway(log_dir, config, env) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)

        def storm() -> None:
            for _ in range(4):
                with pytest.raises(openai.APIStatusError):
                    chat(client, "flaky", extra_headers={"x-sim-fault": "status:503"})

        storm()
        receiver.wait_for(lambda b: of(b, "error_storm", "flaky-dep"), path)
        recovered_at = time.monotonic() + 2.6  # the failures out of the 2 s window
        while time.monotonic() < recovered_at:
            chat(client, "flaky")
            time.sleep(0.2)
        storm()
        receiver.wait_for(lambda b: len(of(b, "error_storm", "flaky-dep")) == 2, path, 5.0)
        assert of(receiver.bodies(path), "error_storm", "flaky-dep", "resolved") == []
