"""The request log's ``source_ip``: the address a request came from.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 09:00:00

The client's address as the gateway saw it (the peer of its connection, as the audit trail's
``source_ip``), so that the request log answers "from where" for every request, those refused
before the pipeline (a revoked key, an unknown one) included. NULL in the rows stored before;
a hash chain covers it only when it is not NULL, so those rows verify as they did.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    """Add the column (NULL in the rows there)."""
    op.add_column("request_log", sa.Column("source_ip", sa.String(64), nullable=True))


def downgrade() -> None:
    """Drop it again."""
    with op.batch_alter_table("request_log") as batch:
        batch.drop_column("source_ip")
