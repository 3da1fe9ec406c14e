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
locked between them. Retention deletes the oldest rows of every chain: verification starts
at the oldest row that remains of each chain and trusts that row's ``prev_hash``, so a purge
never reads as a break. What a chain cannot show is rows cut from its end (or from its start,
which looks like retention): keep the heads ``tollway logs verify`` prints somewhere else if
that matters.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tollway.store import RequestLogRecord, Store
from tollway.store.request_log import COLUMNS

GENESIS = "0" * 64
"""The ``prev_hash`` of a chain's first record."""

HASHED = tuple(name for name in COLUMNS if name not in ("id", "prev_hash", "hash"))
"""The columns a record's hash covers."""


def canonical(values: Mapping[str, Any]) -> bytes:
    """The canonical serialisation of a record's hashed columns."""
    document = {name: values[name] for name in HASHED}
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

    @property
    def ok(self) -> bool:
        """No break was found."""
        return self.problem is None


async def verify_chains(store: Store, *, page_size: int = 1000) -> list[ChainReport]:
    """Check every chain in the store, from its oldest remaining record to its newest."""
    reports = []
    for chain_id, _, _ in await store.request_log.chains():
        reports.append(await _verify_chain(store, chain_id, page_size))
    return reports


async def _verify_chain(store: Store, chain_id: str, page_size: int) -> ChainReport:
    previous: RequestLogRecord | None = None
    first: RequestLogRecord | None = None
    count = 0
    after = 0
    while True:
        records = await store.request_log.chain(chain_id, after_seq=after, limit=page_size)
        if not records:
            break
        for record in records:
            first = first or record
            count += 1
            problem = _problem(previous, record, chained=first.hash is not None)
            if problem is not None:
                return ChainReport(
                    chain_id, count, first.seq, record.seq, None, first.hash is not None,
                    record.id, record.seq, problem,
                )  # fmt: skip
            previous = record
        after = records[-1].seq
    assert first is not None and previous is not None, "a listed chain has rows"
    return ChainReport(
        chain_id, count, first.seq, previous.seq, previous.hash, first.hash is not None
    )


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
    if link(record.prev_hash, record.columns()) != record.hash:
        return "the hash does not match the record's contents (edited)"
    return None
