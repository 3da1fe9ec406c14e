"""Migrations on both backends: from empty to head and back, and models matching the schema."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Connection, Integer, MetaData, Table, inspect

from tests.integration.store.conftest import Database
from tests.integration.store.test_request_log import context, execute
from tollway.config.schema import RequestLogConfig
from tollway.store import (
    RequestLogFilter,
    SchemaMismatch,
    SpendTally,
    downgrade,
    head_revision,
    migrate,
)
from tollway.store.columns import epoch_micros
from tollway.store.engine import make_engine
from tollway.store.migration import current_revision
from tollway.store.models import Base
from tollway.telemetry.chain import GENESIS, verify_chains
from tollway.telemetry.request_log import RequestLogWriter

TABLES = {
    "teams",
    "users",
    "team_members",
    "virtual_keys",
    "provider_credentials",
    "audit_events",
    "budgets",
    "rate_limits",
    "budget_spend",
    "request_log",
    "request_log_chain_starts",
}


def schema_differences(connection: Connection, metadata: MetaData) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match ``metadata``."""
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def inspect_database(database: Database) -> tuple[str | None, set[str], list[Any]]:
    """The database's revision, its tables, and its differences from the models."""
    engine = make_engine(database.url, schema=database.schema)
    try:
        async with engine.connect() as connection:
            revision = await connection.run_sync(current_revision)
            tables = set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
            differences = await connection.run_sync(schema_differences, Base.metadata)
    finally:
        await engine.dispose()
    return revision, tables, differences


async def test_migrate_from_empty_to_head_matches_the_models(empty_database: Database) -> None:
    revision, tables, differences = await inspect_database(empty_database)
    assert (revision, tables) == (None, set())
    assert {difference[0] for difference in differences} >= {"add_table"}
    await migrate(empty_database.url, schema=empty_database.schema)
    revision, tables, differences = await inspect_database(empty_database)
    assert revision == head_revision()
    assert tables == TABLES | {"alembic_version"}
    assert differences == []
    # Running it again is a no-op.
    await migrate(empty_database.url, schema=empty_database.schema)
    assert (await inspect_database(empty_database))[0] == head_revision()


async def test_the_comparison_would_notice_drift(database: Database) -> None:
    drifted = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    Table("extra", drifted, Column("id", Integer, primary_key=True))
    drifted.tables["teams"].append_column(Column("budget", Integer))
    engine = make_engine(database.url, schema=database.schema)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(schema_differences, drifted)
    finally:
        await engine.dispose()
    assert {difference[0] for difference in differences} == {"add_table", "add_column"}


async def test_downgrade_to_base_and_up_again(empty_database: Database) -> None:
    url, schema = empty_database.url, empty_database.schema
    await migrate(url, schema=schema)
    await downgrade(url, "base", schema=schema)
    revision, tables, _ = await inspect_database(empty_database)
    assert revision is None and tables <= {"alembic_version"}
    await migrate(url, schema=schema)
    assert (await inspect_database(empty_database))[1] == TABLES | {"alembic_version"}


async def test_store_refuses_an_unmigrated_database_unless_asked(empty_database: Database) -> None:
    store = empty_database.store()
    with pytest.raises(SchemaMismatch, match="empty"):
        await store.open()
    await store.open(migrate=True)
    assert await store.teams.find() == []
    await store.close()


async def test_replicas_starting_together_migrate_one_at_a_time(
    empty_database: Database,
) -> None:
    if empty_database.backend != "postgresql":
        pytest.skip("a SQLite file serves one node; only PostgreSQL replicas race")
    # Separate processes, as replicas are: Alembic keeps its context in module globals,
    # so one process runs one migration at a time.
    script = (
        "import asyncio, sys; from tollway.store import migrate; "
        "asyncio.run(migrate(sys.argv[1], schema=sys.argv[2]))"
    )
    replicas = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, empty_database.url, str(empty_database.schema)
        )
        for _ in range(4)
    ]
    assert [await replica.wait() for replica in replicas] == [0, 0, 0, 0]
    revision, tables, differences = await inspect_database(empty_database)
    assert (revision, differences) == (head_revision(), [])
    assert tables == TABLES | {"alembic_version"}


async def test_request_log_times_keep_their_value_across_migration_0004(
    empty_database: Database,
) -> None:
    # 0004 turns SQLite's stored text times into microseconds since the epoch, and back on
    # downgrade; PostgreSQL keeps timestamptz. Rows stored before read back the same.
    url, schema, db = empty_database.url, empty_database.schema, empty_database
    await migrate(url, schema=schema)
    await downgrade(url, "0003", schema=schema)
    times = [
        dt.datetime(2026, 12, 4, 7, 0, 1, 5, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC),
        dt.datetime(1969, 12, 31, 23, 59, 59, 250_000, tzinfo=dt.UTC),
    ]
    sqlite = db.backend == "sqlite"
    # SQLAlchemy's text for SQLite before 0004 (always six digits of fraction).
    text = [t.replace(tzinfo=None).isoformat(" ", "microseconds") for t in times]
    as_stored: list[Any] = text if sqlite else times
    for seq, at in enumerate(as_stored, start=1):
        await execute(
            db,
            "INSERT INTO request_log (at, chain_id, seq, request_id, endpoint, model, attempts,"
            " fallbacks, status, stream, input_tokens, output_tokens, cached_tokens,"
            " usage_estimated, cost_micros, guardrails) VALUES (:at, 'c', :seq, :rid, 'chat',"
            " 'm', 1, 0, 200, false, 1, 1, 0, false, 0, '[]')",
            at=at, seq=seq, rid=f"req-{seq}",
        )  # fmt: skip
    await migrate(url, schema=schema)
    store = db.store()
    await store.open()
    try:
        records = (await store.request_log.page(RequestLogFilter())).records
        assert sorted(r.at for r in records) == sorted(times)
        newest = await store.request_log.page(RequestLogFilter(since=times[0]))
        assert sorted(r.request_id for r in newest.records) == ["req-1", "req-2"]
    finally:
        await store.close()
    if sqlite:
        stored = await db.fetch("SELECT typeof(at) FROM request_log")
        assert {row[0] for row in stored} == {"integer"}
    await downgrade(url, "0003", schema=schema)
    stored = await db.fetch("SELECT at FROM request_log ORDER BY seq")
    assert [row[0] for row in stored] == as_stored


async def test_rows_hashed_before_migrations_0007_and_0009_still_verify(
    empty_database: Database,
) -> None:
    # 0007 adds the cache write counts, 0 in the rows there: a chain hashed before (without
    # them in the canonical form) must verify after, so an upgrade never reads as tampering.
    url, schema, db = empty_database.url, empty_database.schema, empty_database
    await migrate(url, schema=schema)
    await downgrade(url, "0006", schema=schema)
    at = dt.datetime(2026, 12, 4, 7, 0, 1, 5, tzinfo=dt.UTC)
    before = {
        "at": at, "chain_id": "c", "request_id": "r", "principal_kind": "key", "key_id": "k",
        "user_id": None, "team_id": None, "service": None, "endpoint": "messages",
        "model": "claude", "served_model": "claude", "deployment_id": "d",
        "provider": "anthropic", "attempts": 1, "fallbacks": 0, "status": 200,
        "error_code": None, "stream": False, "input_tokens": 30, "output_tokens": 5,
        "cached_tokens": 10, "usage_estimated": False, "cost_micros": 42, "latency_ms": 1.5,
        "ttft_ms": None, "cache": None, "guardrails": [], "prompt": None, "response": None,
    }  # fmt: skip
    previous = GENESIS
    for seq in (1, 2):
        # The canonical form as a 0004 writer made it: its own columns, sorted.
        document = {**before, "seq": seq, "at": "2026-12-04T07:00:01.000005Z"}
        digest = hashlib.sha256(
            previous.encode() + b"\n" + orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
        ).hexdigest()
        stored_at: Any = epoch_micros(at) if db.backend == "sqlite" else at
        await execute(
            db,
            "INSERT INTO request_log (at, chain_id, seq, request_id, principal_kind, key_id,"
            " endpoint, model, served_model, deployment_id, provider, attempts, fallbacks,"
            " status, stream, input_tokens, output_tokens, cached_tokens, usage_estimated,"
            " cost_micros, latency_ms, guardrails, prev_hash, hash) VALUES (:at, 'c', :seq,"
            " 'r', 'key', 'k', 'messages', 'claude', 'claude', 'd', 'anthropic', 1, 0, 200,"
            " false, 30, 5, 10, false, 42, 1.5, '[]', :prev, :hash)",
            at=stored_at, seq=seq, prev=previous, hash=digest,
        )  # fmt: skip
        previous = digest
    await migrate(url, schema=schema)
    store = db.store()
    await store.open()
    try:
        (report,) = await verify_chains(store)
        records = await store.request_log.chain("c")
    finally:
        await store.close()
    assert report.ok and report.chained and report.records == 2
    # 0009 adds source_ip, NULL in the rows there, and left out of their canonical form too.
    assert [
        (r.cache_write_tokens, r.cache_write_1h_tokens, r.refused, r.source_ip) for r in records
    ] == [(0, 0, None, None), (0, 0, None, None)]


async def _dimension_indexes(database: Database) -> dict[str, bool]:
    """Whether each of the request log's team, user and key indexes leaves out NULLs."""
    if database.backend == "sqlite":
        sql = "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
    else:
        sql = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
    definitions = dict(await database.fetch(sql))
    return {
        name: f"{name}_id IS NOT NULL" in definitions[f"ix_request_log_{name}_at"]
        for name in ("team", "user", "key")
    }


async def test_the_team_user_and_key_indexes_leave_out_rows_without_one(
    empty_database: Database,
) -> None:
    # Revision 0010: no filter asks for a NULL team, user or key, so a row without one (a
    # key of no team, a user signed in without a key) costs those indexes no entry.
    url, schema, db = empty_database.url, empty_database.schema, empty_database
    await migrate(url, schema=schema)
    assert await _dimension_indexes(db) == {"team": True, "user": True, "key": True}
    await downgrade(url, "0009", schema=schema)
    assert await _dimension_indexes(db) == {"team": False, "user": False, "key": False}


async def test_budget_spend_keeps_its_totals_across_migration_0011(
    empty_database: Database,
) -> None:
    # 0011 adds the spend per epoch; rows from before read as spend before any epoch, and a
    # downgrade keeps the totals.
    url, schema, db = empty_database.url, empty_database.schema, empty_database
    await migrate(url, schema=schema)
    await downgrade(url, "0010", schema=schema)
    await execute(
        db,
        "INSERT INTO budget_spend (account, spent_micros, updated_at)"
        " VALUES ('key:k:total', 700, CURRENT_TIMESTAMP)",
    )
    await migrate(url, schema=schema)
    store = db.store()
    await store.open()
    try:
        assert await store.limits.tallies(["key:k:total"]) == {"key:k:total": SpendTally(700)}
        await store.limits.record_spend({"key:k:total": SpendTally(0, {"e": 900})})
    finally:
        await store.close()
    await downgrade(url, "0010", schema=schema)
    assert await db.fetch("SELECT account, spent_micros FROM budget_spend") == [
        ("key:k:total", 900)
    ]


async def test_chains_purged_before_migration_0012_verify_and_a_later_deletion_does_not(
    empty_database: Database, tmp_path: Path
) -> None:
    # Before 0012 retention left no record of where it stopped: 0012 takes each chain's start
    # as the upgrade finds it, so an older purge is not a break, while rows deleted after are.
    url, schema, db = empty_database.url, empty_database.schema, empty_database
    await migrate(url, schema=schema)
    store = db.store()
    await store.open()
    try:
        config = RequestLogConfig(flush_interval=0.05, chain=True)
        writer = RequestLogWriter(store, config, tmp_path / "spool")
        await writer.start()
        for n in range(5):
            writer.put_nowait(context(n))
        await writer.close()
    finally:
        await store.close()
    await downgrade(url, "0011", schema=schema)
    await execute(db, "DELETE FROM request_log WHERE seq <= 2")  # an earlier purge
    await migrate(url, schema=schema)
    store = db.store()
    await store.open()
    try:
        (report,) = await verify_chains(store)
        assert report.ok and (report.first_seq, report.records) == (3, 3)
        await execute(db, "DELETE FROM request_log WHERE seq = 3")
        (report,) = await verify_chains(store)
    finally:
        await store.close()
    assert report.problem == (
        "1 record(s) missing at the chain's start (seq 3..3, after retention's purge through seq 2)"
    )


async def test_teams_provisioned_before_migration_0015_keep_their_group(
    empty_database: Database,
) -> None:
    # Before 0015 a sign-in matched teams by name and marked the ones it made in their
    # metadata; 0015 makes each of those stand for the group it was named after, so renaming
    # it later keeps its members. A team an admin made stands for no group yet.
    url, schema, db = empty_database.url, empty_database.schema, empty_database
    await migrate(url, schema=schema, revision="0014")
    for team_id, name, metadata in (
        ("t-made", "research", {"oidc_issuer": "https://idp.example", "cost": "a"}),
        ("t-admin", "ml", {"cost": "b"}),
    ):
        await execute(
            db,
            "INSERT INTO teams (id, name, metadata, created_at, updated_at)"
            " VALUES (:id, :name, :metadata, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            id=team_id,
            name=name,
            metadata=orjson.dumps(metadata).decode(),
        )
    await migrate(url, schema=schema)
    store = db.store()
    await store.open()
    try:
        made, admins = await store.teams.get("t-made"), await store.teams.get("t-admin")
        assert (made.oidc_issuer, made.oidc_group, made.metadata) == (
            "https://idp.example",
            "research",
            {"cost": "a"},
        )
        assert (admins.oidc_issuer, admins.oidc_group, admins.metadata) == (
            None,
            None,
            {"cost": "b"},
        )
        await store.teams.update("t-made", name="Research Lab")
        assert await store.teams.provision("https://idp.example", ["research"]) == (
            {"research": "t-made"},
            [],
        )
    finally:
        await store.close()
    await downgrade(url, "0014", schema=schema)
    rows = await db.fetch("SELECT id, metadata FROM teams ORDER BY id")
    metadata = {
        row[0]: row[1] if isinstance(row[1], dict) else orjson.loads(row[1]) for row in rows
    }
    assert metadata == {
        "t-admin": {"cost": "b"},
        "t-made": {"cost": "a", "oidc_issuer": "https://idp.example"},
    }
