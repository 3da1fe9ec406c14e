"""When each virtual key was last used, gathered in memory and written to the store in batches.

A request must not wait on the store to say a key was used: ``note`` only puts the key's id
and the time in a dictionary. Every ``interval`` a background task writes what gathered in
one statement (``KeyStore.record_use``), and ``close`` writes the rest, so ``last_used_at``
lags by at most an interval and a gateway that stops loses none of it. A write that fails
(the store is down) is kept for the next one, so an outage delays the stamps, never loses
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from tollway.auth.principal import Principal
from tollway.store import Store, StoreError

log = logging.getLogger("tollway.auth")


class KeyUse:
    """Gathers keys' last uses and writes them to ``store`` every ``interval`` seconds."""

    def __init__(
        self, store: Store, interval: float, clock: Callable[[], float] = time.time
    ) -> None:
        """``clock`` gives wall-clock seconds since the epoch (tests may pass their own)."""
        self._store = store
        self._interval = interval
        self._clock = clock
        self._pending: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def note(self, principal: Principal) -> None:
        """Remember that ``principal`` was just used, when it is a virtual key."""
        if principal.kind == "key":
            self._pending[principal.id] = self._clock()

    def start(self) -> None:
        """Begin writing in the background."""
        self._task = asyncio.create_task(self._write_loop(), name="tollway-key-use")

    async def flush(self) -> None:
        """Write the uses gathered since the last write; kept for the next one on failure."""
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        stamps = {key_id: dt.datetime.fromtimestamp(at, dt.UTC) for key_id, at in batch.items()}
        written = False
        try:
            await self._store.keys.record_use(stamps)
            written = True
        except (StoreError, SQLAlchemyError, OSError) as exc:
            log.warning("keys' last use not written (%d keys; retried later): %s",
                        len(batch), type(exc).__name__)  # fmt: skip
        finally:
            # Kept for the next write, also when cancelled mid-write (``close`` writes it);
            # a use noted meanwhile is newer than the one that was not written.
            if not written:
                self._pending = batch | self._pending

    async def _write_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def close(self) -> None:
        """Stop the background task and write what is left (before the store closes)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
