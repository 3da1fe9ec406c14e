"""Who blocked a key: ``virtual_keys.blocked_by``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 09:00:00

A block is lifted only by as much authority as made it (an admin's block by an admin), so
the blocker's authority (``owner``, ``team_admin`` or ``admin``) is kept with the key. Keys
blocked before this revision have none recorded and count as blocked by an admin.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    """Add the nullable column (nothing to rewrite: null on a blocked key means admin)."""
    op.add_column("virtual_keys", sa.Column("blocked_by", sa.String(16), nullable=True))


def downgrade() -> None:
    """Drop it (SQLite rebuilds the table)."""
    with op.batch_alter_table("virtual_keys") as batch:
        batch.drop_column("blocked_by")
