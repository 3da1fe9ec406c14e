"""Prometheus metrics for every request, recorded once per request in ``on_complete``."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from tollway.auth.principal import Principal
from tollway.core.context import RequestContext
from tollway.core.pipeline import Stage

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_PER_TOKEN_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)

UNKNOWN_MODEL = "(unknown)"
"""The ``model`` label of a request for a name no model group has: the name is the client's,
and a label per name would let any caller add series without end."""


class _Histogram:
    """Bucket counts of one label set; observing is a C bisect and two additions."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        running = 0
        out: list[tuple[str, float]] = []
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class _Series:
    """Everything recorded per (model, deployment, provider, team) label set."""

    __slots__ = (
        "cached",
        "cost",
        "fallbacks",
        "input",
        "latency",
        "output",
        "per_token",
        "requests",
        "retries",
        "ttft",
    )

    def __init__(self) -> None:
        self.requests: dict[tuple[str, ...], int] = {}  # by status (and key)
        self.latency = _Histogram(_LATENCY_BUCKETS)
        self.ttft = _Histogram(_LATENCY_BUCKETS)
        self.per_token = _Histogram(_PER_TOKEN_BUCKETS)
        self.input = self.output = self.cached = 0
        self.cost = 0.0
        self.retries = self.fallbacks = 0


class Metrics:
    """The gateway's metrics: per-request series kept as plain numbers and turned into
    Prometheus families only when ``/metrics`` is scraped.

    prometheus-client's own counters and histograms take a lock and walk the buckets in
    Python on every update; with about ten updates a request that cost 70 µs per request
    on the benchmark (docs/performance.md). Here a request costs a dict lookup and a few
    additions. Rare events (cache outcomes, rejections, guardrails) and the gauges use
    prometheus-client directly.
    """

    def __init__(self, per_key_labels: bool = False) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.per_key_labels = per_key_labels
        self._series: dict[tuple[str, ...], _Series] = {}
        r = self.registry
        r.register(_SeriesCollector(self))
        self.cache = Counter(
            "tollway_cache_lookups", "Cache outcomes", ["model", "outcome"], registry=r
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
        self._circuits: set[str] = set()
        """The deployments with a ``tollway_circuit_state`` series."""
        self._deployments: Collection[str] | None = None
        """The deployments configured now (``keep_circuits``); ``None``: any."""
        self.config_info = Gauge(
            "tollway_config_info", "The config this process runs, by its fingerprint",
            ["version"], registry=r,
        )  # fmt: skip
        self._budget_shares: dict[tuple[str, str, str], float] = {}
        r.register(_BudgetCollector(self._budget_shares))
        self.alerts = Counter(
            "tollway_alerts", "Alerts raised and handed to webhooks", ["kind", "status"], registry=r
        )
        self.alerts_deduplicated = Counter(
            "tollway_alerts_deduplicated", "Alerts not sent again within alerts.dedup_window",
            ["kind"], registry=r,
        )  # fmt: skip
        self.alert_delivery_failures = Counter(
            "tollway_alert_delivery_failures", "Alert deliveries that failed after every retry",
            ["webhook"], registry=r,
        )  # fmt: skip

    def set_config_version(self, version: str) -> None:
        """The config this process runs (``tollway_config_info``, 1 for the current one):
        replicas whose versions differ run different configs."""
        self.config_info.clear()
        self.config_info.labels(version).set(1)

    def set_circuit_state(self, deployment: str, state: int) -> None:
        """For the routing layer: 0 closed, 1 half-open, 2 open. A deployment no longer
        configured (a request begun before the reload that removed it still ends on it) has
        no series to set."""
        if self._deployments is not None and deployment not in self._deployments:
            return
        self._circuits.add(deployment)
        self.circuit.labels(deployment).set(state)

    def keep_circuits(self, deployments: Collection[str]) -> None:
        """For the gateway, when its deployments were read (at start, on a reload): the
        deployments configured now; the circuit series of every other one leaves
        ``/metrics``. It stayed at its last state: a deployment removed while its circuit was
        open read open for the life of the process, and an alert on it never resolved."""
        self._deployments = frozenset(deployments)
        for gone in [d for d in self._circuits if d not in self._deployments]:
            self._circuits.discard(gone)
            self.circuit.remove(gone)

    def set_budget_utilisation(self, scope: str, scope_id: str, period: str, ratio: float) -> None:
        """For the limits layer: the share of a budget spent. Called at every settlement, so
        it only keeps the number (a prometheus-client gauge takes a lock for each ``set``);
        the gauge family is made when ``/metrics`` is scraped."""
        self._budget_shares[(scope, scope_id, period)] = ratio

    def keep_budgets(self, budgets: Collection[tuple[str, str, str]]) -> None:
        """For the limits layer, when its budgets were read again (a reload, the admin API):
        forget the share of every budget not among ``budgets`` (scope, id, period), so a
        removed budget's series leaves ``/metrics``."""
        for gone in [labels for labels in self._budget_shares if labels not in budgets]:
            del self._budget_shares[gone]

    def count_alert(self, kind: str, status: str) -> None:
        """For the alerts layer: an alert was raised (``firing`` or ``resolved``)."""
        self.alerts.labels(kind, status).inc()

    def count_alert_deduplicated(self, kind: str) -> None:
        """For the alerts layer: an alert was dropped as a repeat."""
        self.alerts_deduplicated.labels(kind).inc()

    def count_alert_delivery_failure(self, webhook: str) -> None:
        """For the alerts layer: a delivery to the webhook named ``webhook`` failed for good."""
        self.alert_delivery_failures.labels(webhook).inc()

    def watch_request_log(self, writer: RequestLogCounts) -> None:
        """Report the request log writer's queue, lag and counts (read at scrape time)."""
        self.registry.register(_RequestLogCollector(writer))

    def watch_refusals(self, refusals: RefusalCounts) -> None:
        """Report the refused requests the request log only counted (read at scrape time)."""
        self.registry.register(
            _RefusalCollector(
                refusals,
                "tollway_request_log_refusals_suppressed",
                "Requests refused before the pipeline that were counted, not recorded in the "
                "request log (their kind over telemetry.request_log.refusals_per_second)",
            )
        )

    def watch_admin_denials(self, denials: RefusalCounts) -> None:
        """Report the denied admin requests the audit trail only counted (at scrape time)."""
        self.registry.register(
            _RefusalCollector(
                denials,
                "tollway_admin_denials_suppressed",
                "Admin requests denied (401, 403) that were counted, not recorded in the audit "
                "trail (their kind over auth.admin_denials_per_second)",
            )
        )

    def watch_unknown_keys(self, limit: UnknownKeyCounts) -> None:
        """Report the unknown keys refused without a store lookup (read at scrape time)."""
        self.registry.register(_UnknownKeyCollector(limit))

    def exposition(self) -> bytes:
        """The text exposition format of every metric."""
        return bytes(generate_latest(self.registry))

    def series(self) -> dict[tuple[str, ...], _Series]:
        """The per-request series, by (model, deployment, provider, team)."""
        return self._series

    def record_refused(self, status: int, principal: Principal | None, model: str) -> None:
        """Count a request refused before the pipeline (a bad credential, a body that does
        not parse): no stage saw it, so ``record`` never does. ``model``: its label, a model
        group's name or ``UNKNOWN_MODEL``; no deployment, provider or latency."""
        team = (principal.team if principal else None) or ""
        key = (model, "", "", team)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        outcome = (
            (str(status), principal.id if principal else "")
            if self.per_key_labels
            else (str(status),)
        )
        series.requests[outcome] = series.requests.get(outcome, 0) + 1

    def record(self, ctx: RequestContext, model: str | None = None) -> None:
        """Count one finished request; ``model``: its label, when not ``ctx.model``."""
        deployment = ctx.deployment
        principal = ctx.principal
        team = (principal.team if principal else None) or ""
        if model is None:
            model = ctx.model
        key = (
            model,
            deployment.id if deployment else "",
            deployment.provider if deployment else "",
            team,
        )
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        status = str(ctx.error.status) if ctx.error is not None else "200"
        outcome = (status, principal.id if principal else "") if self.per_key_labels else (status,)
        series.requests[outcome] = series.requests.get(outcome, 0) + 1
        end = ctx.finished_at
        if end is not None:  # ``_Histogram.observe`` inline: every request has a latency
            latency = series.latency
            seconds = end - ctx.started
            latency.counts[bisect_left(latency.bounds, seconds)] += 1
            latency.total += seconds
        first = ctx.first_token_at
        if first is not None:
            series.ttft.observe(first - ctx.started)
        usage = ctx.usage
        if usage is not None:
            series.input += usage.input_tokens
            series.output += usage.output_tokens
            series.cached += usage.cached_input_tokens
            if usage.output_tokens and end is not None and first is not None:
                series.per_token.observe((end - first) / usage.output_tokens)
        if ctx.cost_usd:
            series.cost += ctx.cost_usd
        tries = ctx.tries
        if len(tries) > 1:
            previous = tries[0].deployment.id
            for attempt in tries[1:]:
                if attempt.deployment.id == previous:
                    series.retries += 1
                else:
                    series.fallbacks += 1
                previous = attempt.deployment.id
        if ctx.cache_status is not None:
            self.cache.labels(model, ctx.cache_status).inc()
        if ctx.error is not None and ctx.error.status in (402, 429):
            self.rejections.labels(ctx.error.code or "", team).inc()
        for flag in ctx.guardrail_flags:
            self.guardrails.labels(flag, team).inc()


class _SeriesCollector:
    """Renders the per-request series as Prometheus families at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        short = ["model", "deployment", "provider", "team"]
        status = ["status", "key"] if self._metrics.per_key_labels else ["status"]
        requests = CounterMetricFamily(
            "tollway_requests", "Requests answered", labels=short + status
        )
        tokens = CounterMetricFamily("tollway_tokens", "Tokens by kind", labels=[*short, "kind"])
        cost = CounterMetricFamily("tollway_cost_usd", "Settled cost in USD", labels=short)
        retries = CounterMetricFamily(
            "tollway_retries", "Extra attempts on one deployment", labels=short
        )
        fallbacks = CounterMetricFamily(
            "tollway_fallbacks", "Attempts moved to another deployment", labels=short
        )
        histograms = {
            "latency": HistogramMetricFamily(
                "tollway_request_duration_seconds", "Total request latency", labels=short
            ),
            "ttft": HistogramMetricFamily(
                "tollway_time_to_first_token_seconds", "Time to first streamed token", labels=short
            ),
            "per_token": HistogramMetricFamily(
                "tollway_time_per_output_token_seconds",
                "Generation time per output token",
                labels=short,
            ),
        }
        for key, series in list(self._metrics.series().items()):
            labels = list(key)
            for outcome, count in list(series.requests.items()):
                requests.add_metric([*labels, *outcome], count)
            tokens.add_metric([*labels, "input"], series.input)
            tokens.add_metric([*labels, "output"], series.output)
            tokens.add_metric([*labels, "cached"], series.cached)
            cost.add_metric(labels, series.cost)
            retries.add_metric(labels, series.retries)
            fallbacks.add_metric(labels, series.fallbacks)
            for name, family in histograms.items():
                histogram: _Histogram = getattr(series, name)
                family.add_metric(labels, histogram.cumulative(), histogram.total)
        yield from (requests, tokens, cost, retries, fallbacks, *histograms.values())


class _BudgetCollector:
    """``tollway_budget_utilisation_ratio``: the last share seen of each budget, rendered at
    scrape time."""

    def __init__(self, shares: dict[tuple[str, str, str], float]) -> None:
        self._shares = shares

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "tollway_budget_utilisation_ratio",
            "Spent / limit per budget",
            labels=["scope", "scope_id", "period"],
        )
        for labels, ratio in list(self._shares.items()):
            family.add_metric(list(labels), ratio)
        yield family


class RequestLogCounts(Protocol):
    """What the request log writer (telemetry/request_log.py) tells the metrics."""

    written: int
    dropped: int
    spooled: int
    rejected: int

    def queue_depth(self) -> int: ...

    def lag(self) -> float: ...


class _RequestLogCollector:
    """The request log writer's state as Prometheus families, read when scraped."""

    def __init__(self, writer: RequestLogCounts) -> None:
        self._writer = writer

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        writer = self._writer
        prefix = "tollway_request_log_"
        yield GaugeMetricFamily(
            prefix + "queue_depth", "Request log records waiting in memory", writer.queue_depth()
        )
        yield GaugeMetricFamily(
            prefix + "lag_seconds", "Age of the oldest record not yet in the store", writer.lag()
        )
        for name, help_text, value in (
            ("written", "Request log records written to the store", writer.written),
            ("dropped", "Request log records dropped (queue full)", writer.dropped),
            ("spooled", "Request log records spooled to disk (store down)", writer.spooled),
            ("rejected", "Request log records the store refused", writer.rejected),
        ):
            yield CounterMetricFamily(prefix + "records_" + name, help_text, value)


class RefusalCounts(Protocol):
    """What the refusal log (telemetry/refusals.py) tells the metrics."""

    def suppressed(self) -> dict[tuple[int, str], int]: ...


class _RefusalCollector:
    """Refusals over their rate, by status and code, read when scraped."""

    def __init__(self, refusals: RefusalCounts, name: str, help_text: str) -> None:
        self._refusals = refusals
        self._name = name
        self._help = help_text

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._help, labels=["status", "code"])
        for (status, code), count in sorted(self._refusals.suppressed().items()):
            family.add_metric([str(status), code], count)
        yield family


class UnknownKeyCounts(Protocol):
    """What the limit on unknown keys' store lookups (auth/miss_limit.py) tells the metrics."""

    @property
    def refused(self) -> int: ...


class _UnknownKeyCollector:
    """Unknown keys refused unasked, read when scraped."""

    def __init__(self, limit: UnknownKeyCounts) -> None:
        self._limit = limit

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "tollway_unknown_key_lookups_refused",
            "Unknown API keys refused without a store lookup (their client address over "
            "auth.unknown_key_lookups_per_second)",
            self._limit.refused,
        )


class MetricsStage(Stage):
    """Records metrics after the last byte; nothing on the request's way in."""

    name = "telemetry"

    def __init__(self, metrics: Metrics, is_model: Callable[[str], object]) -> None:
        """``is_model``: truthy for the name of a model group (the routing table's ``get``)."""
        self.metrics = metrics
        self._is_model = is_model

    def on_complete(self, ctx: RequestContext) -> None:
        # A request that reached a deployment asked for a model group; one that did not may
        # have asked for any name at all (refused with a 404, or earlier).
        if ctx.deployment is None and not self._is_model(ctx.model):
            self.metrics.record(ctx, UNKNOWN_MODEL)
        else:
            self.metrics.record(ctx)
