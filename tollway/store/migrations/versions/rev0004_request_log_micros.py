"""The request log's time as integer microseconds on SQLite.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 17:30:00

``request_log.at`` (``columns.UTCMicros``) is kept by SQLite as whole microseconds since
the epoch instead of SQLAlchemy's text (``YYYY-MM-DD HH:MM:SS.ffffff``, always six digits
of fraction): the column stays declared ``DATETIME``, whose numeric affinity keeps integers.
Rows already stored are converted both ways. PostgreSQL keeps ``timestamptz``: nothing to do.
"""

from __future__ import annotations

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

_TO_MICROS = (
    "UPDATE request_log SET at = CAST(strftime('%s', substr(at, 1, 19)) AS INTEGER) * 1000000"
    " + CAST(substr(at, 21, 6) AS INTEGER) WHERE typeof(at) = 'text'"
)
_FRACTION = "((at % 1000000 + 1000000) % 1000000)"  # 0 to 999999, also before 1970
_TO_TEXT = (
    f"UPDATE request_log SET at = strftime('%Y-%m-%d %H:%M:%S', (at - {_FRACTION}) / 1000000,"
    f" 'unixepoch') || '.' || substr({_FRACTION} + 1000000, 2) WHERE typeof(at) = 'integer'"
)


def upgrade() -> None:
    """SQLite: the stored times as microseconds since the epoch."""
    if op.get_context().dialect.name == "sqlite":
        op.execute(_TO_MICROS)


def downgrade() -> None:
    """SQLite: the stored times as text again."""
    if op.get_context().dialect.name == "sqlite":
        op.execute(_TO_TEXT)
