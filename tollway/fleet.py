"""This gateway process among its replicas: keeping its memory in step with the shared store.

Keys, users, teams, budgets, rate limits and vault credentials live in the store and are
served from memory. A change made through this replica's admin API applies here at once and
is announced on the store's change feed (PostgreSQL ``NOTIFY``, ``store/changes.py``); a
change announced by another replica is reloaded from the store as it arrives; and a full
reload every ``auth.reconcile_interval`` bounds what a lost notice (or a SQLite file shared
by processes, which has no feed) can cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import socket
from collections.abc import Callable

from tollway.auth.identity import Identity
from tollway.auth.vault import Vault
from tollway.limits.service import LimitService
from tollway.store import VAULT_KEY_ENV, RecordNotFound, Store, VaultKeyError

log = logging.getLogger("tollway")


def first_line(exc: BaseException) -> str:
    """An exception as one log line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Fleet:
    """Announces this replica's changes, applies the others', reloads the store in full."""

    def __init__(
        self,
        store: Store,
        identity: Identity,
        limits: LimitService,
        vault: Vault,
        *,
        reload_config: Callable[[], bool],
        reconcile_interval: float,
    ) -> None:
        """``reload_config``: re-read this replica's config file (``POST /admin/reload`` on
        another replica asks every replica to). ``reconcile_interval``: seconds between full
        reloads of the store."""
        # Host and process id alone do not tell replicas apart: containers on one host's
        # network share its name and each runs the gateway as PID 1. A replica skips the
        # notices its own id sent, so two with one id would never hear each other.
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        """This process among the replicas on one store (host, process id and a random
        part that tells apart processes with the same host name and process id)."""
        self._store = store
        self._identity = identity
        self._limits = limits
        self._vault = vault
        self._reload_config = reload_config
        self._interval = reconcile_interval
        self._credential_versions: dict[str, tuple[str, dt.datetime | None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        identity.on_change(self.announce)

    def start(self) -> None:
        """Begin following the other replicas' changes and reloading in full."""
        follow = self._store.changes.follow(self.replica, self._apply, self.reload_all)
        self._tasks = [
            asyncio.create_task(self._reconcile(), name="tollway-reconcile"),
            asyncio.create_task(follow, name="tollway-changes"),
        ]

    async def close(self) -> None:
        """Stop both."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- this replica's changes ---------------------------------------------------------

    async def announce(self, kind: str, target: str) -> None:
        """Tell the other replicas on the store that ``kind`` ``target`` changed (the
        change feed, PostgreSQL only). Their reconcile catches up should this fail."""
        try:
            await self._store.changes.publish(self.replica, kind, target)
        except Exception as exc:
            log.warning(
                "the other replicas could not be told of a change to %s %s (%s); they see it "
                "at their next reconcile", kind, target, first_line(exc),
            )  # fmt: skip

    async def credentials_changed(self, name: str) -> None:
        """Reload one vault credential after the admin API changed it, and tell the others."""
        await self._reload_credential(name)
        await self.announce("credential", name)

    async def limits_changed(self, what: str) -> None:
        """Rebuild the limit book after the admin API changed a budget or a rate limit
        (``what`` names it), and tell the others."""
        await self._limits.load()
        await self.announce("limits", what)

    # --- what the store holds -------------------------------------------------------------

    async def reload_all(self) -> None:
        """Reload identities, limits and credentials from the store."""
        await self._identity.load()
        await self._limits.load()
        await self.load_credentials()

    async def load_credentials(self, *, at_start: bool = False) -> None:
        """Hold the store's vault credentials: at start and every reload, so one added,
        rotated or deleted through another replica applies here too. Only those whose
        version (id, rotation time) changed since the last load are decrypted again.

        One that no key in ``TOLLWAY_VAULT_KEY`` decrypts stops the start (``at_start``:
        the operator dropped a key too early, or set the wrong one); on a later reload it
        is a warning, this replica keeps what it held, and the other credentials are loaded.
        """
        records = await self._store.credentials.find()
        versions = {record.name: (record.id, record.rotated_at) for record in records}
        for name in self._credential_versions.keys() - versions.keys():
            self._vault.set_stored(name, None)
        undecryptable = []
        for name, version in versions.items():
            if self._credential_versions.get(name) != version:
                try:
                    self._vault.set_stored(name, await self._store.credentials.reveal(name))
                except RecordNotFound:  # deleted since it was listed
                    self._vault.set_stored(name, None)
                except VaultKeyError:
                    undecryptable.append(name)
        self._credential_versions = versions
        if undecryptable:
            self._undecryptable(undecryptable, at_start=at_start)
        if at_start and versions:
            await self._report_older_keys(len(versions))

    def _undecryptable(self, names: list[str], *, at_start: bool) -> None:
        listed = ", ".join(repr(name) for name in names)
        problem = (
            f"the vault credentials {listed} cannot be decrypted with any key in {VAULT_KEY_ENV}"
        )
        if at_start:
            raise VaultKeyError(
                f"{problem}; set the key they were encrypted with (while changing the key: "
                "NEW,OLD until `tollway credentials reencrypt` has run, docs/identity.md)"
            )
        # Tried again only when one changes: this replica's keys change only by a restart.
        log.warning(
            "%s (encrypted by a replica with another key?); this replica keeps what it held",
            problem,
        )

    async def _report_older_keys(self, total: int) -> None:
        """One line at start when stored credentials are still under an older vault key."""
        older = await self._store.credentials.under_older_keys()
        if older:
            log.warning(
                "%d of the %d vault credentials are still encrypted with an older key in %s; "
                "once every replica runs with the new key first, run `tollway credentials "
                "reencrypt` before dropping the old one (docs/identity.md)",
                len(older), total, VAULT_KEY_ENV,
            )  # fmt: skip

    async def _reload_credential(self, name: str) -> None:
        try:
            self._vault.set_stored(name, await self._store.credentials.reveal(name))
        except RecordNotFound:
            self._vault.set_stored(name, None)
        self._credential_versions.pop(name, None)  # read again at the next full load

    async def _apply(self, kind: str, target: str) -> None:
        """Another replica changed ``kind`` ``target``: reload just that from the store."""
        if kind == "key":
            await self._identity.reload_key(target)
        elif kind == "user":
            await self._identity.load()
        elif kind == "team":  # memberships, and the organisations org budgets go by
            await self._identity.load()
            await self._limits.load()
        elif kind == "limits":
            await self._limits.load()
        elif kind == "credential":
            await self._reload_credential(target)
        elif kind == "config":  # POST /admin/reload on another replica: read our own file
            self._reload_config()
        else:
            await self.reload_all()

    async def _reconcile(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.reload_all()
            except Exception as exc:  # an outage must not end reconciling; the next may work
                if await self._store.reachable():
                    log.warning("reloading from the store failed", exc_info=True)
                else:  # one line per try while it is down, not a page of traceback
                    log.warning(
                        "reloading from the store failed, it is unreachable: %s", first_line(exc)
                    )
