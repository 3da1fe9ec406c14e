"""Request log values as the SQLite driver takes them: what the models' types would store."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from tollway.store.columns import UTCMicros, epoch_micros
from tollway.store.errors import InvalidRecord
from tollway.store.request_log import (
    INSERT_COLUMNS,
    PLAIN_COLUMNS,
    _plain_statements,
    _sqlite_statements,
    _sqlite_values,
    row_mapping,
)

AT = dt.datetime(2026, 12, 4, 7, 0, 1, tzinfo=dt.UTC)
COMPLETE = {
    "at": AT, "chain_id": "c", "seq": 0, "request_id": "r", "endpoint": "chat", "model": "m",
    "attempts": 1, "fallbacks": 0, "status": 200, "stream": False, "input_tokens": 1,
    "output_tokens": 1, "cached_tokens": 0, "cache_write_tokens": 0, "cache_write_1h_tokens": 0,
    "usage_estimated": False, "cost_micros": 0, "tool_calls": 0, "tool_cost_micros": 0,
}  # fmt: skip
"""A value for every column that may not be NULL."""


def _row(**fields: Any) -> tuple[Any, ...]:
    """A row of values: ``COMPLETE`` with ``fields``, the rest NULL."""
    return tuple({**COMPLETE, **fields}.get(column) for column in INSERT_COLUMNS)


def test_times_are_whole_microseconds_since_the_epoch_on_sqlite_both_ways() -> None:
    column, on_sqlite, on_postgres = UTCMicros(), sqlite.dialect(), postgresql.dialect()
    start = dt.datetime(2026, 12, 31, 23, 59, 58, 999_990, tzinfo=dt.UTC)
    rng = random.Random(7)
    times = [start + dt.timedelta(microseconds=rng.randrange(3_000_000)) for _ in range(500)]
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # either side of a negative timestamp
    times += [epoch - dt.timedelta(microseconds=500_000), epoch + dt.timedelta(microseconds=3)]
    times += [dt.datetime(1969, 12, 31, 23, 59, 59, 250_000, tzinfo=dt.UTC)]
    for at in times:
        stored = column.process_bind_param(at, on_sqlite)
        assert stored == epoch_micros(at) and isinstance(stored, int)
        assert column.process_result_value(stored, on_sqlite) == at
        assert column.process_bind_param(at, on_postgres) == at
    assert epoch_micros(epoch - dt.timedelta(microseconds=1)) == -1
    other_zone = dt.datetime(2026, 12, 4, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert column.process_bind_param(other_zone, on_sqlite) == epoch_micros(other_zone)
    with pytest.raises(InvalidRecord):
        column.process_bind_param(dt.datetime(2026, 12, 4), on_sqlite)  # no zone


def test_a_row_of_values_must_have_every_column() -> None:
    with pytest.raises(InvalidRecord, match="values"):
        _sqlite_values(("2026-12-04",))


def test_a_row_without_a_value_that_may_not_be_null_is_refused_naming_it() -> None:
    # Refused before any statement runs: SQLite's OR IGNORE would skip such a row silently.
    with pytest.raises(InvalidRecord, match="needs model, status"):
        _sqlite_values(_row(model=None, status=None))
    with pytest.raises(InvalidRecord, match="needs request_id"):
        _sqlite_statements([_row(seq=1), {**COMPLETE, "seq": 2, "request_id": None}])
    assert _sqlite_values(_row(guardrails=None))[INSERT_COLUMNS.index("guardrails")] == "[]"


def test_a_row_spooled_before_the_cache_write_columns_stores_them_as_0() -> None:
    # A spool file left by a gateway before revision 0005 has rows without them.
    older = {k: v for k, v in COMPLETE.items() if not k.startswith("cache_write")}
    sent = dict(zip(INSERT_COLUMNS, _sqlite_values(older), strict=True))
    assert (sent["cache_write_tokens"], sent["cache_write_1h_tokens"]) == (0, 0)


def test_a_row_of_values_and_its_mapping_give_the_driver_the_same() -> None:
    at = dt.datetime(2026, 12, 4, 7, 0, 1, 5, tzinfo=dt.UTC)
    values = _row(at=at, guardrails=["pii"], stream=True)
    mapping = row_mapping(values)
    assert list(mapping) == list(INSERT_COLUMNS)
    assert _sqlite_values(values) == _sqlite_values(mapping)
    sent = dict(zip(INSERT_COLUMNS, _sqlite_values(values), strict=True))
    assert (sent["at"], sent["guardrails"], sent["stream"]) == (
        1_796_367_601_000_005, '["pii"]', 1,
    )  # fmt: skip


def test_a_statement_leaves_out_only_the_columns_null_in_all_its_rows() -> None:
    rows = [_row(seq=n) for n in range(4)]
    rows.append(_row(seq=4, error_code="x", ttft_ms=0.0))
    ((sql, values),) = _sqlite_statements(rows)  # five rows: one statement
    listed = sql.split("(", 1)[1].split(")", 1)[0].split(", ")
    # Not-null columns stay whatever their value; nullable ones only when a row has a value.
    assert "error_code" in listed and "ttft_ms" in listed and "seq" in listed
    assert "prompt" not in listed and "hash" not in listed and "cache" not in listed
    assert "cache_write_tokens" not in listed  # 0 in every row: the table's default
    assert len(values) == 5 * len(listed) and sql.count("?") == len(values)
    last = dict(zip(listed, values[4 * len(listed) :], strict=True))
    assert (last["seq"], last["error_code"], last["ttft_ms"]) == (4, "x", 0.0)
    rows[2] = _row(seq=2, cache_write_1h_tokens=5)
    ((sql, values),) = _sqlite_statements(rows)
    listed = sql.split("(", 1)[1].split(")", 1)[0].split(", ")
    assert "cache_write_1h_tokens" in listed and "cache_write_tokens" not in listed
    writes = values[listed.index("cache_write_1h_tokens") :: len(listed)]
    assert writes == [0, 0, 5, 0, 0]


def test_a_batch_is_cut_into_statements_of_a_few_sizes() -> None:
    # Each size and shape is a statement SQLite prepares once: any batch reuses a few.
    rows = [_row(seq=n) for n in range(257)]
    statements = _sqlite_statements(rows)
    sizes = [sql.count("), (") + 1 for sql, _ in statements]
    assert sizes == [100, 100, 20, 20, 5, 5, 5, 1, 1]
    seq = INSERT_COLUMNS.index("seq")
    sent = [
        values[seq :: len(values) // size]
        for (_, values), size in zip(statements, sizes, strict=True)
    ]
    assert [n for part in sent for n in part] == list(range(257))


def _plain(n: int, **fields: Any) -> tuple[Any, ...]:
    """A plain row (``PLAIN_COLUMNS``) of a request by one key to one model."""
    values = {**COMPLETE, "at": 1_796_367_600_000_000 + n, "request_id": f"r{n}",
              "principal_kind": "key", "key_id": "k1", "provider": "openai",
              "guardrails": "[]", "latency_ms": 1.5 + n, **fields}  # fmt: skip
    return tuple(values.get(column) for column in PLAIN_COLUMNS)


def test_text_one_value_in_every_row_of_a_statement_is_bound_once() -> None:
    # Binding a text costs about 950 instructions (the driver, and SQLite's copy); in a
    # statement of 20 rows or more, a text column with one value in every row is bound once
    # and every row refers to it. A column with another value in any row is bound a row.
    rows = [_plain(n) for n in range(125)]
    rows[40] = _plain(40, key_id="k2")  # the first and last rows agree, one between differs
    rows[101] = _plain(101, model="other")  # in the 20-row statement
    (sql, values), (_, values20), (_, values5) = _plain_statements("c", 1, rows)
    listed = sql.split("(", 1)[1].split(")", 1)[0].split(", ")
    shared = {"principal_kind", "endpoint", "model", "provider", "guardrails"}
    assert shared < set(listed) and "user_id" not in listed  # NULL in every row: left out
    per_row = len(listed) - 2 - len(shared)  # chain and seq: bound once too
    assert len(values) == 2 + len(shared) + 100 * per_row
    assert values.count("openai") == 1 and values.count("k1") == 99
    first, last = sql.split("VALUES ", 1)[1].split("), (")[0::99]
    place = listed.index("model")
    assert first.strip("(").split(", ")[place] == last.strip(")").split(", ")[place]
    assert values20.count("openai") == 1 and values20.count("m") == 19
    assert values20.count("other") == 1
    assert values5.count("openai") == 5  # a statement this small binds every value
