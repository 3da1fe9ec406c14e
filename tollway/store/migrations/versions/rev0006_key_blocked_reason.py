"""Why a key was blocked: ``virtual_keys.blocked_reason``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 12:00:00

A block the gateway makes for a reason of its own (its owner was removed from the key's
team) says so, in the admin API and in the 401 the key's client gets. Blocks made through
``/block`` and blocks from before this revision have none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    """Add the nullable column (no block before it had a reason recorded)."""
    op.add_column("virtual_keys", sa.Column("blocked_reason", sa.String(200), nullable=True))


def downgrade() -> None:
    """Drop it (SQLite rebuilds the table)."""
    with op.batch_alter_table("virtual_keys") as batch:
        batch.drop_column("blocked_reason")
