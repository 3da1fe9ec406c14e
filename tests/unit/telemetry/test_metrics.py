"""Metrics.record on real request contexts: retries vs fallbacks, rejections, guardrails, cost."""

from __future__ import annotations

from tollway.auth.principal import Principal
from tollway.core.context import Attempt, RequestContext
from tollway.core.errors import GatewayError
from tollway.core.types import Deployment, UpstreamTimeouts, Usage
from tollway.telemetry.metrics import Metrics

TIMEOUTS = UpstreamTimeouts(connect=1.0, first_byte=1.0, total=5.0)
A = Deployment(id="a", provider="openai", model="m", api_base="http://a", timeouts=TIMEOUTS)
B = Deployment(id="b", provider="openai", model="m", api_base="http://b", timeouts=TIMEOUTS)


def finished(**fields: object) -> RequestContext:
    ctx = RequestContext(request_id="r", endpoint="chat", model="m", client_headers={})
    ctx.principal = Principal(kind="key", id="key-1", team="red")
    ctx.deployment = B
    ctx.usage = Usage(input_tokens=10, output_tokens=4, cached_input_tokens=2)
    ctx.finished_at = ctx.started + 0.2
    for name, value in fields.items():
        setattr(ctx, name, value)
    return ctx


def value(metrics: Metrics, name: str, **labels: str) -> float:
    got = metrics.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def test_retries_and_fallbacks_are_told_apart() -> None:
    metrics = Metrics()
    tries = [Attempt(A, 0.0), Attempt(A, 0.1), Attempt(B, 0.2)]
    metrics.record(finished(tries=tries, cost_usd=0.25))
    short = {"model": "m", "deployment": "b", "provider": "openai", "team": "red"}
    assert value(metrics, "tollway_retries_total", **short) == 1
    assert value(metrics, "tollway_fallbacks_total", **short) == 1
    assert value(metrics, "tollway_cost_usd_total", **short) == 0.25
    assert value(metrics, "tollway_tokens_total", **short, kind="cached") == 2
    assert value(metrics, "tollway_requests_total", **short, status="200") == 1


def test_rejections_guardrails_and_no_key_label_by_default() -> None:
    metrics = Metrics()
    error = GatewayError("over budget", code="budget_exceeded")
    error.status = 429
    metrics.record(finished(error=error, guardrail_flags=["pii"]))
    assert value(metrics, "tollway_rejections_total", code="budget_exceeded", team="red") == 1
    assert value(metrics, "tollway_guardrail_triggers_total", guardrail="pii", team="red") == 1
    assert b"key-1" not in metrics.exposition()
    keyed = Metrics(per_key_labels=True)
    keyed.record(finished())
    assert b'key="key-1"' in keyed.exposition()
