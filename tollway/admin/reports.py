"""``GET /admin/reports/usage``: requests, tokens, cost, latency, cache and guardrails,
grouped by team, user, key, service tag, model, provider, deployment and day; ``since`` and
``until`` as ISO times or ages (``7d``), as ``/admin/logs`` takes them.

Tokens: ``input_tokens`` counts every prompt token, cache reads (``cached_tokens``) and cache
writes (``cache_write_tokens``, of which ``cache_write_1h_tokens`` for an hour) included, as
each is billed at its own rate (Anthropic's 5-minute and 1-hour writes above plain input).
Cost: ``cost_usd`` is everything billed; ``tool_cost_usd`` the part of it that is the fees of
the provider's server-side tools (web search...), for ``tool_calls`` calls.

Admins see every request; anyone else (viewer and above) the rows ``/admin/logs`` shows
them: their teams', their user's and their key's. CSV with
``format=csv``. A filter given empty (``?team=``) is a 400 naming it, as on ``/admin/logs``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from aiohttp import web

from tollway.admin.access import require_role
from tollway.admin.call import AdminCall, Query, Route
from tollway.admin.logs import TIME_FORMS, query_filter, query_time, visibility
from tollway.admin.render import csv_text
from tollway.core.errors import InvalidRequest
from tollway.store import RequestLogFilter
from tollway.store.reports import FILTERS, GROUPS

_COLUMNS = (
    "requests", "errors", "input_tokens", "output_tokens", "cached_tokens",
    "cache_write_tokens", "cache_write_1h_tokens", "total_tokens",
    "cost_usd", "tool_calls", "tool_cost_usd", "avg_latency_ms", "p95_latency_ms",
    "avg_ttft_ms", "p95_ttft_ms",
    "cache_hits", "cache_hit_rate", "guardrail_triggers", "estimated_requests",
)  # fmt: skip


async def usage_report(call: AdminCall) -> Any:
    require_role(call.principal, "viewer")
    query = call.request.query
    # Each name once (a column per name), in the order given.
    group_by = list(dict.fromkeys(n for n in query.get("group_by", "team").split(",") if n))
    form = query.get("format", "json")
    if form not in ("json", "csv"):
        raise InvalidRequest("'format' must be json or csv", param="format")
    given = {name: query_filter(query, name) for name in FILTERS}
    filters = {name: value for name, value in given.items() if value is not None}
    # What /admin/logs shows the caller (its teams', its user's, its key's rows), so the
    # report adds up to the log: it counted only the teams', and a member's key of no team
    # read its requests in the log and a report of nothing.
    visible = visibility(call.principal)
    now = dt.datetime.now(dt.UTC)
    rows = await call.gateway.store.reports.usage(
        group_by,
        # ISO times or ages (7d), as /admin/logs and `tollway logs` take them.
        since=query_time(query, "since", now),
        until=query_time(query, "until", now),
        filters=filters,
        visible=RequestLogFilter(**visible) if visible else None,
    )
    for row in rows:
        row.pop("cost_micros", None)
        row.pop("tool_cost_micros", None)
    if form == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, [*group_by, *_COLUMNS], extrasaction="ignore")
        writer.writeheader()
        # A group's name may be the client's text (the model it asked for): never a formula.
        writer.writerows(
            {name: csv_text(value) if isinstance(value, str) else value
             for name, value in row.items()}
            for row in rows
        )  # fmt: skip
        return web.Response(text=out.getvalue(), content_type="text/csv")
    return {"group_by": group_by, "data": rows}


REPORT_QUERY = (
    Query("group_by", f"Comma-separated: day (UTC), {', '.join(GROUPS)} (default team)"),
    *(Query(name, f"Requests of this {name}") for name in FILTERS),
    Query("since", f"From this time, inclusive: {TIME_FORMS}"),
    Query("until", f"Before this time: {TIME_FORMS}"),
    Query("format", "json (the default) or csv"),
)

REPORT_ROUTES = [
    Route(
        "GET",
        "/admin/reports/usage",
        usage_report,
        "Usage and spend, grouped",
        query=REPORT_QUERY,
    ),
]
