"""The change feed: replicas on one PostgreSQL store tell each other what an admin changed.

A replica that changes a key, user, team, budget or credential writes the store, applies the
change to its own memory, then announces ``(kind, id)`` with ``NOTIFY`` on one channel; every
other replica ``LISTEN``s there and reloads just that from the store, so a revocation made
through one replica is refused by the others within moments instead of at their next full
reload (``auth.reconcile_interval``, which stays as the bound when a notice is missed).

The listener holds one pooled connection of its own for as long as it runs, checks it every
few seconds, and when it is lost connects again (backing off while the store is down) and
then asks for a full reload, since notices sent meanwhile were lost. A notice names its
sender, so a replica skips its own. On SQLite (one machine; processes sharing a file) there
is no feed: changes reach other processes at their next reconcile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("tollway.store")

ApplyChange = Callable[[str, str], Awaitable[None]]
"""Reloads one changed thing: called with (kind, id), e.g. ``("key", "6f0c...")``."""

Resync = Callable[[], Awaitable[None]]
"""Reloads everything (after the feed was down and notices may have been missed)."""

CHECK_EVERY = 5.0
"""Seconds of quiet after which the listening connection is checked with a query."""

RETRY_MAX = 5.0
"""The longest wait between attempts to listen again while the store is down."""


class ChangeFeed:
    """Announces changes to the other replicas on the store and follows theirs."""

    def __init__(self, engine: AsyncEngine, schema: str | None = None) -> None:
        """``engine``: the store's; ``schema``: its PostgreSQL schema, which names the
        channel (stores in different schemas of one database do not hear each other)."""
        self._engine = engine
        self.enabled = engine.url.get_backend_name() == "postgresql"
        self.channel = "tollway_changes" if schema is None else f"tollway_changes_{schema}"
        self.listening = False
        """Whether notices are being received now."""
        self._lost = False
        self._listened = False  # in this try to listen

    async def publish(self, sender: str, kind: str, target: str) -> None:
        """Tell the other replicas that ``kind`` ``target`` changed (delivered on commit)."""
        if not self.enabled:
            return
        payload = orjson.dumps({"from": sender, "kind": kind, "id": target}).decode()
        async with self._engine.begin() as connection:
            await connection.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": self.channel, "payload": payload},
            )

    async def follow(self, sender: str, apply: ApplyChange, resync: Resync) -> None:
        """Apply other replicas' changes until cancelled; ``sender`` is this replica, whose
        own notices are skipped. Runs for ever (a task of the gateway)."""
        if not self.enabled:
            return
        wait = 0.0
        while True:
            self._listened = False
            try:
                await self._listen(sender, apply, resync)  # returns only by raising
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._lost:
                    self._lost = True
                    log.warning(
                        "change feed: cannot listen to the store (%s); other replicas' "
                        "changes arrive at the next reconcile until it can",
                        type(exc).__name__,
                    )
                # Backing off only while it cannot listen: a connection lost after it
                # listened is tried again soon, whatever an earlier outage had waited.
                wait = 0.25 if self._listened else min(max(wait * 2, 0.25), RETRY_MAX)
            self.listening = False
            await asyncio.sleep(wait)

    async def _listen(self, sender: str, apply: ApplyChange, resync: Resync) -> None:
        notices: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def heard(_connection: object, _pid: int, _channel: str, payload: str) -> None:
            with contextlib.suppress(ValueError):
                notices.put_nowait(orjson.loads(payload))

        async with self._engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection  # the asyncpg connection, outside any transaction
            try:
                driver.add_termination_listener(lambda _connection: notices.put_nowait(None))
                await driver.add_listener(self.channel, heard)
                self.listening = self._listened = True
                if self._lost:
                    self._lost = False
                    log.info("change feed: listening to the store again")
                await resync()  # whatever changed before this moment is read in full
                await self._serve(driver, notices, sender, apply)
            finally:
                self.listening = False
                # Never back into the pool: it still listens, or it is broken.
                await connection.invalidate()

    async def _serve(
        self,
        driver: Any,
        notices: asyncio.Queue[dict[str, Any] | None],
        sender: str,
        apply: ApplyChange,
    ) -> None:
        while True:
            try:
                notice = await asyncio.wait_for(notices.get(), CHECK_EVERY)
            except TimeoutError:
                async with asyncio.timeout(CHECK_EVERY):
                    await driver.fetchval("SELECT 1")  # raises when the connection is gone
                continue
            if notice is None:
                raise ConnectionError("the listening connection was closed")
            if notice.get("from") == sender:
                continue
            kind, target = str(notice.get("kind")), str(notice.get("id"))
            try:
                await apply(kind, target)
            except Exception as exc:  # the reconcile reloads it all later
                log.warning(
                    "change feed: reloading %s %s failed (%s)", kind, target, type(exc).__name__
                )
