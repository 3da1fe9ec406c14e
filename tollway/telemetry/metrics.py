"""Prometheus metrics for every request, recorded once per request in ``on_complete``."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tollway.core.context import RequestContext
from tollway.core.pipeline import Stage

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_PER_TOKEN_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class Metrics:
    """The gateway's metric families, in a registry of their own (no global state)."""

    def __init__(self, per_key_labels: bool = False) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.per_key_labels = per_key_labels
        labels = ["model", "deployment", "provider", "team", "status"]
        if per_key_labels:
            labels.append("key")
        r = self.registry
        self.requests = Counter("tollway_requests", "Requests answered", labels, registry=r)
        short = ["model", "deployment", "provider", "team"]
        self.ttft = Histogram(
            "tollway_time_to_first_token_seconds", "Time to first streamed token", short,
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.per_token = Histogram(
            "tollway_time_per_output_token_seconds", "Generation time per output token", short,
            buckets=_PER_TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "tollway_request_duration_seconds", "Total request latency", short,
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokens = Counter("tollway_tokens", "Tokens by kind", [*short, "kind"], registry=r)
        self.cost = Counter("tollway_cost_usd", "Settled cost in USD", short, registry=r)
        self.cache = Counter(
            "tollway_cache_lookups", "Cache outcomes", ["model", "outcome"], registry=r
        )
        self.retries = Counter(
            "tollway_retries", "Extra attempts on one deployment", short, registry=r
        )
        self.fallbacks = Counter(
            "tollway_fallbacks", "Attempts moved to another deployment", short, registry=r
        )
        self.rejections = Counter(
            "tollway_rejections", "Requests refused, by error code", ["code", "team"], registry=r
        )
        self.guardrails = Counter(
            "tollway_guardrail_triggers", "Guardrail triggers", ["guardrail", "team"], registry=r
        )
        self.circuit = Gauge(
            "tollway_circuit_state", "Circuit state per deployment (0 closed, 1 half-open, 2 open)",
            ["deployment"], registry=r,
        )  # fmt: skip
        self.budget = Gauge(
            "tollway_budget_utilisation_ratio", "Spent / limit per budget",
            ["scope", "scope_id", "period"], registry=r,
        )  # fmt: skip
        self._children: dict[tuple[str, ...], tuple[Any, ...]] = {}

    def set_circuit_state(self, deployment: str, state: int) -> None:
        """For the routing layer: 0 closed, 1 half-open, 2 open."""
        self.circuit.labels(deployment).set(state)

    def set_budget_utilisation(self, scope: str, scope_id: str, period: str, ratio: float) -> None:
        """For the limits layer: the share of a budget spent."""
        self.budget.labels(scope, scope_id, period).set(ratio)

    def exposition(self) -> bytes:
        """The text exposition format of every metric."""
        return generate_latest(self.registry)

    def _label_children(self, key: tuple[str, ...]) -> tuple[Any, ...]:
        short = key[:4]
        children = (
            self.requests.labels(*key),
            self.ttft.labels(*short),
            self.per_token.labels(*short),
            self.latency.labels(*short),
            self.tokens.labels(*short, "input"),
            self.tokens.labels(*short, "output"),
            self.tokens.labels(*short, "cached"),
            self.cost.labels(*short),
            self.retries.labels(*short),
            self.fallbacks.labels(*short),
        )
        self._children[key] = children
        return children

    def record(self, ctx: RequestContext) -> None:
        """Count one finished request (label children cached per label tuple)."""
        deployment = ctx.deployment
        principal = ctx.principal
        team = (principal.team if principal else None) or ""
        status = str(ctx.error.status) if ctx.error is not None else "200"
        key: tuple[str, ...] = (
            ctx.model,
            deployment.id if deployment else "",
            deployment.provider if deployment else "",
            team,
            status,
        )
        if self.per_key_labels:
            key = (*key, principal.id if principal else "")
        children = self._children.get(key) or self._label_children(key)
        requests, ttft, per_token, latency, t_in, t_out, t_cached, cost, retries, fallbacks = (
            children
        )
        requests.inc()
        end = ctx.finished_at
        if end is not None:
            latency.observe(end - ctx.started)
        if ctx.first_token_at is not None:
            ttft.observe(ctx.first_token_at - ctx.started)
        usage = ctx.usage
        if usage is not None:
            t_in.inc(usage.input_tokens)
            t_out.inc(usage.output_tokens)
            t_cached.inc(usage.cached_input_tokens)
            if usage.output_tokens and end is not None and ctx.first_token_at is not None:
                per_token.observe((end - ctx.first_token_at) / usage.output_tokens)
        if ctx.cost_usd:
            cost.inc(ctx.cost_usd)
        if ctx.cache_status is not None:
            self.cache.labels(ctx.model, ctx.cache_status).inc()
        tries = ctx.tries
        if len(tries) > 1:
            self._count_attempts(tries, retries, fallbacks)
        if ctx.error is not None and ctx.error.status in (402, 429):
            self.rejections.labels(ctx.error.code or "", team).inc()
        for flag in ctx.guardrail_flags:
            self.guardrails.labels(flag, team).inc()

    @staticmethod
    def _count_attempts(tries: list[Any], retries: Any, fallbacks: Any) -> None:
        previous = tries[0].deployment.id
        for attempt in tries[1:]:
            (retries if attempt.deployment.id == previous else fallbacks).inc()
            previous = attempt.deployment.id


class MetricsStage(Stage):
    """Records metrics after the last byte; nothing on the request's way in."""

    name = "telemetry"

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def on_complete(self, ctx: RequestContext) -> None:
        self.metrics.record(ctx)
