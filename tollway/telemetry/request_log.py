"""The request log writer: a bounded queue, batched inserts, a disk spool, retention.

```
stage.on_complete ─put_nowait─► deque (queue_size; full: dropped and counted)
                                   │ background task: every flush_interval, or at batch_size
                                   ▼
                  rows: numbered (chain_id, seq), hashed (chain), bodies redacted
                                   │
             spool empty? ─yes─► INSERT batch ─ok─► written
                   │no                 │ failed: store unreachable (ping fails)
                   ▼                   ▼
             replay the spool,   spool/<time>-<chain>-<n>.jsonl ─► replayed oldest first
             oldest first        once the store answers (backoff up to retry_interval)
```

Nothing here runs on the request path except ``put_nowait``: a length check and a deque
append. While the spool holds anything, new batches go behind it, so rows reach the store in
the order they were written. Inserts skip rows already stored (same ``chain_id`` and
``seq``), so a batch whose commit succeeded but whose answer was lost, replayed later, is
stored once. A batch the store refuses while it answers pings is inserted row by row and
the rows it still refuses are set aside (``rejected/`` in the spool directory, counted).

``close`` (at gateway shutdown) writes everything queued: to the store, or to the spool
when the store is down; the spool is replayed at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tollway.config.schema import RequestLogConfig
from tollway.store import Store
from tollway.store.columns import EPOCH
from tollway.store.request_log import INSERT_COLUMNS, PLAIN_COLUMNS, RowValues, row_mapping
from tollway.telemetry.bodies import BodyPolicy
from tollway.telemetry.chain import GENESIS, link
from tollway.telemetry.request_log_rows import (
    COUNTS,
    INT64_MAX,
    INT64_MIN,
    TEXT_LIMITS,
    clamp,
    clean_text,
    needs_cleaning,
    placeholders,
    unstorable,
)
from tollway.telemetry.request_log_stage import Entry
from tollway.telemetry.spool import Row, Spool

log = logging.getLogger("tollway.request_log")

_YIELD_EVERY = 64
"""Rows prepared between yields to the event loop (hashing and bodies take CPU)."""

_ROW_ORDER = (
    "at", "chain_id", "seq", "request_id", "principal_kind", "key_id", "user_id", "team_id",
    "service", "endpoint", "model", "served_model", "deployment_id", "provider", "attempts",
    "fallbacks", "status", "error_code", "stream", "input_tokens", "output_tokens",
    "cached_tokens", "cache_write_tokens", "cache_write_1h_tokens", "usage_estimated",
    "cost_micros", "latency_ms", "ttft_ms", "cache", "guardrails", "prompt", "response",
    "prev_hash", "hash", "refused", "source_ip", "tool_calls", "tool_cost_micros",
)  # fmt: skip
if _ROW_ORDER != INSERT_COLUMNS:  # pragma: no cover - caught by any test that imports this
    raise RuntimeError("the request log writer's row order differs from the table's columns")
_LIMITED = tuple((INSERT_COLUMNS.index(column), limit) for column, limit in TEXT_LIMITS.items())
_COUNTED = tuple(INSERT_COLUMNS.index(column) for column in COUNTS)
_ENTRY_ORDER = (
    "at", "request_id", "principal_kind", "key_id", "user_id", "team_id", "service",
    "endpoint", "model", "served_model", "deployment_id", "provider", "attempts", "fallbacks",
    "status", "error_code", "stream", "input_tokens", "output_tokens", "cached_tokens",
    "cache_write_tokens", "cache_write_1h_tokens", "usage_estimated", "cost_micros",
    "latency_ms", "ttft_ms", "cache", "guardrails", "source_ip", "tool_calls",
    "tool_cost_micros",
)  # fmt: skip
"""An ``Entry``'s values before the bodies: the store's plain row."""
if _ENTRY_ORDER != PLAIN_COLUMNS:  # pragma: no cover - caught by any test that imports this
    raise RuntimeError("the request log entry's order differs from the store's plain rows")
_ENTRY_LIMITED = tuple((_ENTRY_ORDER.index(column), limit) for column, limit in TEXT_LIMITS.items())
_ENTRY_GUARDRAILS = _ENTRY_ORDER.index("guardrails")
_REQUEST = len(_ENTRY_ORDER)
_PROMPT, _RESPONSE, _PREV_HASH, _HASH, _GUARDRAILS = (
    INSERT_COLUMNS.index(column)
    for column in ("prompt", "response", "prev_hash", "hash", "guardrails")
)
Batch = list[Row | RowValues]
"""Rows on their way to the store: the writer's own as tuples, spooled ones as mappings."""


@dataclass(frozen=True, slots=True)
class _Plain:
    """Entries stored as they are (``insert_plain``), numbered from ``first``."""

    first: int
    entries: Sequence[Entry]


def _plain(entries: Sequence[Entry]) -> bool:
    """Whether ``entries`` can be stored as they are: no bodies, and no text to clean (too
    long for its column, or holding what no store takes: the same rows on every store;
    request_log_rows.py). Looks at each distinct text once (most columns hold a few values
    over a whole batch), and with no Python call a value: the longest of each column
    against its limit, then all of them joined for what no store takes (a call for each
    distinct value cost about 2,500 instructions a row, the request ids being all distinct;
    docs/performance.md, "Session 15"). A count beyond 64 bits is not looked for (it would
    cost every row): SQLite refuses to bind it, and the batch is then made into rows, which
    hold it."""
    columns = list(zip(*entries, strict=True))
    if columns[_REQUEST].count(None) != len(entries):
        return False
    texts: list[str] = []
    for index, limit in _ENTRY_LIMITED:
        values = set(columns[index])
        values.discard(None)
        if values and max(map(len, values)) > limit:
            return False
        texts += values
    if unstorable("".join(texts)):
        return False
    return not any("\\u0000" in value for value in set(columns[_ENTRY_GUARDRAILS]))


THREADED_BATCH = 1000
"""Rows a batch by default on a SQLite file, written by a thread of its own at a lower
priority than the event loop: larger batches cost less CPU a row (about 2% of a request from
400 to 1,000, docs/performance.md "Session 17") and do not hold up requests meanwhile."""
LOOP_BATCH = 100
"""Rows a batch by default on PostgreSQL, whose driver encodes a batch on the event loop:
small batches keep each hold short."""


class RequestLogWriter:
    """Takes entries from the pipeline and writes them to the store in batches."""

    def __init__(
        self,
        store: Store,
        config: RequestLogConfig,
        spool_dir: Path,
        *,
        chain_id: str | None = None,
    ) -> None:
        """``spool_dir``: where batches wait while the store is unreachable (one directory
        per store). ``chain_id``: this writer's chain (default: random, one per process)."""
        self.store = store
        self.config = config
        self.chain_id = chain_id or secrets.token_hex(8)
        self.spool = Spool(spool_dir)
        self.bodies = BodyPolicy(max_chars=config.bodies.max_chars, redact=config.bodies.redact)
        self.written = 0
        self.dropped = 0
        self.spooled = 0
        self.rejected = 0
        self._queue: deque[Entry] = deque()
        self._capacity = config.queue_size
        self._batch_size = config.batch_size or (
            THREADED_BATCH if store.request_log.takes_plain_rows else LOOP_BATCH
        )
        self._wake = asyncio.Event()
        self._closing = False
        self._seq = 0
        self._prev_hash = GENESIS
        self._in_hand: float | None = None
        self._replaying = False
        self._retry_at = 0.0
        self._backoff = 0.0
        self._task: asyncio.Task[None] | None = None
        self._purger: asyncio.Task[None] | None = None

    # --- the request path ---------------------------------------------------------------

    def put_nowait(self, entry: Entry) -> None:
        """Queue one entry; when the queue is full it is dropped (and counted)."""
        queue = self._queue
        if len(queue) >= self._capacity:
            self.dropped += 1
            return
        queue.append(entry)
        if len(queue) >= self._batch_size:
            self._wake.set()

    # --- what the metrics read ----------------------------------------------------------

    def queue_depth(self) -> int:
        """Entries waiting in memory."""
        return len(self._queue)

    def lag(self) -> float:
        """Seconds since the oldest record not yet in the store was made (0 when none)."""
        oldest = [self._queue[0][0] / 1_000_000] if self._queue else []
        if self._in_hand is not None:
            oldest.append(self._in_hand)
        spooled = self.spool.oldest()
        if spooled is not None:
            oldest.append(spooled)
        return max(0.0, time.time() - min(oldest)) if oldest else 0.0

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Index what a previous run left in the spool and start writing (and purging)."""
        try:
            await self.spool.open()
        except OSError as exc:
            log.error("request log spool %s is unusable: %s", self.spool.directory, exc)
        if self.spool.pending_files:
            log.info(
                "request log: %d batches (%d records) left in %s are replayed first",
                self.spool.pending_files, self.spool.pending_rows, self.spool.directory,
            )  # fmt: skip
        self._task = asyncio.create_task(self._run(), name="tollway-request-log")
        if self.config.retention_days is not None:
            self._purger = asyncio.create_task(self._purge_loop(), name="tollway-log-retention")

    async def close(self) -> None:
        """Write everything queued (to the store, or to the spool when it is down)."""
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
        self._closing = True
        self._wake.set()
        task = self._task
        if task is None:
            return
        if self._backoff and self._replaying:
            # The store is down and the writer is trying the spool again: that try would hold
            # the shutdown for write_timeout and a ping, and the spool keeps its batch anyway.
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        while self._queue:  # left by the cancelled writer: to the spool, for the next start
            await self._to_spool(self._rows(await self._prepare(self._take())))
        self._in_hand = None

    async def _run(self) -> None:
        while True:
            await self._wait()
            try:
                await self._replay(force=self._closing)
                while self._queue:
                    await self._deliver(await self._prepare(self._take()))
                    # Under steady load rows arrive while a batch is written: go on only with
                    # a full batch, else wait, or the writer inserts a few rows at a time
                    # without pause (at 1,000 requests/s that cost 100 µs a request).
                    if not self._closing and len(self._queue) < self._batch_size:
                        break
            except Exception:  # a bug here must not stop the log for good
                log.exception("request log: writing a batch failed unexpectedly")
                await asyncio.sleep(self.config.flush_interval)
            if self._closing and not self._queue:
                return

    async def _wait(self) -> None:
        if self._closing or len(self._queue) >= self._batch_size:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.flush_interval):
                await self._wake.wait()

    def _take(self) -> list[Entry]:
        queue = self._queue
        return [queue.popleft() for _ in range(min(self._batch_size, len(queue)))]

    # --- rows ---------------------------------------------------------------------------

    async def _prepare(self, entries: Sequence[Entry]) -> Batch | _Plain:
        """Number the entries; on a store that takes them as they are (SQLite, no hash
        chain), hand them over so, else make rows of them."""
        self._in_hand = entries[0][0] / 1_000_000
        first = self._seq + 1
        self._seq += len(entries)
        if not self.config.chain and self.store.request_log.takes_plain_rows and _plain(entries):
            return _Plain(first, entries)
        rows: Batch = []
        for index, item in enumerate(entries):
            if index and index % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            rows.append(self._made_row(item, first + index))
        return rows

    def _rows(self, batch: Batch | _Plain) -> Batch:
        if isinstance(batch, _Plain):
            entries = batch.entries
            return [self._made_row(item, batch.first + i) for i, item in enumerate(entries)]
        return batch

    def _made_row(self, item: Entry, seq: int) -> RowValues | Row:
        """``_row``, or, should making it fail (a value nothing here foresaw), a bare
        placeholder in its place, so its number is still accounted for."""
        try:
            return self._row(item, seq)
        except Exception as exc:
            reason = f"the row could not be made: {_reason(exc)}"
            log.error("request log: record %d of chain %s: %s", seq, self.chain_id, reason)
            made = {"at": EPOCH + dt.timedelta(microseconds=item[0]), "chain_id": self.chain_id,
                    "seq": seq, "request_id": item[1]}  # fmt: skip
            _, bare = placeholders(made, reason)
            if self.config.chain:
                bare["prev_hash"] = self._prev_hash
                bare["hash"] = self._prev_hash = link(self._prev_hash, bare)
            return bare

    def _row(self, item: Entry, seq: int) -> RowValues:
        (at, request_id, kind, key_id, user_id, team_id, service, endpoint, model, served,
         deployment_id, provider, attempts, fallbacks, status, error_code, stream,
         input_tokens, output_tokens, cached, cache_writes, long_writes, estimated,
         cost_micros, latency, ttft, cache, guardrails, source_ip, tool_calls, tool_micros,
         request, captured) = item  # fmt: skip
        # In INSERT_COLUMNS order (checked at import): a tuple goes to the driver as it is.
        values: list[Any] = [
            EPOCH + dt.timedelta(microseconds=at), self.chain_id, seq, request_id,
            kind, key_id, user_id, team_id, service, endpoint, model, served, deployment_id,
            provider, attempts, fallbacks, status, error_code, stream, input_tokens,
            output_tokens, cached, cache_writes, long_writes, estimated, cost_micros,
            latency, ttft, cache, orjson.loads(guardrails),
            None, None, None, None, None,  # prompt, response, prev_hash, hash, refused
            source_ip, tool_calls, tool_micros,
        ]  # fmt: skip
        # What a store would refuse is made safe here, before the row is hashed.
        for index, limit in _LIMITED:
            value = values[index]
            if value is not None and needs_cleaning(value, limit):
                values[index] = clean_text(value, limit)
        for index in _COUNTED:
            if not INT64_MIN <= values[index] <= INT64_MAX:
                values[index] = clamp(values[index])
        if "\\u0000" in guardrails:  # PostgreSQL's JSONB takes no NUL
            values[_GUARDRAILS] = [clean_text(name) for name in values[_GUARDRAILS]]
        if request is not None:
            values[_PROMPT], values[_RESPONSE] = self._bodies(request, captured or [])
        if self.config.chain:
            values[_PREV_HASH] = self._prev_hash
            mapping = dict(zip(INSERT_COLUMNS, values, strict=True))
            values[_HASH] = self._prev_hash = link(self._prev_hash, mapping)
        return tuple(values)

    def _bodies(self, request: Any, captured: list[object]) -> tuple[Any, Any]:
        try:
            return self.bodies.prompt(request), self.bodies.response(captured)
        except Exception as exc:  # a body we cannot read must not cost the record
            log.warning("request log: a body could not be kept (%s)", type(exc).__name__)
            return None, None

    # --- delivery -----------------------------------------------------------------------

    async def _deliver(self, batch: Batch | _Plain) -> None:
        try:
            try:
                await self._replay()
            except asyncio.CancelledError:  # closing cut the replay: this batch goes after it
                await self._to_spool(self._rows(batch))
                raise
            if self.spool.pending_files:
                await self._to_spool(self._rows(batch))
            else:
                await self._store(batch, spooled=False)
        finally:
            self._in_hand = None

    async def _replay(self, force: bool = False) -> None:
        """Insert spooled batches, oldest first, while the store takes them (when due, or
        ``force``d: closing, the spool is tried once more)."""
        if not self.spool.pending_files or (not force and time.monotonic() < self._retry_at):
            return
        if self._closing and self._backoff:
            # Closing with the store known to be down: a store that stopped answering would
            # hold the shutdown for write_timeout and a ping, and the queue behind it; the
            # spool keeps everything for the next start.
            return
        while (path := self.spool.first()) is not None:
            try:
                rows: Batch = list(await self.spool.read(path))
            except FileNotFoundError:  # another process sharing the directory replayed it
                await self.spool.remove(path)
                continue
            except (OSError, ValueError) as exc:
                log.error("request log: spool file %s is unreadable (%s)", path, exc)
                await self._set_aside(path)
                continue
            self._replaying = True
            try:
                stored = await self._store(rows, spooled=True)
            finally:
                self._replaying = False
            if not stored:
                return
            await self.spool.remove(path)
            log.info("request log: replayed %d spooled records", len(rows))

    async def _store(self, batch: Batch | _Plain, *, spooled: bool) -> bool:
        """Insert ``batch``; False when the store is unreachable (then it is in the spool).
        A plain batch that fails is made into rows for the spool or the row-by-row insert
        (a row stored is not stored again: same chain and seq)."""
        try:
            async with asyncio.timeout(self.config.write_timeout):
                repository = self.store.request_log
                if isinstance(batch, _Plain):
                    await repository.insert_plain(self.chain_id, batch.first, batch.entries)
                else:
                    await repository.insert(batch)
        except Exception as exc:
            rows = self._rows(batch)
            if not await self._reachable():
                self._unreachable(exc)
                if not spooled:
                    await self._to_spool(rows)
                return False
            if isinstance(batch, _Plain):
                # Made into rows, the values SQLite refused to bind (a count past 64 bits)
                # are held to their columns: the batch may go in whole that way.
                return await self._store(rows, spooled=spooled)
            return await self._store_each(rows, spooled=spooled)
        self.written += len(batch.entries) if isinstance(batch, _Plain) else len(batch)
        self._reachable_again()
        return True

    async def _store_each(self, rows: Batch, *, spooled: bool) -> bool:
        """The store answers but refused the batch: insert row by row. A row it refuses is
        set aside (``rejected/``), and a placeholder stored in its place, with the same
        chain, number and hashes (request_log_rows.py), so that the chain shows a refusal
        and not a gap."""
        refused = []
        for row in rows:
            try:
                await self._insert_one(row)
            except Exception as exc:
                if not await self._reachable():
                    return await self._unreachable_midway(exc, rows, spooled)
                mapping = row_mapping(row)
                reason = _reason(exc)
                log.error(
                    "request log: the store refused record %s of chain %s (%s); a placeholder "
                    "takes its place", mapping["seq"], mapping["chain_id"], reason,
                )  # fmt: skip
                refused.append(mapping)
                for placeholder in placeholders(mapping, reason):
                    try:
                        await self._insert_one(placeholder)
                    except Exception as again:
                        if not await self._reachable():
                            return await self._unreachable_midway(again, rows, spooled)
                        log.error("request log: the placeholder was refused too (%s)",
                                  _reason(again))  # fmt: skip
                        continue
                    break
                continue
            self.written += 1
        if refused:
            self.rejected += len(refused)
            with contextlib.suppress(OSError):
                await self.spool.reject(self.chain_id, refused)
        return True

    async def _insert_one(self, row: Row | RowValues) -> None:
        async with asyncio.timeout(self.config.write_timeout):
            await self.store.request_log.insert([row])

    async def _unreachable_midway(self, exc: BaseException, rows: Batch, spooled: bool) -> bool:
        """The store went away during a row-by-row insert: the batch goes to the spool (the
        rows stored already are skipped when it is replayed)."""
        self._unreachable(exc)
        if not spooled:
            await self._to_spool(rows)
        return False

    async def _reachable(self) -> bool:
        try:
            async with asyncio.timeout(min(self.config.write_timeout, 5.0)):
                await self.store.request_log.ping()
        except Exception:
            return False
        return True

    def _unreachable(self, exc: BaseException) -> None:
        if self._backoff == 0.0:
            log.warning(
                "request log: the store is unreachable (%s); records are spooled to %s",
                _reason(exc), self.spool.directory,
            )  # fmt: skip
        self._backoff = min(max(self._backoff * 2, self.config.flush_interval),
                            self.config.retry_interval)  # fmt: skip
        self._retry_at = time.monotonic() + self._backoff

    def _reachable_again(self) -> None:
        if self._backoff:
            log.info("request log: the store is reachable again")
        self._backoff = 0.0
        self._retry_at = 0.0

    async def _to_spool(self, rows: Batch) -> None:
        try:
            await self.spool.write(self.chain_id, [row_mapping(row) for row in rows])
        except OSError as exc:
            self.dropped += len(rows)
            log.error("request log: %d records lost, the spool failed: %s", len(rows), exc)
            return
        self.spooled += len(rows)

    async def _set_aside(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            self.spool.rejected_directory.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(path.replace, self.spool.rejected_directory / path.name)
        await self.spool.remove(path)

    # --- retention ----------------------------------------------------------------------

    async def _purge_loop(self) -> None:
        await asyncio.sleep(min(self.config.purge_interval, 60.0))
        while True:
            await self.purge()
            await asyncio.sleep(self.config.purge_interval)

    async def purge(self) -> int:
        """Delete rows older than ``retention_days``; returns how many (0 on failure)."""
        days = self.config.retention_days
        if days is None:
            return 0
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
        try:
            removed = await self.store.request_log.purge(cutoff)
        except Exception as exc:
            log.warning("request log: purging old records failed (%s)", _reason(exc))
            return 0
        if removed:
            log.info("request log: purged %d records older than %d days", removed, days)
        return removed


def _reason(exc: BaseException) -> str:
    """A short reason for a log line: the driver's message, never the statement or values."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).splitlines()[0][:200] if str(original) else ""
    return f"{type(original).__name__}: {text}" if text else type(original).__name__
