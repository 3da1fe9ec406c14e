"""Spend and usage reports over the request log, grouped as an operator asks.

One aggregate query per report: sums and counts in SQL (portable), percentiles of latency
and time to first token with ``percentile_cont`` on PostgreSQL and, on SQLite (which has
none), from the group's values read in the same order and interpolated the same way.
Costs are summed as integer micro-dollars, so a report adds up to the cent and the token.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import ColumnElement, Date, Integer, Select, case, cast, func, select, type_coerce

from tollway.store.columns import require_aware
from tollway.store.errors import InvalidRecord
from tollway.store.models import RequestLogRow
from tollway.store.request_log import RequestLogFilter
from tollway.store.transaction import Sessions

GROUPS: Final[dict[str, str]] = {
    "team": "team_id",
    "user": "user_id",
    "key": "key_id",
    "service": "service",
    "model": "model",
    "served_model": "served_model",
    "provider": "provider",
    "deployment": "deployment_id",
    "status": "status",
}
"""What a report may be grouped by (besides ``day``), and the column of each."""
FILTERS: Final[tuple[str, ...]] = ("team", "user", "key", "service", "model", "provider")


def _percentile(values: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks, as PostgreSQL's ``percentile_cont``."""
    if not values:
        return None
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class ReportRepository:
    """Usage and spend, grouped and filtered."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def usage(
        self,
        group_by: Sequence[str],
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        filters: dict[str, str] | None = None,
        visible: RequestLogFilter | None = None,
    ) -> list[dict[str, Any]]:
        """One row per group: requests, errors, requests whose usage the gateway estimated
        (the provider reported none), tokens (input, output, cache reads and writes), cost,
        server-side tool calls and the part of the cost they are, latency, TTFT, cache,
        guardrails.

        ``group_by``: names of ``GROUPS`` and ``day`` (UTC). ``visible``: only the rows a
        non-admin may read, by its ``visible_*`` fields, the same rule as ``/admin/logs``
        (its teams', its user's, its key's), so a report adds up to the log it reads;
        ``None``: all.
        """
        for name in group_by:
            if name != "day" and name not in GROUPS:
                raise InvalidRecord(
                    f"cannot group by {name[:100]!r}; choose from day, {', '.join(GROUPS)}",
                    param="group_by",
                )
        async with self._sessions() as session:
            dialect = session.get_bind().dialect.name
            keys = [self._group_column(name, dialect).label(name) for name in group_by]
            query = self._aggregate(keys, dialect)
            query = self._where(query, since, until, filters or {}, visible)
            if keys:
                query = query.group_by(*keys).order_by(*keys)
            rows = [dict(row._mapping) for row in await session.execute(query)]
            if dialect != "postgresql":
                await self._percentiles(
                    session, rows, keys, group_by, since, until, filters, visible
                )
        return [self._finish(row) for row in rows if row["requests"]]

    @staticmethod
    def _group_column(name: str, dialect: str) -> ColumnElement[Any]:
        if name == "day":
            if dialect == "postgresql":
                return cast(func.timezone("UTC", RequestLogRow.at), Date)
            # SQLite keeps the time as microseconds since the epoch (columns.UTCMicros).
            return func.date(type_coerce(RequestLogRow.at, Integer) // 1_000_000, "unixepoch")
        column: ColumnElement[Any] = getattr(RequestLogRow, GROUPS[name])
        return column

    @staticmethod
    def _aggregate(keys: list[Any], dialect: str) -> Select[Any]:
        row = RequestLogRow
        errors = func.sum(case((row.status >= 400, 1), else_=0))
        hits = func.sum(case((row.cache == "hit", 1), else_=0))
        lookups = func.sum(case((row.cache.in_(("hit", "miss")), 1), else_=0))
        length = func.jsonb_array_length if dialect == "postgresql" else func.json_array_length
        guarded = func.sum(case((length(row.guardrails) > 0, 1), else_=0))
        estimated = func.sum(case((row.usage_estimated.is_(True), 1), else_=0))
        columns: list[Any] = [
            *keys,
            func.count().label("requests"),
            errors.label("errors"),
            estimated.label("estimated_requests"),
            func.coalesce(func.sum(row.input_tokens), 0).label("input_tokens"),
            func.coalesce(func.sum(row.output_tokens), 0).label("output_tokens"),
            func.coalesce(func.sum(row.cached_tokens), 0).label("cached_tokens"),
            func.coalesce(func.sum(row.cache_write_tokens), 0).label("cache_write_tokens"),
            func.coalesce(func.sum(row.cache_write_1h_tokens), 0).label("cache_write_1h_tokens"),
            func.coalesce(func.sum(row.cost_micros), 0).label("cost_micros"),
            func.coalesce(func.sum(row.tool_calls), 0).label("tool_calls"),
            func.coalesce(func.sum(row.tool_cost_micros), 0).label("tool_cost_micros"),
            func.avg(row.latency_ms).label("avg_latency_ms"),
            func.avg(row.ttft_ms).label("avg_ttft_ms"),
            hits.label("cache_hits"),
            lookups.label("cache_lookups"),
            guarded.label("guardrail_triggers"),
        ]
        if dialect == "postgresql":
            columns += [
                func.percentile_cont(0.95).within_group(row.latency_ms).label("p95_latency_ms"),
                func.percentile_cont(0.95).within_group(row.ttft_ms).label("p95_ttft_ms"),
            ]
        return select(*columns)

    @staticmethod
    def _where(
        query: Select[Any],
        since: dt.datetime | None,
        until: dt.datetime | None,
        filters: dict[str, str],
        visible: RequestLogFilter | None,
    ) -> Select[Any]:
        row = RequestLogRow
        if since is not None:
            query = query.where(row.at >= require_aware(since, "since"))
        if until is not None:
            query = query.where(row.at < require_aware(until, "until"))
        for name, value in filters.items():
            if name not in FILTERS:
                raise InvalidRecord(f"cannot filter by {name!r}; choose from {', '.join(FILTERS)}")
            query = query.where(getattr(row, GROUPS[name]) == value)
        if visible is not None:
            query = query.where(*visible.conditions())
        return query

    async def _percentiles(
        self,
        session: Any,
        rows: list[dict[str, Any]],
        keys: list[Any],
        group_by: Sequence[str],
        since: dt.datetime | None,
        until: dt.datetime | None,
        filters: dict[str, str] | None,
        visible: RequestLogFilter | None,
    ) -> None:
        query = select(*keys, RequestLogRow.latency_ms, RequestLogRow.ttft_ms)
        query = self._where(query, since, until, filters or {}, visible)
        latencies: dict[tuple[Any, ...], list[float]] = {}
        ttfts: dict[tuple[Any, ...], list[float]] = {}
        for found in await session.execute(query):
            group = tuple(found[: len(keys)])
            if found.latency_ms is not None:
                latencies.setdefault(group, []).append(found.latency_ms)
            if found.ttft_ms is not None:
                ttfts.setdefault(group, []).append(found.ttft_ms)
        for row in rows:
            group = tuple(row[name] for name in group_by)
            row["p95_latency_ms"] = _percentile(latencies.get(group, ()), 0.95)
            row["p95_ttft_ms"] = _percentile(ttfts.get(group, ()), 0.95)

    @staticmethod
    def _finish(row: dict[str, Any]) -> dict[str, Any]:
        out = dict(row)
        if "day" in out and out["day"] is not None:
            out["day"] = str(out["day"])[:10]
        for name in (
            "requests",
            "errors",
            "estimated_requests",
            "input_tokens",
            "output_tokens",
            "cached_tokens",
            "cache_write_tokens",
            "cache_write_1h_tokens",
            "cost_micros",
            "tool_calls",
            "tool_cost_micros",
            "cache_hits",
            "cache_lookups",
            "guardrail_triggers",
        ):
            out[name] = int(out[name] or 0)
        out["cost_usd"] = out["cost_micros"] / 1_000_000
        out["tool_cost_usd"] = out["tool_cost_micros"] / 1_000_000
        out["total_tokens"] = out["input_tokens"] + out["output_tokens"]
        lookups = out.pop("cache_lookups")
        out["cache_hit_rate"] = out["cache_hits"] / lookups if lookups else None
        for name in ("avg_latency_ms", "avg_ttft_ms", "p95_latency_ms", "p95_ttft_ms"):
            value = out.get(name)
            out[name] = None if value is None else round(float(value), 3)
        return out
