"""Provider credentials, encrypted at rest; only ``reveal`` ever returns a secret.

Re-encrypting them after a vault key change (``reencrypt``) goes in short write
transactions of a few dozen credentials, each row locked (``FOR UPDATE``; on SQLite the
file's write lock) while it is read, encrypted again and written: a concurrent put or delete
of that credential, or another replica re-encrypting at the same time, waits for it or goes
first, and is never overwritten with an older secret. ``rotated_at`` is left alone (the
secret did not change), so replicas holding the decrypted secret have nothing to reload.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollway.store.columns import utcnow
from tollway.store.crypto import SecretBox
from tollway.store.errors import (
    RecordNotFound,
    ReencryptionInterrupted,
    StoreBusy,
    VaultKeyError,
)
from tollway.store.models import CredentialRow
from tollway.store.records import CredentialRecord, Reencryption
from tollway.store.transaction import Sessions, dialect_insert, transaction


def credential_record(row: CredentialRow) -> CredentialRecord:
    """The record for a ``provider_credentials`` row: no secret, not even encrypted."""
    return CredentialRecord(
        id=row.id,
        name=row.name,
        provider=row.provider,
        created_at=row.created_at,
        rotated_at=row.rotated_at,
    )


REENCRYPT_BATCH = 64
"""Credentials re-encrypted per write transaction: a thousand in 16 commits, not 1,000."""


class CredentialRepository:
    """Keeps provider secrets encrypted with the vault key."""

    def __init__(self, sessions: Sessions, secret_box: Callable[[], SecretBox]) -> None:
        """``secret_box`` is called when a secret is first encrypted or decrypted."""
        self._sessions = sessions
        self._secret_box = secret_box

    async def add(self, name: str, provider: str, secret: str) -> CredentialRecord:
        """Store a new credential; ``RecordConflict`` when one is called ``name`` already."""
        row = CredentialRow(
            name=name, provider=provider, ciphertext=self._secret_box().encrypt(secret)
        )
        conflict = f"a credential named {name!r} exists; put it to rotate it"
        async with transaction(self._sessions, conflict) as session:
            session.add(row)
            await session.flush()
            return credential_record(row)

    async def put(self, name: str, provider: str, secret: str) -> CredentialRecord:
        """Store a credential under ``name``, replacing (rotating) any with that name."""
        ciphertext = self._secret_box().encrypt(secret)
        async with transaction(self._sessions, f"credential {name!r} changed") as session:
            # One statement: two puts of a new name at once are a create and a rotation.
            insert = dialect_insert(session)(CredentialRow).values(
                name=name, provider=provider, ciphertext=ciphertext
            )
            await session.execute(
                insert.on_conflict_do_update(
                    index_elements=[CredentialRow.name],
                    set_={
                        "provider": insert.excluded.provider,
                        "ciphertext": insert.excluded.ciphertext,
                        "rotated_at": utcnow(),
                    },
                )
            )
            return credential_record(await _credential_row(session, name))

    async def get(self, name: str) -> CredentialRecord:
        """The credential called ``name``, without its secret; raises ``RecordNotFound``."""
        async with self._sessions() as session:
            return credential_record(await _credential_row(session, name))

    async def find(self, *, provider: str | None = None) -> list[CredentialRecord]:
        """Every credential (for ``provider`` when given), by name, without secrets."""
        query = select(CredentialRow).order_by(CredentialRow.name)
        if provider is not None:
            query = query.where(CredentialRow.provider == provider)
        async with self._sessions() as session:
            return [credential_record(row) for row in await session.scalars(query)]

    async def reveal(self, name: str) -> str:
        """The plaintext secret of credential ``name``: the one way a secret leaves here."""
        async with self._sessions() as session:
            row = await _credential_row(session, name)
        return self._secret_box().decrypt(row.ciphertext, what=f"credential {name!r}")

    async def reencrypt(self) -> Reencryption:
        """Encrypt every secret that is under an older vault key again with the first; one
        that no key decrypts is named in the result and left as it is, and the others are
        still done."""
        box = self._secret_box()
        query = select(CredentialRow.name, CredentialRow.ciphertext).order_by(CredentialRow.name)
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        # What is under the first key already needs no write transaction: writes encrypt with
        # the first key (but on a replica still running an older key first, which step 2 of
        # the procedure rules out; a later run would catch it). The rest is read again under
        # a lock before it is changed.
        stale = [name for name, ciphertext in rows if not box.is_current(ciphertext)]
        total = Reencryption(reencrypted=0, current=len(rows) - len(stale))
        for start in range(0, len(stale), REENCRYPT_BATCH):
            try:
                done = await self._reencrypt_batch(box, stale[start : start + REENCRYPT_BATCH])
            except StoreBusy as exc:
                if start == 0:
                    raise  # nothing was written: the usual busy answer is true
                raise ReencryptionInterrupted(total) from exc
            total = Reencryption(
                total.reencrypted + done.reencrypted,
                total.current + done.current,
                total.undecryptable + done.undecryptable,
            )
        return total

    async def _reencrypt_batch(self, box: SecretBox, names: list[str]) -> Reencryption:
        """Re-encrypt the credentials ``names`` (those still there) in one transaction, their
        rows locked in name order (so replicas doing the same at once cannot deadlock)."""
        query = (
            select(CredentialRow.id, CredentialRow.name, CredentialRow.ciphertext)
            .where(CredentialRow.name.in_(names))
            .order_by(CredentialRow.name)
            .with_for_update()
        )
        changed: list[dict[str, object]] = []
        current, undecryptable = 0, []
        async with transaction(self._sessions, "credentials changed") as session:
            for row in (await session.execute(query)).all():
                try:
                    ciphertext = box.reencrypt(row.ciphertext, what=f"credential {row.name!r}")
                except VaultKeyError:
                    undecryptable.append(row.name)
                    continue
                if ciphertext is None:  # another replica, or a put, was first
                    current += 1
                else:
                    changed.append({"id": row.id, "ciphertext": ciphertext})
            if changed:  # by primary key, one executemany
                await session.execute(update(CredentialRow), changed)
        return Reencryption(len(changed), current, tuple(undecryptable))

    async def under_older_keys(self) -> list[str]:
        """Names of the credentials not encrypted with the first vault key (under an older
        key, or one no configured key decrypts), by name; no key is needed when the store
        keeps no credentials."""
        query = select(CredentialRow.name, CredentialRow.ciphertext).order_by(CredentialRow.name)
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        if not rows:
            return []
        box = self._secret_box()
        return [name for name, ciphertext in rows if not box.is_current(ciphertext)]

    async def delete(self, name: str) -> None:
        """Delete credential ``name``; raises ``RecordNotFound``."""
        async with transaction(self._sessions, f"credential {name!r} changed") as session:
            await session.delete(await _credential_row(session, name, lock=True))


async def _credential_row(session: AsyncSession, name: str, *, lock: bool = False) -> CredentialRow:
    query = select(CredentialRow).where(CredentialRow.name == name)
    row = await session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise RecordNotFound(f"no credential named {name!r}")
    return row
