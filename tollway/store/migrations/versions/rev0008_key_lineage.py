"""The rotation chain a key belongs to: ``virtual_keys.lineage_id``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 12:00:00

A rotation makes a new key with a new id; key-scoped budgets, their spend and rate limits
go by the id of the chain's first key (``lineage_id``; NULL for a key that is its own first),
so they follow the key across rotations instead of starting afresh on the new id. Keys
rotated before this revision get their chain's first key by following ``rotated_from``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def _first_keys(rotated_from: dict[str, str | None]) -> dict[str, str]:
    """Each rotated key's chain's first key (a cycle, which rotation cannot make, stops)."""
    firsts: dict[str, str] = {}
    for key_id, previous in rotated_from.items():
        if previous is None:
            continue
        seen = {key_id}
        first = previous
        while (earlier := rotated_from.get(first)) is not None and earlier not in seen:
            seen.add(first)
            first = earlier
        firsts[key_id] = first
    return firsts


def upgrade() -> None:
    """Add the nullable column and its index, and fill it in for keys already rotated."""
    op.add_column("virtual_keys", sa.Column("lineage_id", sa.String(36), nullable=True))
    op.create_index(op.f("ix_virtual_keys_lineage_id"), "virtual_keys", ["lineage_id"])
    keys = sa.table(
        "virtual_keys",
        sa.column("id", sa.String(36)),
        sa.column("rotated_from", sa.String(36)),
        sa.column("lineage_id", sa.String(36)),
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(keys.c.id, keys.c.rotated_from)).all()
    firsts = _first_keys({row.id: row.rotated_from for row in rows})
    for key_id, first in firsts.items():
        connection.execute(keys.update().where(keys.c.id == key_id).values(lineage_id=first))


def downgrade() -> None:
    """Drop it (SQLite rebuilds the table)."""
    op.drop_index(op.f("ix_virtual_keys_lineage_id"), "virtual_keys")
    with op.batch_alter_table("virtual_keys") as batch:
        batch.drop_column("lineage_id")
