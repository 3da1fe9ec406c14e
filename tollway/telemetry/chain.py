"""Tamper evidence for the request log: hash chains, and their verification.

Each writer process starts a chain of its own (a random ``chain_id``) and numbers its
records 1, 2, 3... (``seq``). With ``telemetry.request_log.chain: true`` every record also
carries ``prev_hash`` (the hash of the record before it in its chain; 64 zeros for the
first) and ``hash`` = SHA-256 of ``prev_hash``, a newline, and the record's canonical form:
every column but ``id`` and the two hashes, as JSON with sorted keys, no spaces, times as
``YYYY-MM-DDTHH:MM:SS.ffffffZ``. Editing a column breaks that row's hash; deleting a row
leaves a gap in ``seq`` and a ``prev_hash`` that matches nothing; inserting a row breaks
its successor's ``prev_hash``.

Several replicas writing to one database keep one chain each, so nothing is shared or
locked between them. Retention deletes the oldest rows of every chain and records where it
stopped (``request_log.chain_starts``: the last deleted record's ``seq`` and ``hash``), so a
chain's first row must be seq 1 with ``prev_hash`` ``GENESIS``, or follow that record: rows
deleted from a chain's start are found (chains purged before revision 0012 start where the
upgrade found them). What a chain cannot show is rows cut from its end: keep the heads
``tollway logs verify`` prints somewhere else if that matters.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tollway.store import RequestLogRecord, Store
from tollway.store.request_log import COLUMNS
from tollway.telemetry.request_log_rows import placeholders
from tollway.telemetry.spool import decode_row

GENESIS = "0" * 64
"""The ``prev_hash`` of a chain's first record."""

HASHED = tuple(name for name in COLUMNS if name not in ("id", "prev_hash", "hash", "refused"))
"""The columns a record's hash covers."""
_PLACEHOLDER_COLUMNS = (*HASHED, "refused")

ADDED_LATER: dict[str, object] = {
    "cache_write_tokens": 0, "cache_write_1h_tokens": 0, "source_ip": None, "tool_calls": 0,
    "tool_cost_micros": 0,
}  # fmt: skip
"""Columns added after the first hashed rows (revisions 0007, 0009 and 0014), with the value rows
stored before hold: they enter the canonical form only when they hold another, so those rows
hash as they did when written."""


def canonical(values: Mapping[str, Any]) -> bytes:
    """The canonical serialisation of a record's hashed columns."""
    document = {name: values[name] for name in HASHED if name not in ADDED_LATER}
    for name, before in ADDED_LATER.items():
        value = values.get(name, before)
        if value != before:
            document[name] = value
    at = document["at"]
    assert isinstance(at, dt.datetime)
    document["at"] = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    document["guardrails"] = list(document["guardrails"])
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def link(prev_hash: str, values: Mapping[str, Any]) -> str:
    """The hash of a record whose predecessor's hash is ``prev_hash``."""
    digest = hashlib.sha256(prev_hash.encode("ascii") + b"\n" + canonical(values))
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What verifying one chain found."""

    chain_id: str
    records: int
    first_seq: int
    last_seq: int
    head: str | None
    """The hash of the chain's newest record (``None`` when not chained)."""
    chained: bool
    broken_id: int | None = None
    broken_seq: int | None = None
    problem: str | None = None
    refused: tuple[int, ...] = ()
    """The ``seq`` of each placeholder: a row the store refused, stood in for (its links
    checked, its contents not: they are not what was hashed)."""
    unmatched: tuple[int, ...] = ()
    """Of ``refused``, those with no set-aside row to check them against (when set-aside
    rows were given)."""

    @property
    def ok(self) -> bool:
        """No break was found."""
        return self.problem is None


SetAside = Mapping[tuple[str, int], Mapping[str, Any]]
"""Rows set aside in ``rejected/`` by chain and seq (``rejected_rows``)."""


async def verify_chains(
    store: Store, *, page_size: int = 1000, set_aside: SetAside | None = None
) -> list[ChainReport]:
    """Check every chain in the store, from its oldest remaining record to its newest.

    ``set_aside``: the rows the writers set aside (``rejected_rows``); each placeholder's
    hash and links are then checked against the row it stands for, so that a row turned
    into a placeholder later (to hide what it said) is found. Without them a placeholder's
    links are checked and it is listed in ``ChainReport.refused``.
    """
    reports = []
    starts = await store.request_log.chain_starts()
    for chain_id, _, _ in await store.request_log.chains():
        start = starts.get(chain_id)
        reports.append(await _verify_chain(store, chain_id, start, page_size, set_aside))
    return reports


def rejected_rows(directory: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """The rows set aside in a spool's ``rejected/`` directory, by chain and seq."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            if line.strip():
                row = decode_row(line)
                rows[(str(row["chain_id"]), int(row["seq"]))] = row
    return rows


async def _verify_chain(
    store: Store,
    chain_id: str,
    start: tuple[int, str | None] | None,
    page_size: int,
    set_aside: SetAside | None,
) -> ChainReport:
    previous: RequestLogRecord | None = None
    first: RequestLogRecord | None = None
    count = 0
    # Rows at or before where retention stopped are a late replay's, purged next time.
    after = 0 if start is None else start[0]
    refused: list[int] = []
    unmatched: list[int] = []
    while True:
        records = await store.request_log.chain(chain_id, after_seq=after, limit=page_size)
        if not records:
            break
        for record in records:
            first = first or record
            count += 1
            chained = first.hash is not None
            problem = _start_problem(record, start, chained) if previous is None else None
            problem = problem or _problem(previous, record, chained)
            if problem is None and record.refused is not None:
                refused.append(record.seq)
                if set_aside is not None:
                    row = set_aside.get((chain_id, record.seq))
                    if row is None:
                        unmatched.append(record.seq)
                    else:
                        problem = _against_set_aside(record, row, chained)
            if problem is not None:
                return ChainReport(
                    chain_id, count, first.seq, record.seq, None, chained, record.id,
                    record.seq, problem, tuple(refused), tuple(unmatched),
                )  # fmt: skip
            previous = record
        after = records[-1].seq
    if first is None or previous is None:  # only rows retention is about to purge
        seq, head = (0, None) if start is None else start
        return ChainReport(chain_id, 0, seq, seq, head, head is not None)
    return ChainReport(
        chain_id, count, first.seq, previous.seq, previous.hash, first.hash is not None,
        refused=tuple(refused), unmatched=tuple(unmatched),
    )  # fmt: skip


def _start_problem(
    record: RequestLogRecord, start: tuple[int, str | None] | None, chained: bool
) -> str | None:
    """Whether a chain's first remaining record is its first (seq 1) or follows the last
    record retention deleted; else records were deleted from its start."""
    expected = 1 if start is None else start[0] + 1
    if record.seq != expected:
        purged = "" if start is None else f", after retention's purge through seq {start[0]}"
        return (
            f"{record.seq - expected} record(s) missing at the chain's start "
            f"(seq {expected}..{record.seq - 1}{purged})"
        )
    anchor = GENESIS if start is None else start[1]
    if chained and anchor is not None and record.prev_hash != anchor:
        return "the first record's prev_hash is not the chain's start (records deleted)"
    return None


def _problem(
    previous: RequestLogRecord | None, record: RequestLogRecord, chained: bool
) -> str | None:
    if previous is not None and record.seq != previous.seq + 1:
        missing = record.seq - previous.seq - 1
        return f"{missing} record(s) missing before seq {record.seq}"
    if not chained:
        return "a hash on a record of an unchained chain" if record.hash is not None else None
    if record.hash is None or record.prev_hash is None:
        return "the record has no hash"
    if previous is not None and record.prev_hash != previous.hash:
        return "prev_hash does not match the previous record's hash"
    if record.refused is None and link(record.prev_hash, record.columns()) != record.hash:
        return "the hash does not match the record's contents (edited)"
    return None


def _against_set_aside(
    record: RequestLogRecord, row: Mapping[str, Any], chained: bool
) -> str | None:
    """A placeholder against the row set aside for it: (chained) the row hashes to the
    placeholder's hash, and the placeholder holds what the writer keeps of that row."""
    if chained and (
        row.get("prev_hash") != record.prev_hash
        or row.get("hash") != record.hash
        or link(str(row["prev_hash"]), row) != record.hash
    ):
        return "the set-aside row does not hash to its placeholder's hash (edited)"
    stored = record.columns()
    assert record.refused is not None
    if not any(
        all(stored[name] == expected.get(name) for name in _PLACEHOLDER_COLUMNS)
        for expected in placeholders(row, record.refused)
    ):
        return "the placeholder is not what its set-aside row leaves (edited)"
    return None
