"""Budget spend per Redis epoch: ``budget_spend.tally``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 18:00:00

The Redis limiter counts an account's spend as a grow-only counter, one part per *epoch*
(limits/redis.py, "Losing data"); a stored total cannot be merged with those parts without
counting some twice, so the store keeps the parts too (``SpendTally.document()``), merged by
the larger of each. ``spent_micros`` stays the total, for reports. Rows from before have
none: they read as spend from before any epoch.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    """Add the nullable column (no row before it had its spend per epoch)."""
    op.add_column("budget_spend", sa.Column("tally", JSON, nullable=True))


def downgrade() -> None:
    """Drop it (SQLite rebuilds the table); the totals stay."""
    with op.batch_alter_table("budget_spend") as batch:
        batch.drop_column("tally")
