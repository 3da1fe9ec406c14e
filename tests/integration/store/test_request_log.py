"""The request log on both backends: inserts, pages, filters, retention and hash chains.

Rows are made by the real writer (telemetry/request_log.py) from request contexts, so what is
checked here is what a gateway stores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.integration.store.conftest import Database
from tollway.auth.principal import Principal
from tollway.config.schema import RequestLogConfig
from tollway.core.context import RequestContext
from tollway.core.errors import RateLimited
from tollway.core.types import ChatRequest, Deployment, Message, UpstreamTimeouts, Usage
from tollway.store import InvalidRecord, RequestLogFilter, Store
from tollway.store.engine import make_engine
from tollway.telemetry.chain import GENESIS, rejected_rows, verify_chains
from tollway.telemetry.request_log import RequestLogWriter
from tollway.telemetry.request_log_stage import entry

DEPLOYMENT = Deployment(
    id="dep-1", provider="openai", model="sim-chat", api_base="http://x",
    timeouts=UpstreamTimeouts(1.0, 1.0, 1.0),
)  # fmt: skip


def context(n: int, *, team: str = "red", user: str = "u1", key: str = "k1", **fields: Any) -> Any:
    """The entry of a finished request number ``n``."""
    ctx = RequestContext(
        request_id=f"req-{n}", endpoint="chat", model=fields.pop("model", "gpt-x"),
        client_headers={}, chat=ChatRequest(model="gpt-x", messages=[Message("user", "hi")]),
        principal=Principal(kind="key", id=key, user=user, team=team, tags={"service": "job"}),
    )  # fmt: skip
    ctx.deployment = DEPLOYMENT
    ctx.attempts = 1
    ctx.usage = Usage(input_tokens=10 + n, output_tokens=5, cached_input_tokens=1)
    ctx.cost_usd = 0.000123
    ctx.finished_at = ctx.started + 0.05
    for name, value in fields.items():
        setattr(ctx, name, value)
    return entry(ctx)


def at(made: Any, when: dt.datetime) -> Any:
    """An entry made at ``when`` instead of now (entries keep microseconds since the epoch)."""
    return ((when - EPOCH) // dt.timedelta(microseconds=1), *made[1:])


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


async def execute(database: Database, sql: str, **params: Any) -> None:
    """Run a raw statement, as someone with direct access to the database would."""
    engine = make_engine(database.url, schema=database.schema)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(sql), params)
    finally:
        await engine.dispose()


@pytest.fixture
async def writer_for(store: Store, tmp_path: Path) -> AsyncIterator[Any]:
    """Makes started writers on the test store; closes them at the end."""
    writers: list[RequestLogWriter] = []

    async def make(**config: Any) -> RequestLogWriter:
        settings = RequestLogConfig(flush_interval=0.05, **config)
        writer = RequestLogWriter(store, settings, tmp_path / f"spool-{len(writers)}")
        await writer.start()
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        await writer.close()


async def test_a_record_round_trips_with_every_field(store: Store, writer_for: Any) -> None:
    writer = await writer_for()
    usage = Usage(input_tokens=11, output_tokens=5, cached_input_tokens=1,
                  cache_write_tokens=7, cache_write_1h_tokens=3)  # fmt: skip
    error = RateLimited("slow down", code="rate_limit_exceeded")
    writer.put_nowait(context(1, error=error, usage=usage))
    await writer.close()
    (record,) = (await store.request_log.page(RequestLogFilter())).records
    assert (record.request_id, record.principal_kind, record.key_id, record.user_id) == (
        "req-1", "key", "k1", "u1",
    )  # fmt: skip
    assert (record.team_id, record.service, record.endpoint, record.model) == (
        "red", "job", "chat", "gpt-x",
    )  # fmt: skip
    assert (record.served_model, record.deployment_id, record.provider) == (
        "sim-chat", "dep-1", "openai",
    )  # fmt: skip
    assert (record.status, record.error_code, record.attempts, record.fallbacks) == (
        429, "rate_limit_exceeded", 1, 0,
    )  # fmt: skip
    assert (record.input_tokens, record.output_tokens, record.cached_tokens) == (11, 5, 1)
    assert (record.cache_write_tokens, record.cache_write_1h_tokens) == (7, 3)
    assert record.refused is None
    assert record.cost_micros == 123 and record.usage_estimated is False
    assert record.latency_ms == pytest.approx(50.0) and record.ttft_ms is None
    assert record.guardrails == () and record.prompt is None and record.response is None
    assert (record.seq, record.chain_id) == (1, writer.chain_id)
    assert record.hash is None and record.at.tzinfo == dt.UTC


def _varied() -> list[Any]:
    """Entries of every shape a batch mixes: failed, streamed from a cache, flagged by a
    guardrail, estimated, without a principal, with a fractional cost and latency."""
    made = [
        context(0),
        context(1, error=RateLimited("slow down", code="rate_limit_exceeded")),
        context(2, first_token_at=0.0123456, cache_status="hit", guardrail_flags=["pii"]),
        context(3, usage_estimated=True, cost_usd=0.0000025, finished_at=None),
        context(4, principal=None, cost_usd=None),
        context(5, usage=Usage(20, 1, 0, cache_write_tokens=12, cache_write_1h_tokens=2)),
    ]
    made[2] = (*made[2][:16], True, *made[2][17:])  # streamed
    return made


def _stored(record: Any) -> dict[str, Any]:
    """What a record says about its request: everything but its own id and chain."""
    values = record.columns()
    for name in ("id", "chain_id"):
        values.pop(name)
    return dict(values)


async def test_plain_entries_are_stored_exactly_as_rows_are(store: Store, writer_for: Any) -> None:
    # On a SQLite file the writer hands its entries over as plain rows (one tuple a row,
    # store/request_log.py insert_plain); everywhere else, and for hash chains and bodies,
    # it makes rows. Both must store the same values.
    made = _varied()
    plain = await writer_for()
    if store.request_log.takes_plain_rows:
        assert type(await plain._prepare(made)).__name__ == "_Plain"  # the way under test
        plain._seq = 0
    for item in made:
        plain.put_nowait(item)
    await plain.close()
    general = await writer_for()
    await store.request_log.insert([general._row(item, seq) for seq, item in enumerate(made, 1)])
    records = (await store.request_log.page(RequestLogFilter())).records
    by_chain: dict[str, list[dict[str, Any]]] = {}
    for record in sorted(records, key=_seq):
        by_chain.setdefault(record.chain_id, []).append(_stored(record))
    assert by_chain[plain.chain_id] == by_chain[general.chain_id]
    first = by_chain[plain.chain_id]
    assert [r["guardrails"] for r in first] == [[], [], ["pii"], [], [], []]
    assert [r["stream"] for r in first] == [False, False, True, False, False, False]
    assert [r["cost_micros"] for r in first] == [123, 123, 123, 2, 0, 123]  # 2.5: to even
    writes = [(r["cache_write_tokens"], r["cache_write_1h_tokens"]) for r in first]
    assert writes == [(0, 0)] * 5 + [(12, 2)]
    ttft = first[2]["ttft_ms"]
    assert ttft is not None and round(ttft, 3) == ttft and first[3]["latency_ms"] is None
    assert first[4]["principal_kind"] is None and first[3]["usage_estimated"] is True


async def test_plain_rows_are_stored_whole_or_not_at_all(store: Store, writer_for: Any) -> None:
    writer = await writer_for()
    made = [context(n) for n in range(3)]
    if not store.request_log.takes_plain_rows:  # PostgreSQL: rows only
        with pytest.raises(RuntimeError):
            await store.request_log.insert_plain(writer.chain_id, 1, made)
        return
    await store.request_log.insert_plain(writer.chain_id, 1, made)
    with pytest.raises(InvalidRecord):  # the same chain and seq: stored before
        await store.request_log.insert_plain(writer.chain_id, 3, made)
    missing = [context(n) for n in range(3, 6)]
    missing[1] = (*missing[1][:8], None, *missing[1][9:])  # no model: NOT NULL
    with pytest.raises(InvalidRecord):
        await store.request_log.insert_plain(writer.chain_id, 4, missing)
    records = (await store.request_log.page(RequestLogFilter())).records
    assert sorted(r.request_id for r in records) == ["req-0", "req-1", "req-2"]


async def test_text_too_long_or_with_nul_is_cut_not_refused(store: Store, writer_for: Any) -> None:
    # A client names any model it likes; an identity provider may send odd claims. Such text
    # is cut to its column and NUL removed (PostgreSQL refuses NUL in text), in a batch with
    # ordinary rows, which keep theirs.
    writer = await writer_for()
    odd = context(1, model="m" * 300, principal=Principal(kind="user", id="x", user="a\x00b"))
    writer.put_nowait(context(0))
    writer.put_nowait(odd)
    await writer.close()
    records = sorted((await store.request_log.page(RequestLogFilter())).records, key=_seq)
    assert [(r.model, r.user_id) for r in records] == [("gpt-x", "u1"), ("m" * 200, "ab")]


async def test_a_batch_written_twice_is_stored_once(store: Store, writer_for: Any) -> None:
    writer = await writer_for()
    rows = [writer._row(context(n), n + 1) for n in range(3)]
    await store.request_log.insert(rows)
    await store.request_log.insert(rows)  # a replay after a lost commit acknowledgement
    assert len((await store.request_log.page(RequestLogFilter())).records) == 3


async def test_a_batch_larger_than_one_statement_is_stored_whole(
    store: Store, writer_for: Any
) -> None:
    # SQLite takes a batch as multi-row statements of a bounded size: 1,200 rows need three.
    writer = await writer_for()
    rows = [writer._row(context(n), n + 1) for n in range(1200)]
    await store.request_log.insert(rows[:700])
    await store.request_log.insert(rows)  # the first 700 again: skipped, the rest added
    page = await store.request_log.page(RequestLogFilter(), limit=1000)
    chain = await store.request_log.chain(writer.chain_id, limit=2000)
    assert len(page.records) == 1000 and page.next_cursor is not None
    assert [record.seq for record in chain] == list(range(1, 1201))


async def test_a_column_null_in_only_some_rows_keeps_every_value(
    store: Store, writer_for: Any
) -> None:
    # SQLite statements leave out the columns NULL in all their rows (and the cache write
    # counts 0 in all): a column set in one row only (the error code, the TTFT, an empty
    # service name, cache writes) must still reach every row.
    writer = await writer_for()
    failed = context(1, error=RateLimited("slow down", code="rate_limit_exceeded"))
    streamed = context(2, first_token_at=0.0, cache_status="miss")
    writes = context(3, usage=Usage(9, 1, 0, cache_write_tokens=4))
    made = (context(0), failed, streamed, writes)
    rows = [writer._row(entry, seq) for seq, entry in enumerate(made, start=1)]
    await store.request_log.insert(rows)
    records = sorted((await store.request_log.page(RequestLogFilter())).records, key=_seq)
    assert [r.error_code for r in records] == [None, "rate_limit_exceeded", None, None]
    assert [r.cache for r in records] == [None, None, "miss", None]
    assert [r.ttft_ms is None for r in records] == [True, True, False, True]
    assert [r.service for r in records] == ["job"] * 4
    assert [(r.cache_write_tokens, r.cache_write_1h_tokens) for r in records] == [
        (0, 0), (0, 0), (0, 0), (4, 0),
    ]  # fmt: skip
    assert all(r.prompt is None and r.hash is None for r in records)


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # PostgreSQL takes rows
async def test_plain_rows_over_several_statements_keep_their_numbers_and_values(
    store: Store, writer_for: Any
) -> None:
    # Plain rows are bound column by column with numbered parameters, the chain and first
    # number once a statement, and a column NULL in every row of a statement left out. 126
    # rows take statements of 100, 20, 5 and 1: each row must keep its own number and values,
    # whether its statement holds a column's only value, some values or none, and whether
    # its statement binds a text once for all its rows (one value in all) or once a row.
    assert store.request_log.takes_plain_rows
    writer = await writer_for()
    made = [context(n, team="red" if n < 100 else "blue") for n in range(126)]
    made[3] = context(3, error=RateLimited("slow down", code="rate_limit_exceeded"))
    made[110] = context(110, first_token_at=0.0, cache_status="miss", team=None)
    made[125] = context(125, principal=None, cost_usd=None)  # alone in its statement
    made[121] = context(121, usage=Usage(131, 5, 0, cache_write_tokens=8, cache_write_1h_tokens=8))
    made[124] = (*made[124][:16], True, *made[124][17:])  # streamed
    made[60] = context(60, model="gpt-y")  # text shared by the others is bound once
    await store.request_log.insert_plain(writer.chain_id, 7, made)
    chain = await store.request_log.chain(writer.chain_id, limit=200)
    assert [record.seq for record in chain] == list(range(7, 133))
    assert [record.request_id for record in chain] == [f"req-{n}" for n in range(126)]
    assert [record.input_tokens for record in chain] == [10 + n for n in range(126)]
    assert [r.error_code for r in chain if r.error_code] == ["rate_limit_exceeded"]
    assert chain[3].error_code == "rate_limit_exceeded"
    assert [r.seq for r in chain if r.cache] == [117] == [r.seq for r in chain if r.ttft_ms]
    assert [r.team_id for r in chain[98:102]] == ["red", "red", "blue", "blue"]
    assert chain[110].team_id is None and chain[111].team_id == "blue"
    assert [r.stream for r in chain[123:]] == [False, True, False]
    assert [(r.seq, r.cache_write_tokens) for r in chain if r.cache_write_tokens] == [(128, 8)]
    assert [r.seq for r in chain if r.cache_write_1h_tokens] == [128]
    last = chain[125]
    assert (last.principal_kind, last.key_id, last.team_id, last.cost_micros) == (
        None, None, None, 0
    )  # fmt: skip
    assert chain[124].key_id == "k1" and chain[124].cost_micros == 123
    assert [(r.seq, r.model) for r in chain if r.model != "gpt-x"] == [(67, "gpt-y")]
    assert {(r.provider, r.served_model, r.service, r.endpoint) for r in chain[:125]} == {
        ("openai", "sim-chat", "job", "chat")
    }


async def test_a_row_without_a_required_value_leaves_a_placeholder(
    store: Store, writer_for: Any
) -> None:
    # A row without a value that may not be NULL (a model name, here) fails its batch; the
    # writer then stores the batch row by row, sets the refused one aside and stores a
    # placeholder in its place. On SQLite the statement skips rows already stored with OR
    # IGNORE, which would skip this one too, silently: it must be refused before
    # (store/request_log.py).
    writer = await writer_for()
    made = [context(n) for n in range(3)]
    made[1] = (*made[1][:8], None, *made[1][9:])  # the model asked for
    for item in made:
        writer.put_nowait(item)
    await writer.close()
    records = sorted((await store.request_log.page(RequestLogFilter())).records, key=_seq)
    assert [r.request_id for r in records] == ["req-0", "req-1", "req-2"]
    assert [r.refused for r in records] == [None, "InvalidRecord: a request log row needs model",
                                            None]  # fmt: skip
    assert (records[1].model, records[1].key_id, records[1].input_tokens) == ("", "k1", 11)
    assert (writer.written, writer.rejected) == (2, 1)
    (aside,) = list(writer.spool.rejected_directory.iterdir())
    assert b'"request_id":"req-1"' in aside.read_bytes()
    (report,) = await verify_chains(store)
    assert report.ok and report.refused == (2,)


@pytest.mark.parametrize("chain", [False, True], ids=["plain", "chained"])
async def test_values_a_store_would_refuse_are_made_safe_before_the_row_is_made(
    store: Store, writer_for: Any, chain: bool
) -> None:
    # What each backend refused, found by trying: counts past 64 bits (an upstream's usage is
    # unbounded), a lone surrogate (no UTF-8 for it), a NUL in JSON (PostgreSQL). Refused,
    # each row left a gap in its chain; chained, the row could not even be hashed and its
    # whole batch was lost. Now they are held, cleaned and stored, on both backends alike.
    writer = await writer_for(chain=chain)
    huge = Usage(input_tokens=2**64, output_tokens=-(2**70), cache_write_tokens=2**63)
    odd_names = Principal(kind="user", id="x", user="ana\udcff", team="t\x00")
    made = [
        context(0),
        context(1, usage=huge, cost_usd=1e20),
        context(2, model="gpt-\ud800x", principal=odd_names),
        context(3, guardrail_flags=["pii\x00"]),
        context(4),
    ]
    for item in made:
        writer.put_nowait(item)
    await writer.close()
    records = await store.request_log.chain(writer.chain_id)
    assert [r.request_id for r in records] == [f"req-{n}" for n in range(5)]
    assert all(r.refused is None for r in records) and writer.rejected == 0
    counts = records[1]
    assert (counts.input_tokens, counts.output_tokens) == (2**63 - 1, -(2**63))
    assert (counts.cache_write_tokens, counts.cost_micros) == (2**63 - 1, 2**63 - 1)
    assert (records[2].model, records[2].user_id, records[2].team_id) == ("gpt-?x", "ana?", "t")
    assert records[3].guardrails == ("pii",)
    (report,) = await verify_chains(store)
    assert report.ok and report.records == 5 and report.refused == ()


@contextlib.asynccontextmanager
async def refusing(database: Database, model: str, *, silently: bool = False) -> Any:
    """The database refuses rows asking for ``model``, as a constraint or trigger an operator
    added would (``silently``: SQLite skips them without an error, as ``OR IGNORE`` does a
    row that breaks a CHECK constraint)."""
    if database.backend == "sqlite":
        action = "RAISE(IGNORE)" if silently else "RAISE(ABORT, 'refused by policy')"
        trigger = (
            "CREATE TRIGGER refuse_model BEFORE INSERT ON request_log "
            f"WHEN NEW.model = '{model}' BEGIN SELECT {action}; END"
        )
        await execute(database, trigger)
        undo = "DROP TRIGGER refuse_model"
    else:
        assert not silently
        check = f"CHECK (model <> '{model}') NOT VALID"
        await execute(database, f"ALTER TABLE request_log ADD CONSTRAINT ck_refuse_model {check}")
        undo = "ALTER TABLE request_log DROP CONSTRAINT ck_refuse_model"
    try:
        yield
    finally:
        await execute(database, undo)


async def test_a_row_the_store_refuses_leaves_a_placeholder_and_verify_tells_it_apart(
    store: Store, database: Database, writer_for: Any
) -> None:
    # A refused row left a gap, which verify reported as a broken chain: an auditor could
    # not tell a refusal from a deletion. Now a placeholder holds its number and hashes.
    async with refusing(database, "refuse-me"):
        writer = await writer_for(chain=True)
        for item in (context(0), context(1, model="refuse-me"), context(2)):
            writer.put_nowait(item)
        await writer.close()
    records = await store.request_log.chain(writer.chain_id)
    assert [(r.seq, r.request_id) for r in records] == [(1, "req-0"), (2, "req-1"), (3, "req-2")]
    placeholder = records[1]
    assert placeholder.refused is not None
    assert ("refused by policy" if database.backend == "sqlite" else "ck_refuse_model") in (
        placeholder.refused
    )
    # Reduced, the row was refused again (its model): the bare placeholder took its place.
    assert (placeholder.model, placeholder.key_id, placeholder.status) == ("", None, 0)
    assert records[2].prev_hash == placeholder.hash and writer.rejected == 1
    (report,) = await verify_chains(store)
    assert report.ok and report.refused == (2,) and report.head == records[2].hash
    set_aside = rejected_rows(writer.spool.rejected_directory)
    assert set_aside[(writer.chain_id, 2)]["model"] == "refuse-me"
    (report,) = await verify_chains(store, set_aside=set_aside)
    assert report.ok and report.unmatched == ()

    async def verdict(**given: Any) -> tuple[int | None, str | None, tuple[int, ...]]:
        (found,) = await verify_chains(store, **given)
        return found.broken_seq, found.problem, found.unmatched

    # Tampering is still told apart: an edited row...
    edit = "UPDATE request_log SET cost_micros = :cost WHERE id = :id"
    await execute(database, edit, cost=1, id=records[2].id)
    assert await verdict() == (3, "the hash does not match the record's contents (edited)", ())
    await execute(database, edit, cost=records[2].cost_micros, id=records[2].id)
    # ... an edited placeholder, against the row set aside for it ...
    await execute(database, "UPDATE request_log SET key_id = 'k9' WHERE id = :id",
                  id=placeholder.id)  # fmt: skip
    assert await verdict(set_aside=set_aside) == (
        2, "the placeholder is not what its set-aside row leaves (edited)", (),
    )  # fmt: skip
    await execute(database, "UPDATE request_log SET key_id = NULL WHERE id = :id",
                  id=placeholder.id)  # fmt: skip
    # ... and a row made into a placeholder to hide what it said: a refusal to look into,
    # which no set-aside row confirms.
    await execute(database, "UPDATE request_log SET refused = 'x', key_id = NULL WHERE id = :id",
                  id=records[0].id)  # fmt: skip
    (report,) = await verify_chains(store)
    assert report.ok and report.refused == (1, 2)
    assert await verdict(set_aside=set_aside) == (None, None, (1,))


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # PostgreSQL raises
async def test_a_row_sqlite_skips_without_an_error_is_accounted_for_too(
    store: Store, database: Database, writer_for: Any
) -> None:
    # OR IGNORE skips a row that breaks a CHECK constraint (or that a trigger ignores) as it
    # skips one stored before: fewer rows changed than given is looked into.
    for chain in (False, True):
        async with refusing(database, "skip-me", silently=True):
            writer = await writer_for(chain=chain)
            for item in (context(0), context(1, model="skip-me"), context(2)):
                writer.put_nowait(item)
            await writer.close()
        records = await store.request_log.chain(writer.chain_id)
        assert [r.seq for r in records] == [1, 2, 3]
        assert records[1].refused is not None and "skipped without an error" in records[1].refused
        assert (writer.written, writer.rejected) == (2, 1)
    assert all(report.ok and report.refused == (2,) for report in await verify_chains(store))


def _seq(record: Any) -> int:
    return int(record.seq)


async def test_pages_are_newest_first_and_filtered(store: Store, writer_for: Any) -> None:
    writer = await writer_for()
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    for n in range(7):
        team = "red" if n % 2 else "blue"
        writer.put_nowait(at(context(n, team=team, model=f"m{n % 3}"), start + dt.timedelta(n)))
    await writer.close()

    async def ids(limit: int = 100, **where: Any) -> list[str]:
        page = await store.request_log.page(RequestLogFilter(**where), limit=limit)
        return [record.request_id for record in page.records]

    assert await ids() == [f"req-{n}" for n in range(6, -1, -1)]
    assert await ids(team_id="red") == ["req-5", "req-3", "req-1"]
    assert await ids(model="m0") == ["req-6", "req-3", "req-0"]
    window = {"since": start + dt.timedelta(2), "until": start + dt.timedelta(4)}
    assert await ids(**window) == ["req-3", "req-2"]
    assert await ids(visible_teams=("blue",), visible_user="nobody") == [
        "req-6", "req-4", "req-2", "req-0",
    ]  # fmt: skip
    assert await ids(visible_teams=(), visible_user=None, visible_key=None) == []
    # Cursor pages: every record once, in order.
    seen, cursor = [], None
    while True:
        page = await store.request_log.page(RequestLogFilter(), limit=3, cursor=cursor)
        seen += [record.request_id for record in page.records]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == await ids()
    with pytest.raises(InvalidRecord):
        await store.request_log.page(RequestLogFilter(), cursor="not-a-cursor")


async def test_status_filters(store: Store, writer_for: Any) -> None:
    writer = await writer_for()
    writer.put_nowait(context(1))
    writer.put_nowait(context(2, error=RateLimited("no", code="rate_limit_exceeded")))
    await writer.close()

    async def count(status: str) -> int:
        where = RequestLogFilter(status=status)
        return len((await store.request_log.page(where)).records)

    assert [await count(s) for s in ("200", "429", "4xx", "5xx", "ok", "error")] == [
        1, 1, 1, 0, 1, 1,
    ]  # fmt: skip
    with pytest.raises(InvalidRecord):
        await count("teapot")


async def test_purge_deletes_only_rows_past_retention(store: Store, writer_for: Any) -> None:
    writer = await writer_for(retention_days=30, chain=True)
    now = dt.datetime.now(dt.UTC)
    for n, age in enumerate((100, 45, 31, 10, 0)):
        writer.put_nowait(at(context(n), now - dt.timedelta(days=age)))
    await writer.close()
    assert await writer.purge() == 3
    page = await store.request_log.page(RequestLogFilter())
    assert [record.request_id for record in page.records] == ["req-4", "req-3"]
    # The chain still verifies from its oldest remaining record: retention recorded where
    # it stopped (the last record it deleted).
    (report,) = await verify_chains(store)
    assert report.ok and (report.first_seq, report.last_seq) == (4, 5)
    (record,) = [r for r in await store.request_log.chain(writer.chain_id) if r.seq == 4]
    assert await store.request_log.chain_starts() == {writer.chain_id: (3, record.prev_hash)}


async def test_records_deleted_from_a_chains_start_are_found_and_told_from_retention(
    store: Store, database: Database, writer_for: Any
) -> None:
    chained, plain = await writer_for(chain=True), await writer_for(chain=False)
    old = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    for n in range(5):  # the first three past retention
        chained.put_nowait(at(context(n), old) if n < 3 else context(n))
        plain.put_nowait(at(context(100 + n), old) if n < 3 else context(100 + n))
    await chained.close()
    await plain.close()
    records = await store.request_log.chain(chained.chain_id)
    await execute(database, "DELETE FROM request_log WHERE seq <= 2")
    reports = {r.chain_id: r for r in await verify_chains(store)}
    for chain_id in (chained.chain_id, plain.chain_id):
        assert reports[chain_id].broken_seq == 3
        assert reports[chain_id].problem == "2 record(s) missing at the chain's start (seq 1..2)"
    assert reports[chained.chain_id].broken_id == records[2].id
    # Retention's purge is not a deletion; a deletion after it still is.
    assert await store.request_log.purge(dt.datetime(2001, 1, 1, tzinfo=dt.UTC)) == 2
    assert all(r.ok and r.first_seq == 4 for r in await verify_chains(store))
    await execute(database, "DELETE FROM request_log WHERE seq = 4")
    for report in await verify_chains(store):
        assert report.problem == (
            "1 record(s) missing at the chain's start (seq 4..4, after retention's purge "
            "through seq 3)"
        )


async def test_chains_verify_and_show_edits_and_deletions(
    store: Store, database: Database, writer_for: Any
) -> None:
    first, second = await writer_for(chain=True), await writer_for(chain=True)
    for n in range(5):
        first.put_nowait(context(n))
        second.put_nowait(context(100 + n))
    await first.close()
    await second.close()
    reports = await verify_chains(store)
    assert {r.chain_id for r in reports} == {first.chain_id, second.chain_id}
    assert all(r.ok and r.chained and r.records == 5 for r in reports)
    records = await store.request_log.chain(first.chain_id)
    assert records[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))

    await execute(database, "UPDATE request_log SET cost_micros = 1 WHERE id = :id",
                  id=records[2].id)  # fmt: skip
    broken = {r.chain_id: r for r in await verify_chains(store)}
    assert broken[second.chain_id].ok
    assert (broken[first.chain_id].broken_id, broken[first.chain_id].problem) == (
        records[2].id, "the hash does not match the record's contents (edited)",
    )  # fmt: skip

    await execute(database, "UPDATE request_log SET cost_micros = :c WHERE id = :id",
                  c=records[2].cost_micros, id=records[2].id)  # fmt: skip
    assert all(r.ok for r in await verify_chains(store))
    await execute(database, "DELETE FROM request_log WHERE id = :id", id=records[3].id)
    broken = {r.chain_id: r for r in await verify_chains(store)}
    assert broken[first.chain_id].broken_seq == records[4].seq
    assert broken[first.chain_id].problem == "1 record(s) missing before seq 5"


async def test_a_recomputed_hash_still_breaks_the_next_link(
    store: Store, database: Database, writer_for: Any
) -> None:
    writer = await writer_for(chain=True)
    for n in range(3):
        writer.put_nowait(context(n))
    await writer.close()
    records = await store.request_log.chain(writer.chain_id)
    forged = dataclasses.replace(records[1], output_tokens=999)
    from tollway.telemetry.chain import link

    new_hash = link(forged.prev_hash or GENESIS, forged.columns())
    await execute(database, "UPDATE request_log SET output_tokens = 999, hash = :h WHERE id = :id",
                  h=new_hash, id=records[1].id)  # fmt: skip
    (report,) = await verify_chains(store)
    assert report.broken_id == records[2].id
    assert report.problem == "prev_hash does not match the previous record's hash"


async def test_kept_bodies_hash_the_same_when_read_back(store: Store, writer_for: Any) -> None:
    # PostgreSQL's JSONB reorders keys and rewrites numbers: the canonical form must not care.
    writer = await writer_for(chain=True, bodies={"enabled": True})
    ctx = RequestContext(
        request_id="req-bodies", endpoint="chat", model="gpt-x", client_headers={},
        chat=ChatRequest(model="gpt-x", messages=[
            Message("system", "réponds brièvement ✓"),
            Message("user", "what is 0.1 + 0.2? mail me at a@b.example"),
        ]),
    )  # fmt: skip
    ctx.captured_output = ["0.30000000000000004", " ✓"]
    ctx.finished_at = ctx.started + 0.001
    writer.put_nowait(entry(ctx, keep_bodies=True))
    await writer.close()
    (record,) = (await store.request_log.page(RequestLogFilter())).records
    assert record.prompt == {"messages": [
        {"role": "system", "content": "réponds brièvement ✓"},
        {"role": "user", "content": "what is 0.1 + 0.2? mail me at [EMAIL]"},
    ]}  # fmt: skip
    assert record.response == {"text": "0.30000000000000004 ✓"}
    (report,) = await verify_chains(store)
    assert report.ok and report.chained


async def test_batches_are_large_on_a_sqlite_file_and_small_where_the_loop_encodes_them(
    store: Store, database: Database, writer_for: Any
) -> None:
    # On a SQLite file the rows go to a thread of their own, at a lower priority than the
    # event loop: larger batches cost less a row. PostgreSQL's driver encodes a batch on the
    # event loop: a long batch would hold up requests meanwhile.
    writer = await writer_for()
    on_file = database.url.startswith("sqlite") and store.request_log.takes_plain_rows
    assert writer._batch_size == (1000 if on_file else 100)
    for n in range(1200):
        writer.put_nowait(context(n))
    await writer.close()
    [(stored,)] = await database.fetch("SELECT count(*) FROM request_log")
    assert stored == 1200
    assert (await writer_for(batch_size=7))._batch_size == 7
