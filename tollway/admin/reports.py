"""``GET /admin/reports/usage``: requests, tokens, cost, latency, cache and guardrails,
grouped by team, user, key, service tag, model, provider, deployment and day.

Admins see every request; anyone else only their teams' (viewer and above). CSV with
``format=csv``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from aiohttp import web

from tollway.admin.access import require_role
from tollway.admin.routes import AdminCall, Route
from tollway.core.errors import InvalidRequest
from tollway.store.reports import FILTERS

_COLUMNS = (
    "requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "total_tokens",
    "cost_usd", "avg_latency_ms", "p95_latency_ms", "avg_ttft_ms", "p95_ttft_ms",
    "cache_hits", "cache_hit_rate", "guardrail_triggers", "estimated_requests",
)  # fmt: skip


def _time(value: str | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"'{name}' is not an ISO 8601 date or time", param=name) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


async def usage_report(call: AdminCall) -> Any:
    require_role(call.principal, "viewer")
    query = call.request.query
    group_by = [name for name in query.get("group_by", "team").split(",") if name]
    filters = {name: query[name] for name in FILTERS if name in query}
    teams = None if call.principal.has_role("admin") else list(call.principal.teams)
    rows = await call.gateway.store.reports.usage(
        group_by,
        since=_time(query.get("since"), "since"),
        until=_time(query.get("until"), "until"),
        filters=filters,
        teams=teams,
    )
    for row in rows:
        row.pop("cost_micros", None)
    if query.get("format") == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, [*group_by, *_COLUMNS], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return web.Response(text=out.getvalue(), content_type="text/csv")
    return {"group_by": group_by, "data": rows}


REPORT_ROUTES = [
    Route("GET", "/admin/reports/usage", usage_report, "Usage and spend, grouped"),
]
