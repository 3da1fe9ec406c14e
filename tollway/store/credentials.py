"""Provider credentials, encrypted at rest; only ``reveal`` ever returns a secret."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tollway.store.columns import utcnow
from tollway.store.crypto import SecretBox
from tollway.store.errors import RecordNotFound
from tollway.store.models import CredentialRow
from tollway.store.records import CredentialRecord
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

    async def reencrypt_all(self) -> int:
        """Encrypt every secret again with the first vault key; returns how many."""
        box = self._secret_box()
        async with transaction(self._sessions, "credentials changed") as session:
            rows = list(await session.scalars(select(CredentialRow).with_for_update()))
            for row in rows:
                row.ciphertext = box.reencrypt(row.ciphertext, what=f"credential {row.name!r}")
        return len(rows)

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
