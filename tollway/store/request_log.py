"""The request log: batch inserts, filtered pages newest first, retention, chain reads.

Rows come from the request log writer (telemetry/request_log.py) as plain dicts of column
values, already numbered (``chain_id``, ``seq``) and, when chaining is on, hashed. An insert
skips rows whose ``(chain_id, seq)`` is already stored, so a batch written twice (a commit
whose answer was lost, then replayed from the spool) is stored once.

Pages are ordered newest first by ``(at, id)``; the cursor is the last row's ``at`` and
``id``, so rows replayed late (an older ``at`` with a newer ``id``) still page in time order.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import operator
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import orjson
from sqlalchemy import ColumnElement, String, and_, delete, false, func, or_, select, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tollway.store.columns import BIG_ID_RANGE, EPOCH, epoch_micros, require_aware
from tollway.store.errors import InvalidRecord
from tollway.store.models import RequestLogChainStartRow, RequestLogRow
from tollway.store.sqlite_writer import SqliteWriter, Unexpected
from tollway.store.transaction import Sessions, dialect_insert

MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class RequestLogRecord:
    """One stored request: who, what, which deployment, the outcome, tokens and cost."""

    id: int
    at: dt.datetime
    chain_id: str
    seq: int
    request_id: str
    principal_kind: str | None
    key_id: str | None
    user_id: str | None
    team_id: str | None
    service: str | None
    endpoint: str
    model: str
    served_model: str | None
    deployment_id: str | None
    provider: str | None
    attempts: int
    fallbacks: int
    status: int
    error_code: str | None
    stream: bool
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    cache_write_1h_tokens: int
    usage_estimated: bool
    cost_micros: int
    latency_ms: float | None
    ttft_ms: float | None
    cache: str | None
    guardrails: tuple[str, ...]
    prompt: Any
    response: Any
    prev_hash: str | None
    hash: str | None
    refused: str | None
    """Set on a placeholder: why the store refused the row first written for this request
    (telemetry/request_log.py); its other values are what could be kept of it."""
    source_ip: str | None
    """The address the request came from (NULL in rows stored before revision 0009)."""
    tool_calls: int = 0
    """Calls of the provider's server-side tools (web search...) the answer made (0 in rows
    stored before revision 0014)."""
    tool_cost_micros: int = 0
    """What those calls cost: the part of ``cost_micros`` that is tool fees."""

    def columns(self) -> dict[str, Any]:
        """Every column's value by name (``guardrails`` as a list)."""
        values = {field.name: getattr(self, field.name) for field in fields(self)}
        values["guardrails"] = list(self.guardrails)
        return values


COLUMNS: tuple[str, ...] = tuple(field.name for field in fields(RequestLogRecord))
"""The column names, in table order."""


def request_log_record(row: RequestLogRow) -> RequestLogRecord:
    """The record for a ``request_log`` row."""
    values = {name: getattr(row, name) for name in COLUMNS}
    values["guardrails"] = tuple(row.guardrails or ())
    return RequestLogRecord(**values)


@dataclass(frozen=True, slots=True)
class RequestLogFilter:
    """Which rows a query returns; every field set narrows it.

    ``status``: an HTTP status (``"429"``), a class (``"4xx"``), ``"ok"`` (below 400) or
    ``"error"`` (400 and above). ``source_ips``: the rows from any of these addresses
    (spellings of one address: admin/logs.py). ``visible_*``: the rows a non-admin may
    read, any of its teams' rows, its user's rows, its key's rows; ``None`` (the default)
    means all.
    """

    user_id: str | None = None
    team_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    status: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    source_ips: tuple[str, ...] | None = None
    visible_teams: tuple[str, ...] | None = None
    visible_user: str | None = None
    visible_key: str | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        """The WHERE conditions of this filter."""
        row = RequestLogRow
        where: list[ColumnElement[bool]] = []
        for column, value in (
            (row.user_id, self.user_id),
            (row.team_id, self.team_id),
            (row.key_id, self.key_id),
            (row.model, self.model),
        ):
            if value is not None:
                where.append(column == value)
        if self.status is not None:
            where.append(_status_condition(self.status))
        if self.source_ips is not None:
            where.append(row.source_ip.in_(self.source_ips))
        if self.since is not None:
            where.append(row.at >= require_aware(self.since, "since"))
        if self.until is not None:
            where.append(row.at < require_aware(self.until, "until"))
        if self.visible_teams is not None:
            scope: list[ColumnElement[bool]] = []
            if self.visible_teams:
                scope.append(row.team_id.in_(self.visible_teams))
            if self.visible_user:
                scope.append(row.user_id == self.visible_user)
            if self.visible_key:
                scope.append(row.key_id == self.visible_key)
            where.append(or_(*scope) if scope else false())
        return where


def _status_condition(status: str) -> ColumnElement[bool]:
    column = RequestLogRow.status
    if status == "ok":
        return column < 400
    if status == "error":
        return column >= 400
    if len(status) == 3 and status[0] in "12345" and status[1:].lower() == "xx":
        low = int(status[0]) * 100
        return and_(column >= low, column < low + 100)
    if status.isdigit() and len(status) == 3:
        return column == int(status)
    raise InvalidRecord(
        f"status {status!r} is not an HTTP status, 4xx-style class, ok or error", param="status"
    )


@dataclass(frozen=True, slots=True)
class RequestLogPage:
    """One page of records and the cursor of the next (``None`` at the end)."""

    records: tuple[RequestLogRecord, ...]
    next_cursor: str | None


class RequestLogRepository:
    """Writes request log batches; reads them back by filter, chain or age."""

    def __init__(self, sessions: Sessions, writer: SqliteWriter | None = None) -> None:
        self._sessions = sessions
        self._writer = writer

    async def insert(self, rows: Sequence[Mapping[str, Any] | RowValues]) -> None:
        """Insert a batch in one transaction; rows already stored (same chain and seq) are
        skipped. Raises whatever the database raises. A row is a mapping of column values or
        a tuple of them in ``INSERT_COLUMNS`` order.

        The rows go to the driver as plain values in the column types it takes, bypassing
        SQLAlchemy's per-row bind processing (about 65 µs a row on SQLite, which the
        gateway's one core paid for every request): on a SQLite file as multi-row
        statements through the store's ``SqliteWriter``, on PostgreSQL through
        ``executemany``. Values are stored exactly as the ORM would store them, so reads and
        chain hashes are unchanged; the tests read rows back on both.

        SQLite's ``OR IGNORE`` skips, without an error, a row that breaks a CHECK constraint
        (or that a trigger ignores) as it skips one stored before: when fewer rows went in
        than were given, those not stored now or before raise ``InvalidRecord`` (after the
        rest were stored), so the writer can account for them.
        """
        if not rows:
            return
        changed = 0
        if self._writer is not None:
            changed = await self._writer.write(_sqlite_statements(rows))
        else:
            changed = await self._insert_on_engine(rows)
        if changed < len(rows):
            await self._check_stored(rows)

    async def _insert_on_engine(self, rows: Sequence[Mapping[str, Any] | RowValues]) -> int:
        """``insert`` through the engine; the rows changed (as many as given on PostgreSQL,
        where only a row stored before is skipped without an error)."""
        changed = len(rows)
        async with self._sessions.write() as session:
            connection = await session.connection()
            dialect = connection.dialect.name
            if dialect == "sqlite":  # in memory: only the engine's connection sees the data
                changed = 0
                for sql, values in _sqlite_statements(rows):
                    result = await connection.exec_driver_sql(sql, tuple(values))
                    changed += result.rowcount
            elif dialect == "postgresql":
                await connection.exec_driver_sql(_PG_INSERT, [_pg_values(r) for r in rows])
            else:  # pragma: no cover - the store supports only the two
                statement = sqlite_insert(RequestLogRow).on_conflict_do_nothing(
                    index_elements=[RequestLogRow.chain_id, RequestLogRow.seq]
                )
                await session.execute(statement, [row_mapping(row) for row in rows])
        return changed

    async def _check_stored(self, rows: Sequence[Mapping[str, Any] | RowValues]) -> None:
        """Raise ``InvalidRecord`` unless every one of ``rows`` is stored (by chain and seq)."""
        wanted = {(row[_CHAIN], row[_SEQ]) if isinstance(row, tuple) else
                  (row["chain_id"], row["seq"]) for row in rows}  # fmt: skip
        seqs = [seq for _, seq in wanted]
        table = RequestLogRow
        query = select(table.chain_id, table.seq).where(
            table.chain_id.in_({chain for chain, _ in wanted}),
            table.seq.between(min(seqs), max(seqs)),
        )
        async with self._sessions() as session:
            stored = {(chain, seq) for chain, seq in await session.execute(query)}
        if missing := wanted - stored:
            raise InvalidRecord(
                f"{len(missing)} request log row(s) were skipped without an error "
                "(a constraint or trigger that ignores rows)"
            )

    @property
    def takes_plain_rows(self) -> bool:
        """Whether ``insert_plain`` is there: on a SQLite file, written by its own writer."""
        return self._writer is not None

    async def insert_plain(
        self, chain_id: str, first_seq: int, rows: Sequence[Sequence[Any]]
    ) -> None:
        """Insert new plain rows in one transaction, numbered ``first_seq``, ``first_seq +
        1``, ... in the chain ``chain_id``; only where ``takes_plain_rows``.

        A plain row holds the values of ``PLAIN_COLUMNS`` in that order (values after them
        are ignored): no bodies and no hashes, ``at`` in microseconds since the epoch,
        ``guardrails`` as JSON text, everything else as the column takes it. The request
        log writer makes its own rows in this layout, so its values reach the driver with no
        conversion a row, column by column (``_plain_statements``; docs/performance.md,
        "Session 10" and "Session 11"). Every
        row must be stored: when one is not (a required value missing, or the same chain
        and seq stored before), nothing is, and ``InvalidRecord`` is raised; the writer
        then inserts the batch's rows one by one and sets aside those refused.
        """
        if not rows:
            return
        if self._writer is None:
            raise RuntimeError("plain request log rows need the SQLite file's own writer")
        try:
            await self._writer.write(_plain_statements(chain_id, first_seq, rows), len(rows))
        except Unexpected:
            raise InvalidRecord("a request log row could not be stored as given") from None

    async def ping(self) -> None:
        """One trivial query; raises when the database cannot be reached."""
        async with self._sessions() as session:
            await session.execute(text("SELECT 1"))

    async def page(
        self, where: RequestLogFilter, *, limit: int = 100, cursor: str | None = None
    ) -> RequestLogPage:
        """Rows matching ``where``, newest first, ``limit`` at a time after ``cursor``."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRecord(f"limit must be between 1 and {MAX_PAGE}")
        row = RequestLogRow
        query = (
            select(row).where(*where.conditions()).order_by(row.at.desc(), row.id.desc())
        ).limit(limit + 1)
        if cursor is not None:
            at, last_id = _parse_cursor(cursor)
            query = query.where(or_(row.at < at, and_(row.at == at, row.id < last_id)))
        async with self._sessions() as session:
            rows = list(await session.scalars(query))
        records = tuple(request_log_record(r) for r in rows[:limit])
        more = len(rows) > limit
        return RequestLogPage(records, _cursor(records[-1]) if more else None)

    async def scan(
        self, where: RequestLogFilter, *, page_size: int = 500
    ) -> AsyncIterator[RequestLogRecord]:
        """Every row matching ``where``, newest first, read a page at a time."""
        cursor = None
        while True:
            page = await self.page(where, limit=page_size, cursor=cursor)
            for record in page.records:
                yield record
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def purge(self, before: dt.datetime, *, chunk: int = 5000) -> int:
        """Delete rows older than ``before``, ``chunk`` at a time (short transactions, so
        writers are not held up); returns how many.

        Each chain loses a prefix: every row up to its newest row older than ``before`` (a
        row finished out of order, a little younger, goes with them), and the last row
        deleted is recorded as the chain's start (``chain_starts``) before any is deleted, so
        verification tells retention from a deletion."""
        before = require_aware(before, "before")
        row = RequestLogRow
        ends = select(row.chain_id, func.max(row.seq)).where(row.at < before).group_by(row.chain_id)
        async with self._sessions() as session:
            purged = [(str(chain_id), int(last)) for chain_id, last in await session.execute(ends)]
        removed = 0
        for chain_id, last in purged:
            await self._record_start(chain_id, last)
            removed += await self._delete_through(chain_id, last, chunk)
        return removed

    async def _record_start(self, chain_id: str, last: int) -> None:
        """Record that ``chain_id`` now starts after ``last`` (never moving a start back)."""
        row, start = RequestLogRow, RequestLogChainStartRow
        async with self._sessions.write() as session:
            last_hash = await session.scalar(
                select(row.hash).where(row.chain_id == chain_id, row.seq == last)
            )
            insert = dialect_insert(session)(start).values(
                chain_id=chain_id, seq=last, hash=last_hash
            )
            await session.execute(
                insert.on_conflict_do_update(
                    index_elements=["chain_id"],
                    set_={"seq": last, "hash": last_hash},
                    where=start.seq < last,
                )
            )

    async def _delete_through(self, chain_id: str, last: int, chunk: int) -> int:
        row = RequestLogRow
        removed = 0
        while True:
            ids = select(row.id).where(row.chain_id == chain_id, row.seq <= last).limit(chunk)
            async with self._sessions.write() as session:
                result = await session.execute(delete(row).where(row.id.in_(ids.scalar_subquery())))
            count = int(result.rowcount)  # type: ignore[attr-defined]
            removed += count
            if count < chunk:
                return removed

    async def chain_starts(self) -> dict[str, tuple[int, str | None]]:
        """Per chain retention purged: the ``seq`` and ``hash`` of the last record deleted."""
        start = RequestLogChainStartRow
        async with self._sessions() as session:
            rows = await session.execute(select(start.chain_id, start.seq, start.hash))
            return {chain_id: (int(seq), hashed) for chain_id, seq, hashed in rows}

    async def chains(self) -> list[tuple[str, int, int]]:
        """Every chain id with its lowest and highest stored ``seq``."""
        row = RequestLogRow
        query = (
            select(row.chain_id, func.min(row.seq), func.max(row.seq))
            .group_by(row.chain_id)
            .order_by(func.min(row.at))
        )
        async with self._sessions() as session:
            return [(c, int(low), int(high)) for c, low, high in (await session.execute(query))]

    async def chain(
        self, chain_id: str, *, after_seq: int = 0, limit: int = 1000
    ) -> list[RequestLogRecord]:
        """Rows of one chain in ``seq`` order, from just after ``after_seq``."""
        row = RequestLogRow
        query = (
            select(row)
            .where(row.chain_id == chain_id, row.seq > after_seq)
            .order_by(row.seq)
            .limit(limit)
        )
        async with self._sessions() as session:
            return [request_log_record(r) for r in await session.scalars(query)]


def _cursor(record: RequestLogRecord) -> str:
    # URL-safe: the row's time in microseconds since the epoch, and its id.
    micros = epoch_micros(record.at)
    return f"{micros}.{record.id}"


def _parse_cursor(cursor: str) -> tuple[dt.datetime, int]:
    # A cursor comes from the client: a time or id past what the store holds is refused as
    # any other bad cursor (it was an OverflowError, a 500).
    try:
        micros, last_id = (int(part) for part in cursor.split("."))
        if last_id not in BIG_ID_RANGE:
            raise ValueError(last_id)
        return EPOCH + dt.timedelta(microseconds=micros), last_id
    except (ValueError, OverflowError):
        raise InvalidRecord(f"{cursor!r} is not a request log cursor", param="cursor") from None


INSERT_COLUMNS: tuple[str, ...] = tuple(
    column.name for column in RequestLogRow.__table__.columns if column.name != "id"
)
"""The columns an insert fills, in the order of a row given as a tuple (``RowValues``)."""

RowValues = tuple[Any, ...]
"""A row's values in ``INSERT_COLUMNS`` order, typed as in a mapping row (the request log
writer's rows: no dict a row on its way to the driver)."""
_COLUMN_LIST = ", ".join(INSERT_COLUMNS)
_NULLABLE = frozenset(
    index
    for index, name in enumerate(INSERT_COLUMNS)
    if RequestLogRow.__table__.columns[name].nullable
)
_ZERO_DEFAULT = ("cache_write_tokens", "cache_write_1h_tokens", "tool_calls", "tool_cost_micros")
"""Counts the table fills with 0 when a statement leaves them out (most requests have none)."""
_EMPTY: dict[int, object] = {
    **dict.fromkeys(_NULLABLE),
    **{INSERT_COLUMNS.index(name): 0 for name in _ZERO_DEFAULT},
}
"""The columns a statement may leave out when every row holds this value (what the table
gives them)."""
_SQLITE_SIZES = (100, 20, 5, 1)
"""Rows per SQLite statement (a batch may take several, in one transaction), largest first.
The driver binds a statement's values holding the GIL, which holds up the event loop
meanwhile: 100 rows keep each hold short, and stay well under SQLite's limit of 32,766
parameters. A batch of another size is cut into these few sizes, so that the statements of a
few shapes and sizes cover every batch: preparing a 100-row statement costs SQLite about
0.5 ms, and the driver's cache holds 128 statements (of any size the writer's timer may
leave)."""


def _sqlite_statements(
    rows: Sequence[Mapping[str, Any] | RowValues],
) -> list[tuple[str, list[Any]]]:
    """``rows`` as multi-row inserts. One statement of many rows, not ``executemany``:
    SQLite's driver lets go of the GIL around every step, and on the gateway's one core a
    step per row meant a thread switch per row (about 100 µs a request at 1,000 requests/s).

    A column that is NULL in every row of a statement is left out of it (the table gives it
    NULL): the driver binds a None only after an adapter lookup, and most rows have several
    such columns (bodies, hashes, the fields of an error or a cache). The usual shapes of a
    batch repeat, so their statements stay in the driver's cache.
    """
    statements = []
    start = 0
    for count in _sizes(len(rows)):
        part = [_sqlite_values(row) for row in rows[start : start + count]]
        start += count
        kept = _kept(list(zip(*part, strict=True)), len(INSERT_COLUMNS), _EMPTY)
        values = part if len(kept) == len(INSERT_COLUMNS) else map(operator.itemgetter(*kept), part)
        statements.append(
            (_sqlite_insert(count, kept), list(itertools.chain.from_iterable(values)))
        )
    return statements


def _kept(
    columns: Sequence[Sequence[Any]], width: int, empty: Mapping[int, object]
) -> tuple[int, ...]:
    """The indexes of the first ``width`` ``columns`` a statement binds: all but those of
    ``empty`` that hold its value (NULL, or a count's 0) in every row: the table gives them
    that."""
    return tuple(
        index
        for index in range(width)
        if (value := empty.get(index, _BOUND)) is _BOUND
        or columns[index][0] != value  # then no need to count (a compare a value)
        or columns[index].count(value) != len(columns[index])
    )


_BOUND = object()
"""``_kept``'s mark for a column that is always bound."""


def _sizes(rows: int) -> Iterator[int]:
    """``rows`` as a sum of ``_SQLITE_SIZES``, largest first (every size divides the one
    before, so this is the fewest statements)."""
    for size in _SQLITE_SIZES:
        while rows >= size:
            yield size
            rows -= size


@functools.lru_cache(maxsize=128)
def _sqlite_insert(rows: int, kept: tuple[int, ...]) -> str:
    """An insert of ``rows`` rows of the columns ``kept`` (indexes into ``INSERT_COLUMNS``)
    in one statement; the usual shapes are cached.

    ``OR IGNORE``, not ``ON CONFLICT (chain_id, seq) DO NOTHING``: the same rows stored (a
    row already there is skipped), at about 1.2 of 6.6 us a row less, as SQLite then checks
    the unique index once instead of before and again during the insert. It would also skip
    a row with a NOT NULL column empty, silently: ``_values`` refuses those before any
    statement runs, so the writer still sets such a row aside and stores the rest. (The
    table has no other unique index and no CHECK constraints.)
    """
    columns = ", ".join(INSERT_COLUMNS[index] for index in kept)
    row = f"({', '.join('?' * len(kept))})"
    return f"INSERT OR IGNORE INTO request_log ({columns}) VALUES {', '.join([row] * rows)}"


_PG_INSERT = (
    f"INSERT INTO request_log ({_COLUMN_LIST}) VALUES "
    f"({', '.join(f'${i}' for i in range(1, len(INSERT_COLUMNS) + 1))}) "
    "ON CONFLICT (chain_id, seq) DO NOTHING"
)
_AT = INSERT_COLUMNS.index("at")
_CHAIN = INSERT_COLUMNS.index("chain_id")
_SEQ = INSERT_COLUMNS.index("seq")
_GUARDRAILS = INSERT_COLUMNS.index("guardrails")
_NULLABLE_JSON = tuple(INSERT_COLUMNS.index(name) for name in ("prompt", "response"))
_BOOLS = tuple(INSERT_COLUMNS.index(name) for name in ("stream", "usage_estimated"))


_ALL_VALUES = operator.itemgetter(*INSERT_COLUMNS)
_REQUIRED = tuple(
    index
    for index in range(len(INSERT_COLUMNS))
    if index not in _NULLABLE and index != _GUARDRAILS  # no guardrails: an empty list
)
_REQUIRED_VALUES = operator.itemgetter(*_REQUIRED)
_DEFAULTS = dict.fromkeys(_ZERO_DEFAULT, 0)


def row_mapping(row: Mapping[str, Any] | RowValues) -> dict[str, Any]:
    """A row as a mapping of column values (for spool files and hash chains)."""
    if isinstance(row, tuple):
        return dict(zip(INSERT_COLUMNS, row, strict=True))
    return dict(row)


def _values(row: Mapping[str, Any] | RowValues) -> list[Any]:
    """The row's values in ``INSERT_COLUMNS`` order, JSON columns as JSON text (what
    SQLAlchemy's JSON types would have sent; NULL for absent bodies)."""
    if isinstance(row, tuple):
        if len(row) != len(INSERT_COLUMNS):
            raise InvalidRecord(f"a request log row has {len(INSERT_COLUMNS)} values")
        values = list(row)
    else:
        try:
            values = list(_ALL_VALUES(row))  # one call when every column is there
        except KeyError:  # a row spooled before a column was added: its default
            values = [row.get(column, _DEFAULTS.get(column)) for column in INSERT_COLUMNS]
    if None in _REQUIRED_VALUES(values):
        missing = [INSERT_COLUMNS[index] for index in _REQUIRED if values[index] is None]
        raise InvalidRecord(f"a request log row needs {', '.join(missing)}")
    guardrails = values[_GUARDRAILS]
    values[_GUARDRAILS] = orjson.dumps(guardrails).decode() if guardrails else "[]"
    for index in _NULLABLE_JSON:
        if values[index] is not None:
            values[index] = orjson.dumps(values[index]).decode()
    at = values[_AT]
    if not isinstance(at, dt.datetime):
        raise InvalidRecord("a request log row needs its time")
    if at.tzinfo is not dt.UTC:  # the writer's own rows are in UTC already
        values[_AT] = require_aware(at, "at")
    return values


def _sqlite_values(row: Mapping[str, Any] | RowValues) -> tuple[Any, ...]:
    """A row as SQLite takes it: the time in microseconds since the epoch (``UTCMicros``),
    booleans as integers."""
    values = _values(row)
    values[_AT] = epoch_micros(values[_AT])
    for index in _BOOLS:
        values[index] = 1 if values[index] else 0
    return tuple(values)


PLAIN_COLUMNS: tuple[str, ...] = tuple(
    name
    for name in INSERT_COLUMNS
    if name not in ("chain_id", "seq", "prompt", "response", "prev_hash", "hash", "refused")
)
"""The columns of a plain row (``insert_plain``), in its order."""
_PLAIN_WIDTH = len(PLAIN_COLUMNS)
_PLAIN_EMPTY = {
    index: _EMPTY[INSERT_COLUMNS.index(name)]
    for index, name in enumerate(PLAIN_COLUMNS)
    if INSERT_COLUMNS.index(name) in _EMPTY
}
_PLAIN_BOOLS = frozenset(PLAIN_COLUMNS.index(name) for name in ("stream", "usage_estimated"))
_PLAIN_SHAREABLE = frozenset(
    PLAIN_COLUMNS.index(name)
    for name in PLAIN_COLUMNS
    if name == "guardrails"  # JSON text
    or (isinstance(RequestLogRow.__table__.columns[name].type, String) and name != "request_id")
)
"""The text columns a statement may bind once for all its rows (``_plain_statements``)."""
_SHARED_FROM = 20
"""The fewest rows a statement binds a shared value once for: in smaller ones, which a
batch only leaves over, which columns hold one value changes from batch to batch, and each
new shape is a statement to prepare."""


def _plain_statements(
    chain_id: str, first_seq: int, rows: Sequence[Sequence[Any]]
) -> list[tuple[str, list[Any]]]:
    """Plain rows as multi-row inserts (the bodies and hashes NULL).

    The values go to the driver column by column: a statement's parameters are numbered so
    that ``?1`` is the chain, ``?2`` the first row's number (row ``r`` stores ``?2 + r``),
    then each column's values for every row in turn. The Python side is then a few C-level
    calls a column instead of a tuple a row, and the chain and number are bound once. A
    nullable column that is NULL in every row is left out; booleans are bound as 0 and 1;
    a text column that holds one value in every row of a statement of ``_SHARED_FROM`` rows
    or more (the model, the provider, the key of a busy client, ...) is bound once, and
    every row refers to that one parameter.
    Binding costs the driver an adapter lookup for each None or bool (about 1,200
    instructions) and SQLite a copy for each text (about 950 with the driver's part), so
    what is not bound is not paid for (docs/performance.md, "Session 11", "Session 15")."""
    statements = []
    start = 0
    for count in _sizes(len(rows)):
        columns = list(zip(*rows[start : start + count], strict=False))
        kept = _kept(columns, _PLAIN_WIDTH, _PLAIN_EMPTY)
        shared = _shared(columns, kept) if count >= _SHARED_FROM else ()
        values: list[Any] = [chain_id, first_seq + start]
        append, extend = values.append, values.extend
        for index in kept:
            if index in shared:
                append(columns[index][0])
            else:
                extend(map(int, columns[index]) if index in _PLAIN_BOOLS else columns[index])
        statements.append((_plain_insert(count, kept, shared), values))
        start += count
    return statements


def _shared(columns: Sequence[Sequence[Any]], kept: tuple[int, ...]) -> tuple[int, ...]:
    """Those of the text columns ``kept`` whose rows all hold one value."""
    return tuple(
        index
        for index in kept
        if index in _PLAIN_SHAREABLE
        and (column := columns[index])[0] == column[-1]  # most that differ, at once
        and column.count(column[0]) == len(column)
    )


@functools.lru_cache(maxsize=64)
def _plain_insert(rows: int, kept: tuple[int, ...], shared: tuple[int, ...] = ()) -> str:
    """An insert of ``rows`` plain rows of the columns ``kept`` (indexes into
    ``PLAIN_COLUMNS``), parameters numbered as ``_plain_statements`` binds them: one for
    each of the columns ``shared``, one a row for the others (``OR IGNORE``: see
    ``_sqlite_insert``; ``insert_plain`` counts what it stored)."""
    names = ", ".join((*(PLAIN_COLUMNS[index] for index in kept), "chain_id", "seq"))
    firsts = []  # each kept column's first parameter, and whether rows share it
    number = 3
    for index in kept:
        firsts.append((number, index in shared))
        number += 1 if index in shared else rows
    tuples = []
    for row in range(rows):
        values = [f"?{first}" if once else f"?{first + row}" for first, once in firsts]
        values += ["?1", f"?2 + {row}" if row else "?2"]
        tuples.append(f"({', '.join(values)})")
    return f"INSERT OR IGNORE INTO request_log ({names}) VALUES {', '.join(tuples)}"


def _pg_values(row: Mapping[str, Any] | RowValues) -> tuple[Any, ...]:
    """A row as asyncpg takes it (JSONB as text, as SQLAlchemy's asyncpg codecs expect)."""
    return tuple(_values(row))
