"""Admin API of the request log: ``GET /admin/logs``, as pages of JSON or a CSV/JSONL export.

Filters: ``user``, ``team``, ``key`` (ids), ``model`` (the model asked for), ``status`` (a
status such as ``429``, a class such as ``5xx``, ``ok`` or ``error``), ``source_ip`` (one
address, IPv4 or IPv6), ``since`` (inclusive) and ``until`` (exclusive), each an ISO 8601
time (UTC when it has no zone) or an age such as ``15m``, ``24h``, ``7d``. Pages are newest
first: ``limit`` (1 to 1000, default 100) and ``cursor`` (the ``next_cursor`` of the page
before). ``format=csv`` or ``format=jsonl`` streams every matching record instead, newest
first, read from the store a page at a time; in CSV, text that a spreadsheet would
take for a formula is written with a ``'`` in front (render.csv_text). A filter given
empty (``?team=``) is a 400 naming it (``query_filter``), as on ``/admin/reports/usage``.

Who sees what follows the keys they may read (admin/access.py): admins everything; anyone
in a team (team admin, member, viewer, or a key of that team) the team's records; anyone
the records of their own user and their own key.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import ipaddress
import logging
import re
from typing import Any

import orjson
from aiohttp import web

from tollway.admin.access import require_role
from tollway.admin.call import AdminCall, Query, Route
from tollway.admin.render import csv_text, record_json
from tollway.auth.principal import Principal
from tollway.core.errors import InvalidRequest
from tollway.store import RequestLogFilter, RequestLogRecord
from tollway.store.request_log import COLUMNS, MAX_PAGE

log = logging.getLogger("tollway.admin")

_AGE = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_AGE_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
EXPORT_COLUMNS = (*COLUMNS[:COLUMNS.index("cost_micros") + 1], "cost_usd",
                  *COLUMNS[COLUMNS.index("cost_micros") + 1:], "tool_cost_usd")  # fmt: skip
"""CSV columns: every stored column, the cost in dollars after ``cost_micros``, and the tool
fees' in dollars after ``tool_cost_micros``."""


def record_row(record: RequestLogRecord) -> dict[str, Any]:
    """A record as admin API JSON, with ``cost_usd`` beside ``cost_micros`` and
    ``tool_cost_usd`` beside ``tool_cost_micros`` (the part of the cost that is the fees of
    server-side tools)."""
    row = record_json(record)
    row["cost_usd"] = record.cost_micros / 1_000_000
    row["tool_cost_usd"] = record.tool_cost_micros / 1_000_000
    return row


def query_filter(query: Any, name: str) -> str | None:
    """Filter parameter ``name``: ``None`` when absent; a 400 naming it when given empty (or
    only blanks): ``?team=`` is a filter whose value went missing (an unset shell variable,
    an empty form field), and answering every team's rows, or none, as if it had a value
    would be a wrong answer that looks right. Every filter of ``/admin/logs`` and
    ``/admin/reports/usage`` (and so of ``tollway logs`` and ``tollway report``) reads so."""
    value = query.get(name)
    if value is None:
        return None
    if not value.strip():
        raise InvalidRequest(
            f"'{name}' is empty: give it a value, or leave it out not to filter by it",
            param=name,
        )
    return str(value)


def query_time(query: Any, name: str, now: dt.datetime) -> dt.datetime | None:
    """Query parameter ``name`` as a time: ISO 8601 (UTC when it has no zone) or an age
    before ``now`` (``15m``, ``24h``, ``7d``); ``None`` when absent; a 400 naming it when
    empty or neither."""
    value = query_filter(query, name)
    if value is None:
        return None
    age = _AGE.match(value)
    if age is not None:
        try:
            return now - dt.timedelta(seconds=float(age.group(1)) * _AGE_SECONDS[age.group(2)])
        except OverflowError:  # 99999999d: before year 1, a 500 it was
            raise InvalidRequest(
                f"'{name}' reaches back past year 1: {value!r}", param=name
            ) from None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(
            f"'{name}' must be an ISO 8601 time or an age such as 24h or 7d", param=name
        ) from None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def source_ips(query: Any) -> tuple[str, ...] | None:
    """The ``source_ip`` parameter as the spellings the log may hold of that one address;
    ``None`` when absent; a 400 naming it when it is not an address.

    A row holds the peer address as the socket gave it (or as a trusted proxy's
    ``X-Forwarded-For`` did, made canonical): an IPv4 client of a dual-stack
    listener is ``::ffff:a.b.c.d``, which Python writes ``::ffff:xxxx:xxxx``; each finds the
    others. A network (``10.0.0.0/8``) is refused: the column is text on SQLite and
    PostgreSQL alike, and a network is no prefix of its addresses' text (a ``/20`` cuts an
    octet; IPv6 text compresses zeros); PostgreSQL's ``inet`` would do it on one store only."""
    value = query_filter(query, "source_ip")
    if value is None:
        return None
    value = value.strip()
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        what = "one address, not a network" if "/" in value else "an IPv4 or IPv6 address"
        raise InvalidRequest(
            f"'source_ip' must be {what}: {value[:100]!r}", param="source_ip"
        ) from None
    forms = {value, str(address)}
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else address
    if isinstance(mapped, ipaddress.IPv4Address):
        forms |= {str(mapped), f"::ffff:{mapped}", str(ipaddress.IPv6Address(f"::ffff:{mapped}"))}
    return tuple(sorted(forms))


def visibility(principal: Principal) -> dict[str, Any]:
    """The ``visible_*`` fields of a ``RequestLogFilter`` narrowing rows to what
    ``principal`` may read: its teams', its user's, its key's; none for an admin (all).
    ``/admin/logs`` and ``/admin/reports/usage`` both go by it, so a report adds up to the
    log its caller reads."""
    if principal.has_role("admin"):
        return {}
    return {
        "visible_teams": tuple(principal.team_roles),
        "visible_user": principal.user,
        "visible_key": principal.id if principal.kind == "key" else None,
    }


def log_filter(call: AdminCall) -> RequestLogFilter:
    """The filter of a ``GET /admin/logs`` call, narrowed to what the caller may read."""
    query = call.request.query
    principal = call.principal
    now = dt.datetime.now(dt.UTC)
    visible = visibility(principal)
    return RequestLogFilter(
        user_id=query_filter(query, "user"),
        team_id=query_filter(query, "team"),
        key_id=query_filter(query, "key"),
        model=query_filter(query, "model"),
        status=query_filter(query, "status"),
        source_ips=source_ips(query),
        since=query_time(query, "since", now),
        until=query_time(query, "until", now),
        **visible,
    )


async def list_logs(call: AdminCall) -> dict[str, Any] | web.StreamResponse:
    require_role(call.principal, "viewer")
    query = call.request.query
    where = log_filter(call)
    form = query.get("format", "json")
    if form in ("csv", "jsonl"):
        return await _export(call, where, form)
    if form != "json":
        raise InvalidRequest("'format' must be json, csv or jsonl", param="format")
    limit = call.page_limit(MAX_PAGE)
    page = await call.gateway.store.request_log.page(
        where, limit=limit, cursor=query.get("cursor") or None
    )
    return {"data": [record_row(r) for r in page.records], "next_cursor": page.next_cursor}


async def _export(call: AdminCall, where: RequestLogFilter, form: str) -> web.StreamResponse:
    """Every matching record, streamed as CSV or JSON Lines while it is read."""
    records = call.gateway.store.request_log.scan(where)
    # The first page is read before the answer starts, so a bad filter or a store that is
    # down is still an ordinary error response.
    first = await anext(records, None)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    response = web.StreamResponse(
        headers={
            "x-request-id": call.actor.request_id or "",
            "Content-Type": "text/csv; charset=utf-8" if form == "csv" else "application/x-ndjson",
            "Content-Disposition": f'attachment; filename="tollway-logs-{stamp}.{form}"',
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(call.request)
    encode = _csv_lines if form == "csv" else _jsonl_lines
    if form == "csv":
        await response.write(_csv_header())
    batch: list[RequestLogRecord] = [] if first is None else [first]
    try:
        async for record in records:
            batch.append(record)
            if len(batch) >= 200:
                await response.write(encode(batch))
                batch = []
        if batch:
            await response.write(encode(batch))
    except Exception as exc:
        # The status is sent already: end the connection without the closing chunk, so the
        # client sees a cut export rather than a short one that looks whole.
        log.error("request %s: the log export failed midway: %s", call.actor.request_id, exc)
        if call.request.transport is not None:
            call.request.transport.abort()
        return response
    await response.write_eof()
    return response


def _csv_header() -> bytes:
    out = io.StringIO()
    csv.writer(out).writerow(EXPORT_COLUMNS)
    return out.getvalue().encode()


def _csv_lines(records: list[RequestLogRecord]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    for record in records:
        row = record_row(record)
        writer.writerow(_csv_cell(row[column]) for column in EXPORT_COLUMNS)
    return out.getvalue().encode()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    if isinstance(value, str):
        return csv_text(value)
    return value


def _jsonl_lines(records: list[RequestLogRecord]) -> bytes:
    return b"".join(orjson.dumps(record_row(record)) + b"\n" for record in records)


TIME_FORMS = "ISO 8601 (UTC when it has no zone) or an age such as 15m, 24h, 7d"
LOG_QUERY = (
    Query("user", "Rows of this user id"),
    Query("team", "Rows of this team id"),
    Query("key", "Rows of this key id"),
    Query("model", "Rows that asked for this model"),
    Query("status", "An HTTP status (429), a class (5xx), ok (below 400) or error"),
    Query("source_ip", "Rows from this address, IPv4 or IPv6 (one address, not a network)"),
    Query("since", f"From this time, inclusive: {TIME_FORMS}"),
    Query("until", f"Before this time: {TIME_FORMS}"),
    Query("limit", f"Rows a page, 1 to {MAX_PAGE} (default 100)"),
    Query("cursor", "The next_cursor of the page before"),
    Query("format", "json (pages, the default), or csv or jsonl: every matching row, streamed"),
)

LOG_ROUTES = [
    Route(
        "GET",
        "/admin/logs",
        list_logs,
        "The request log, newest first; filters, cursor pages, format=csv|jsonl export",
        query=LOG_QUERY,
    ),
]
