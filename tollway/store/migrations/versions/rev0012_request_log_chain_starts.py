"""Where each request log chain starts after retention: ``request_log_chain_starts``.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 10:00:00

Verification used to trust a chain's oldest remaining record, so deleting a chain's first
records read as retention. Retention now records, per chain, the last record it deleted
(its ``seq`` and ``hash``), and a chain must start at seq 1 (``prev_hash`` 64 zeros) or
right after that record. Chains from before: their start as it stands at the upgrade (what
earlier retention left) is recorded here, so they verify as they did; a deletion after the
upgrade is found.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    """Make the table, and record the start of every chain that no longer starts at 1."""
    starts = op.create_table(
        "request_log_chain_starts",
        sa.Column("chain_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("chain_id", name=op.f("pk_request_log_chain_starts")),
    )
    log = sa.table(
        "request_log",
        sa.column("chain_id", sa.String(32)),
        sa.column("seq", sa.BigInteger()),
        sa.column("prev_hash", sa.String(64)),
    )
    connection = op.get_bind()
    firsts = sa.select(log.c.chain_id, sa.func.min(log.c.seq).label("first")).group_by(
        log.c.chain_id
    )
    rows = []
    for chain_id, first in connection.execute(firsts).all():
        if int(first) <= 1:
            continue
        condition = sa.and_(log.c.chain_id == chain_id, log.c.seq == first)
        prev_hash = connection.execute(sa.select(log.c.prev_hash).where(condition)).scalar()
        rows.append({"chain_id": chain_id, "seq": int(first) - 1, "hash": prev_hash})
    if rows:
        op.bulk_insert(starts, rows)


def downgrade() -> None:
    """Drop it (verification then trusts each chain's oldest record again)."""
    op.drop_table("request_log_chain_starts")
