"""Delivery to a real webhook receiver (HTTP on a free port), de-duplication on an injected
clock, and the two payload formats."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from tests.support import free_port
from tests.webhooks import WebhookReceiver, webhook_receiver
from tollway.alerts.alert import Alert, budget_alert
from tollway.alerts.delivery import Delivery, webhooks_of
from tollway.alerts.manager import AlertManager
from tollway.alerts.payloads import json_payload, slack_payload
from tollway.auth.vault import Vault
from tollway.config.schema import AlertsConfig
from tollway.limits.events import BudgetEvent
from tollway.telemetry.metrics import Metrics

SECRET_PATH = "/services/T000/B000/not-for-logs-4242"


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as running:
        yield running


def alerts_config(*formats: str, **fields: Any) -> AlertsConfig:
    hooks = [
        {"name": f"hook-{fmt}", "url": f"env:HOOK_{fmt.upper()}", "format": fmt} for fmt in formats
    ]
    settings = {"webhooks": hooks, "retry_backoff": "10ms", "timeout": "2s", **fields}
    return AlertsConfig.model_validate(settings)


def vault_for(receiver: WebhookReceiver) -> Vault:
    return Vault(
        {
            "HOOK_JSON": receiver.url + "/json" + SECRET_PATH,
            "HOOK_SLACK": receiver.url + "/slack" + SECRET_PATH,
        }
    )


def alert(key: str = "spend_rate:key:k1:300s", status: str = "firing") -> Alert:
    return Alert(
        kind="spend_rate",
        severity="warning",
        scope="key",
        scope_id="k1",
        message="key k1 is spending <fast> & more",
        dedup_key=key,
        time=1_764_000_000.5,
        values={"window_usd": 12.5},
        status=status,  # type: ignore[arg-type]
    )


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


# --- delivery --------------------------------------------------------------------------


async def test_failed_deliveries_are_retried_and_arrive_once(receiver: WebhookReceiver) -> None:
    receiver.clear()
    receiver.fail_next(2)
    delivery = Delivery(alerts_config("json", retries=2), vault_for(receiver))
    await delivery.start()
    try:
        [hook] = delivery.webhooks
        assert await delivery.deliver(hook, alert())
    finally:
        await delivery.close()
    [body] = receiver.bodies("/json" + SECRET_PATH)
    assert body["dedup_key"] == "spend_rate:key:k1:300s"


async def test_a_webhook_that_keeps_failing_is_given_up_and_counted(
    receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.clear()
    receiver.fail_next(3)
    failures: list[str] = []
    delivery = Delivery(alerts_config("json", retries=2), vault_for(receiver), failures.append)
    await delivery.start()
    try:
        [hook] = delivery.webhooks
        with caplog.at_level(logging.INFO, "tollway.alerts"):
            assert not await delivery.deliver(hook, alert())
        receiver.fail_next(1, status=404)  # not retried: the URL is wrong or revoked
        assert not await delivery.deliver(hook, alert())
    finally:
        await delivery.close()
    assert receiver.bodies() == []
    assert failures == ["hook-json", "hook-json"]
    assert "not delivered to webhook hook-json after 3 attempt(s): HTTP 500" in caplog.text
    assert "after 1 attempt(s): HTTP 404" in caplog.text
    assert SECRET_PATH not in caplog.text and "127.0.0.1" not in caplog.text


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_never_followed_and_is_a_failed_delivery(
    receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    # The webhook's URL carries a token in its query too; so may the Location it points to.
    receiver.clear()
    elsewhere = f"{receiver.url}/elsewhere?token=redirected-secret-9191"
    receiver.redirect_next(1, elsewhere, status)
    failures: list[str] = []
    url = receiver.url + "/json" + SECRET_PATH + "?token=query-secret-4242"
    delivery = Delivery(
        alerts_config("json", retries=2), Vault({"HOOK_JSON": url}), failures.append
    )
    await delivery.start()
    try:
        [hook] = delivery.webhooks
        with caplog.at_level(logging.INFO, "tollway.alerts"):
            assert not await delivery.deliver(hook, alert())
    finally:
        await delivery.close()
    assert receiver.bodies() == []  # nothing reached where the redirect pointed
    assert failures == ["hook-json"]
    assert f"after 1 attempt(s): HTTP {status}, a redirect (not followed)" in caplog.text
    for secret in (SECRET_PATH, "query-secret-4242", "redirected-secret-9191", "127.0.0.1"):
        assert secret not in caplog.text


async def test_unreachable_or_unset_urls_fail_without_naming_the_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed = f"http://127.0.0.1:{free_port()}{SECRET_PATH}"
    failures: list[str] = []
    config = alerts_config("json", "slack", retries=1)
    delivery = Delivery(config, Vault({"HOOK_JSON": closed}), failures.append)
    await delivery.start()
    try:
        json_hook, slack_hook = delivery.webhooks
        assert delivery.missing_urls() == ["hook-slack"]
        with caplog.at_level(logging.INFO, "tollway.alerts"):
            assert not await delivery.deliver(json_hook, alert())
            assert not await delivery.deliver(slack_hook, alert())
    finally:
        await delivery.close()
    assert failures == ["hook-json", "hook-slack"]
    assert "after 2 attempt(s): ClientConnectorError" in caplog.text
    assert "its url env:HOOK_SLACK cannot be resolved" in caplog.text
    assert SECRET_PATH not in caplog.text and closed not in caplog.text


def test_webhooks_take_their_kinds_and_get_default_names() -> None:
    config = AlertsConfig.model_validate(
        {"webhooks": [{"url": "env:A"}, {"url": "env:B", "name": "ops", "kinds": ["budget"]}]}
    )
    first, second = webhooks_of(config)
    assert first.name == "webhook-1" and first.kinds == {"budget", "spend_rate", "error_storm"}
    assert second.name == "ops" and second.kinds == {"budget"}
    literal = AlertsConfig.model_validate({"webhooks": [{"url": "https://hooks.example/x"}]})
    assert "hooks.example" not in str(literal.model_dump())
    with pytest.raises(ValidationError, match="repeated: webhook-1"):
        AlertsConfig.model_validate(
            {"webhooks": [{"url": "env:A"}, {"url": "env:B", "name": "webhook-1"}]}
        )
    with pytest.raises(ValidationError, match="baseline must be between window"):
        AlertsConfig.model_validate({"spend_rate": {"window": "5m", "baseline": "1m"}})


# --- the manager: de-duplication on an injected clock ----------------------------------


async def test_same_alert_is_sent_once_per_dedup_window(receiver: WebhookReceiver) -> None:
    receiver.clear()
    now = [0.0]
    metrics = Metrics()
    config = alerts_config("json", dedup_window="15m")
    manager = AlertManager(config, vault_for(receiver), metrics, clock=lambda: now[0])
    await manager.start()
    try:
        assert manager.raise_alert(alert())
        now[0] = 899.0
        assert not manager.raise_alert(alert())  # the same one, 14m59s later
        assert manager.raise_alert(alert("spend_rate:team:red:300s"))  # another scope
        now[0] = 900.0
        assert manager.raise_alert(alert())  # the window has passed
    finally:
        await manager.close()  # waits for the deliveries in flight
    keys = [body["dedup_key"] for body in receiver.bodies()]
    assert sorted(keys) == ["spend_rate:key:k1:300s"] * 2 + ["spend_rate:team:red:300s"]
    assert sample(metrics, "tollway_alerts_total", kind="spend_rate", status="firing") == 3
    assert sample(metrics, "tollway_alerts_deduplicated_total", kind="spend_rate") == 1
    assert manager.raise_alert(alert("spend_rate:key:late:300s"))  # after close: dropped
    assert sample(metrics, "tollway_alert_delivery_failures_total", webhook="hook-json") == 1
    assert len(receiver.bodies()) == 3


async def test_resolved_is_always_sent_and_makes_the_next_storm_news(
    receiver: WebhookReceiver,
) -> None:
    now = [0.0]
    manager = AlertManager(alerts_config("json"), vault_for(receiver), clock=lambda: now[0])
    key = "error_storm:deployment:d:60s"
    assert manager.raise_alert(alert(key))
    assert not manager.raise_alert(alert(key))
    assert manager.raise_alert(alert(key, "resolved"))
    assert manager.raise_alert(alert(key))  # a new storm after recovering
    await manager.close()


async def test_budget_events_become_alerts_with_the_budgets_words() -> None:
    event = BudgetEvent("team", "ml", "month:2026-11-01", 100.0, 80.1234, 0.8)
    made = budget_alert(event, 1_764_000_000.0)
    assert made.message == (
        "team ml crossed 80% of its monthly budget (period from 2026-11-01): $80.12 of $100.00"
    )
    assert made.severity == "warning"
    assert made.dedup_key == "budget:team:ml:month:2026-11-01:0.8"
    assert made.values == {
        "threshold": 0.8,
        "spent_usd": 80.1234,
        "limit_usd": 100.0,
        "period": "month:2026-11-01",
    }
    total = budget_alert(BudgetEvent("key", "k", "total", 1.0, 1.0, 1.0), 0.0)
    assert total.message == "key k crossed 100% of its total budget: $1.00 of $1.00"
    assert total.severity == "critical"
    metrics = Metrics()
    manager = AlertManager(alerts_config("json"), Vault({}), metrics)
    manager.on_budget_event(event)  # raised (delivery not started: dropped, counted)
    manager.on_budget_event(event)  # the same crossing again: a repeat
    assert sample(metrics, "tollway_alerts_total", kind="budget", status="firing") == 1
    assert sample(metrics, "tollway_alerts_deduplicated_total", kind="budget") == 1
    assert sample(metrics, "tollway_alert_delivery_failures_total", webhook="hook-json") == 1


# --- payloads --------------------------------------------------------------------------


def test_json_payload_has_every_field_and_an_iso_time() -> None:
    assert json_payload(alert()) == {
        "source": "tollway",
        "kind": "spend_rate",
        "status": "firing",
        "severity": "warning",
        "scope": "key",
        "scope_id": "k1",
        "values": {"window_usd": 12.5},
        "message": "key k1 is spending <fast> & more",
        "dedup_key": "spend_rate:key:k1:300s",
        "time": "2025-11-24T16:00:00.500Z",
    }


def test_slack_payload_has_text_and_blocks_with_markup_escaped() -> None:
    body = slack_payload(alert())
    assert (
        body["text"] == ":warning: Tollway spend rate: key k1 is spending &lt;fast&gt; &amp; more"
    )
    header, fields, context = body["blocks"]
    assert header["text"]["text"].startswith(":warning: *Spend rate* (warning)\nkey k1")
    assert fields["fields"] == [{"type": "mrkdwn", "text": "*window_usd*\n12.5"}]
    assert context["type"] == "context"
    assert "dedup `spend_rate:key:k1:300s`" in context["elements"][0]["text"]
    resolved = slack_payload(alert(status="resolved"))
    assert resolved["text"].startswith(":white_check_mark: Tollway spend rate resolved:")


async def test_a_receiver_whose_answer_never_ends_does_not_hold_the_delivery() -> None:
    # The receiver's answer was read whole: one that streamed without end held the delivery
    # until its timeout (and its memory grew with what it sent), then was retried as failed.
    async def endless(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b"x" * 65_536
        for _ in range(100_000):  # 6.5 GB, far more than any answer is read of
            await response.write(chunk)
        return response

    app = web.Application()
    app.router.add_post("/{tail:.*}", endless)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    config = alerts_config("json", retries=0, timeout="2s")
    delivery = Delivery(config, Vault({"HOOK_JSON": f"http://127.0.0.1:{port}/hook"}))
    await delivery.start()
    try:
        [hook] = delivery.webhooks
        assert await delivery.deliver(hook, alert())  # delivered: its 200 is what counts
    finally:
        await delivery.close()
        await runner.cleanup()
