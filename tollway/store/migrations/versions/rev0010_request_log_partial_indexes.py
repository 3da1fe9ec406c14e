"""The request log's team, user and key indexes leave out the rows without one.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 15:00:00

``ix_request_log_team_at``, ``ix_request_log_user_at`` and ``ix_request_log_key_at`` serve
the log's filters and visibility scopes (``team_id = ?``, ``team_id IN (...)``, ...), none of
which asks for NULL; both backends use a partial index (``WHERE team_id IS NOT NULL``) for
them. A row without a team, a user or a key (a key of no team, a user signed in without a
key) then costs no insert into that index: on SQLite about 2,000 instructions a row and
index, and one page fewer written to the WAL a commit (docs/performance.md, "Session 15").
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

_DIMENSIONS = ("team", "user", "key")


def upgrade() -> None:
    """Make the three indexes again, without the rows where their column is NULL."""
    for name in _DIMENSIONS:
        column = f"{name}_id"
        where = sa.text(f"{column} IS NOT NULL")
        op.drop_index(f"ix_request_log_{name}_at", "request_log")
        op.create_index(
            f"ix_request_log_{name}_at", "request_log", [column, "at"],
            sqlite_where=where, postgresql_where=where,
        )  # fmt: skip


def downgrade() -> None:
    """Make them whole again."""
    for name in _DIMENSIONS:
        op.drop_index(f"ix_request_log_{name}_at", "request_log")
        op.create_index(f"ix_request_log_{name}_at", "request_log", [f"{name}_id", "at"])
