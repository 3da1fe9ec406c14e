"""The limit service on a real store: the store tests' databases (SQLite and PostgreSQL)."""

from tests.integration.store.conftest import database, secret_box, store

__all__ = ["database", "secret_box", "store"]
