"""The store's exception tree; the admin API and the CLI turn these into answers.

    StoreError                  anything the store cannot do
    ├── RecordNotFound          no row with that id or name
    ├── RecordConflict          a unique value (name, email, key hash) is already taken
    ├── InvalidRecord           a value outside its allowed set (role, status, naive timestamp)
    ├── StoreBusy               other writes held the database past the wait allowed (SQLite's
    │                           busy timeout; a PostgreSQL deadlock or serialization failure):
    │                           nothing was written, and trying again may succeed
    ├── SchemaMismatch          the database is not migrated to the revision this code needs
    └── VaultKeyError           TOLLWAY_VAULT_KEY is missing, malformed or not the one used

These are not gateway (HTTP) errors: the store does not know who is asking or how to answer.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error the store raises."""


class RecordNotFound(StoreError):
    """No row matches the id or name asked for."""


class RecordConflict(StoreError):
    """A write would break a unique constraint (or another integrity rule)."""


class InvalidRecord(StoreError):
    """A value is outside what the column allows."""


class StoreBusy(StoreError):
    """Other writers kept this write from its turn; it was rolled back and may be retried."""


class SchemaMismatch(StoreError):
    """The database schema is not at the migration head this code was written for."""


class VaultKeyError(StoreError):
    """The vault key cannot encrypt or decrypt: missing, malformed, or a different key."""
