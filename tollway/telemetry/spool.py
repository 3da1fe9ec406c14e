"""Batches of request log rows kept on local disk while the store cannot take them.

One JSON Lines file per batch, named so that names sort in the order batches were spooled
(``<nanoseconds>-<chain id>-<n>.jsonl``). A file is written under a temporary name, flushed
to disk and renamed, so a ``.jsonl`` file is always whole; a crash mid-write leaves only a
``.tmp`` file, which is removed at the next start (its batch was never acknowledged either
way: the process died before it). Files are read back oldest first, inserted, then deleted;
the store skips rows it already has, so a file replayed twice (by a crash between insert and
delete, or by two processes sharing a directory) is still stored once.

Rows that the store refuses outright (not an outage: a value no column takes) are moved to
``rejected/`` beside the spool, one file per batch, for an operator to look at.

The spool is private: its directory is made ``0700`` and its files ``0600`` (they hold who
called what, and kept bodies), and a directory another user owns or others may write to, or
whose parent another user may change, is not used at all (``UnsafeSpool``; records that
would go there are dropped and counted): what is replayed from a spool goes into the request
log as it is, so a spool others can write to would let them add records (the default
directory is under the shared temp dir).

Disk work runs in a thread (``asyncio.to_thread``), never on the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

Row = dict[str, Any]


def default_spool_dir(store_where: str) -> Path:
    """A spool directory per store (by a hash of its redacted URL) under the temp dir, so
    a spool is never replayed into another store."""
    digest = hashlib.sha256(store_where.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "tollway-request-log" / digest


def encode_row(row: Mapping[str, Any]) -> bytes:
    """One row as a JSON line (``at`` as ISO 8601). A value orjson cannot write (a lone
    surrogate, an integer past 64 bits: what a store refuses, in a row set aside) is
    written by the standard library's encoder, as ``\\ud800`` or a long number."""
    at = row["at"]
    assert isinstance(at, dt.datetime)
    document = {**row, "at": at.isoformat()}
    try:
        return orjson.dumps(document) + b"\n"
    except TypeError:
        return json.dumps(document, default=str, separators=(",", ":")).encode() + b"\n"


def decode_row(line: bytes) -> Row:
    """A row from its JSON line (either encoder's)."""
    try:
        row: Row = orjson.loads(line)
    except orjson.JSONDecodeError:
        row = json.loads(line)
    row["at"] = dt.datetime.fromisoformat(row["at"])
    return row


class UnsafeSpool(OSError):
    """The spool directory is not this user's alone; it is not used."""


def _private_directory(path: Path) -> None:
    """Make ``path`` a directory only this user may use, or raise ``UnsafeSpool``."""
    # The parent as well, where it is made here (the default's, under the temp dir): the
    # mode given, not the umask's (which may leave it writable by all).
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)
    found = path.lstat()
    if not stat.S_ISDIR(found.st_mode):
        raise UnsafeSpool(f"{path} is not a directory (a link?)")
    if found.st_uid != os.getuid():
        raise UnsafeSpool(f"{path} belongs to another user (uid {found.st_uid})")
    if found.st_mode & (stat.S_IWGRP | stat.S_IWOTH):  # what is in it may be anyone's
        raise UnsafeSpool(f"{path} may be written by other users")
    if stat.S_IMODE(found.st_mode) != 0o700:  # readable by others (an older gateway's)
        os.chmod(path, 0o700)
    parent = path.parent.stat()
    shared = parent.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not parent.st_mode & stat.S_ISVTX
    if parent.st_uid not in (os.getuid(), 0) or shared:
        raise UnsafeSpool(f"{path.parent} may be changed by another user")


class Spool:
    """The spool directory: batches written, listed oldest first, read back and removed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.rejected_directory = directory / "rejected"
        self.unsafe: UnsafeSpool | None = None
        """Why the directory is not used, once ``open`` found it shared."""
        self._counter = 0
        self._files: list[tuple[Path, int, float]] = []
        """Pending files oldest first, with their row count and their first row's time."""

    @property
    def pending_files(self) -> int:
        """Batches waiting on disk."""
        return len(self._files)

    @property
    def pending_rows(self) -> int:
        """Rows waiting on disk."""
        return sum(count for _, count, _ in self._files)

    def oldest(self) -> float | None:
        """The time (epoch seconds) of the oldest row waiting on disk, if any."""
        return min((at for _, _, at in self._files), default=None)

    async def open(self) -> None:
        """Create the directory, drop half-written files and index what a previous run left;
        raises ``UnsafeSpool`` (and refuses every write after) when others may use it."""
        try:
            self._files = await asyncio.to_thread(self._scan)
        except UnsafeSpool as exc:
            self.unsafe = exc
            raise

    def _scan(self) -> list[tuple[Path, int, float]]:
        _private_directory(self.directory)
        for partial in self.directory.glob("*.tmp"):
            partial.unlink(missing_ok=True)
        found = []
        for path in sorted(self.directory.glob("*.jsonl")):
            lines = path.read_bytes().splitlines()
            if not lines:
                path.unlink(missing_ok=True)
                continue
            found.append((path, len(lines), decode_row(lines[0])["at"].timestamp()))
        return found

    async def write(self, chain_id: str, rows: Sequence[Row]) -> Path:
        """Keep ``rows`` on disk as one batch; returns its file."""
        if self.unsafe is not None:
            raise self.unsafe
        self._counter += 1
        name = f"{time.time_ns():020d}-{chain_id}-{self._counter:06d}.jsonl"
        path = self.directory / name
        await asyncio.to_thread(_write_whole, path, rows)
        self._files.append((path, len(rows), rows[0]["at"].timestamp()))
        return path

    def first(self) -> Path | None:
        """The oldest pending batch file."""
        return self._files[0][0] if self._files else None

    async def read(self, path: Path) -> list[Row]:
        """The rows of a batch file."""
        data = await asyncio.to_thread(path.read_bytes)
        return [decode_row(line) for line in data.splitlines() if line]

    async def remove(self, path: Path) -> None:
        """Forget a batch once it is stored."""
        await asyncio.to_thread(path.unlink, True)
        self._files = [entry for entry in self._files if entry[0] != path]

    async def reject(self, chain_id: str, rows: Sequence[Row]) -> Path:
        """Set aside rows the store refused; returns their file."""
        if self.unsafe is not None:
            raise self.unsafe
        self._counter += 1
        name = f"{time.time_ns():020d}-{chain_id}-{self._counter:06d}.jsonl"
        path = self.rejected_directory / name
        await asyncio.to_thread(_write_whole, path, rows)
        return path


def _write_whole(path: Path, rows: Sequence[Row]) -> None:
    if not path.parent.is_dir():
        _private_directory(path.parent)
    partial = path.with_suffix(".tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(b"".join(encode_row(row) for row in rows))
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
