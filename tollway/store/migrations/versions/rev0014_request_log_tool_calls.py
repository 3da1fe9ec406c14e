"""The request log's server-side tool calls and what they cost.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08 09:00:00

``tool_calls``: the calls of the provider's own tools (web search, file search, Gemini's
Google Search queries) a request's answer made, billed on top of its tokens
(pricing/tools.py); ``tool_cost_micros``: what they cost, the part of ``cost_micros`` that
is tool fees. Whole numbers, 0 for rows stored before (whose cost has no such fees in it,
or none the log could tell apart).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

_COUNTS = ("tool_calls", "tool_cost_micros")


def upgrade() -> None:
    """Add the two counts (0 in the rows there)."""
    for name in _COUNTS:
        op.add_column(
            "request_log",
            sa.Column(name, sa.BigInteger(), server_default="0", nullable=False),
        )


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("request_log") as batch:
        for name in reversed(_COUNTS):
            batch.drop_column(name)
