"""The request log's cache write tokens, and placeholders for rows the store refused.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 09:00:00

``cache_write_tokens`` (Anthropic's ``cache_creation_input_tokens``: prompt tokens written to
the cache, billed above plain input) and ``cache_write_1h_tokens`` (those of them written for
an hour, billed higher still): whole numbers, 0 for rows stored before. ``refused``: on a
placeholder row, why the store refused the row the writer made for that request
(telemetry/request_log.py); NULL on every other row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

_COUNTS = ("cache_write_tokens", "cache_write_1h_tokens")


def upgrade() -> None:
    """Add the two counts (0 in the rows there) and the refusal reason."""
    for name in _COUNTS:
        op.add_column(
            "request_log",
            sa.Column(name, sa.BigInteger(), server_default="0", nullable=False),
        )
    op.add_column("request_log", sa.Column("refused", sa.String(200), nullable=True))


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("request_log") as batch:
        batch.drop_column("refused")
        for name in reversed(_COUNTS):
            batch.drop_column(name)
