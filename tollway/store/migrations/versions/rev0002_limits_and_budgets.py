"""Limits and budgets: budgets, rate_limits and budget_spend.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 20:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the three tables of limits and budgets."""
    op.create_table(
        "budgets",
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("scope_id", sa.String(200), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("limit_micros", sa.BigInteger(), nullable=False),
        sa.Column("policy", sa.String(16), nullable=False),
        sa.Column("soft_ratio", sa.Float(), nullable=True),
        sa.Column("downgrade", JSON, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "scope IN ('key', 'user', 'team', 'org')", name=op.f("ck_budgets_scope")
        ),
        sa.CheckConstraint(
            "period IN ('day', 'week', 'month', 'total')", name=op.f("ck_budgets_period")
        ),
        sa.CheckConstraint("policy IN ('reject', 'shrink')", name=op.f("ck_budgets_policy")),
        sa.PrimaryKeyConstraint("scope", "scope_id", "period", name=op.f("pk_budgets")),
    )
    op.create_table(
        "rate_limits",
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("scope_id", sa.String(200), nullable=False),
        sa.Column("tpm", sa.Integer(), nullable=True),
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("max_concurrent", sa.Integer(), nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "scope IN ('key', 'user', 'team', 'model', 'deployment')",
            name=op.f("ck_rate_limits_scope"),
        ),
        sa.PrimaryKeyConstraint("scope", "scope_id", name=op.f("pk_rate_limits")),
    )
    op.create_table(
        "budget_spend",
        sa.Column("account", sa.String(300), nullable=False),
        sa.Column("spent_micros", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_budget_spend")),
    )


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_table("budget_spend")
    op.drop_table("rate_limits")
    op.drop_table("budgets")
