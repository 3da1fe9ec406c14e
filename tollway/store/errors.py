"""The store's exception tree; the admin API and the CLI turn these into answers.

    StoreError                  anything the store cannot do
    ├── RecordNotFound          no row with that id or name
    ├── RecordConflict          a unique value (name, email, key hash) is already taken
    ├── InvalidRecord           a value outside its allowed set (role, status, naive timestamp)
    ├── StoreBusy               other writes held the database past the wait allowed (SQLite's
    │                           busy timeout; a PostgreSQL deadlock or serialization failure):
    │                           nothing was written, and trying again may succeed
    │   └── ReencryptionInterrupted  a re-encryption's later batch lost that way: the
    │                           earlier ones stay written (``done``)
    ├── SchemaMismatch          the database is not migrated to the revision this code needs
    └── VaultKeyError           TOLLWAY_VAULT_KEY is missing, malformed or not the one used

These are not gateway (HTTP) errors: the store does not know who is asking or how to answer.
"""

from __future__ import annotations

from tollway.store.records import Reencryption


class StoreError(Exception):
    """Base of every error the store raises."""


class RecordNotFound(StoreError):
    """No row matches the id or name asked for."""


class RecordConflict(StoreError):
    """A write would break a unique constraint (or another integrity rule)."""


class InvalidRecord(StoreError):
    """A value is outside what the column allows; ``param``: the request field it came from,
    where the store knows it."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class StoreBusy(StoreError):
    """Other writers kept this write from its turn; it was rolled back and may be retried."""


class ReencryptionInterrupted(StoreBusy):
    """A re-encryption of the vault's credentials stopped at a write batch other writers kept
    from its turn; the batches before it were committed (``done``) and stay so, and running
    it again finishes the rest."""

    def __init__(self, done: Reencryption) -> None:
        self.done = done
        super().__init__(
            f"the store was busy with other writes: {done.reencrypted} credential(s) were "
            "re-encrypted with the first vault key before it (and stay so), the rest were "
            "not changed yet; run the re-encryption again to finish"
        )


class SchemaMismatch(StoreError):
    """The database schema is not at the migration head this code was written for."""


class VaultKeyError(StoreError):
    """The vault key cannot encrypt or decrypt: missing, malformed, or a different key."""
