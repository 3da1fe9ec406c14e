"""Usage reports over the request log, on SQLite and PostgreSQL (their percentiles agree)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from tests.integration.store.test_request_log import at, context, writer_for
from tollway.store import InvalidRecord, Store
from tollway.store.request_log import PLAIN_COLUMNS, RequestLogFilter

__all__ = ["writer_for"]  # the fixture, used by name


async def test_usage_grouped_by_team_model_and_day(store: Store, writer_for: Any) -> None:
    red, blue = f"red-{uuid.uuid4().hex[:6]}", f"blue-{uuid.uuid4().hex[:6]}"
    writer = await writer_for()
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    for n in range(20):  # red: latencies 10, 20, ... 200 ms; every fourth a cache hit
        made = context(n, team=red, model="gpt-a", cache_status="hit" if n % 4 == 0 else "miss")
        writer.put_nowait(_with_latency(made, n))
    writer.put_nowait(context(100, team=red, model="gpt-b", guardrail_flags=["pii"]))
    writer.put_nowait(at(context(101, team=blue, model="gpt-a"), yesterday))
    await writer.close()
    rows = await store.reports.usage(
        ["team", "model"], visible=RequestLogFilter(visible_teams=(red, blue))
    )
    got = {(r["team"], r["model"]): r for r in rows}
    assert set(got) == {(red, "gpt-a"), (red, "gpt-b"), (blue, "gpt-a")}
    first = got[(red, "gpt-a")]
    assert first["requests"] == 20 and first["errors"] == 0
    assert first["input_tokens"] == sum(10 + n for n in range(20))
    assert first["output_tokens"] == 100 and first["cached_tokens"] == 20
    assert first["cost_usd"] == pytest.approx(20 * 0.000123)
    assert first["avg_latency_ms"] == pytest.approx(105.0)
    assert first["p95_latency_ms"] == pytest.approx(190.5)  # percentile_cont of 10..200
    assert first["cache_hits"] == 5 and first["cache_hit_rate"] == pytest.approx(0.25)
    assert got[(red, "gpt-b")]["guardrail_triggers"] == 1
    days = await store.reports.usage(["day"], visible=RequestLogFilter(visible_teams=(blue,)))
    assert [(r["day"], r["requests"]) for r in days] == [(yesterday.date().isoformat(), 1)]
    since = await store.reports.usage(
        ["team"],
        visible=RequestLogFilter(visible_teams=(red, blue)),
        since=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
    )
    assert [(r["team"], r["requests"]) for r in since] == [(red, 21)]
    filtered = await store.reports.usage(["model"], filters={"team": red, "model": "gpt-b"})
    assert [(r["model"], r["requests"]) for r in filtered] == [("gpt-b", 1)]
    with pytest.raises(InvalidRecord):
        await store.reports.usage(["colour"])


def _with_latency(made: Any, n: int) -> Any:
    """The entry with a latency of (n + 1) * 10 ms."""
    return tuple((n + 1) * 10.0 if i == LATENCY_INDEX else value for i, value in enumerate(made))


LATENCY_INDEX = PLAIN_COLUMNS.index("latency_ms")  # an Entry starts with the plain row
