"""Users signed in through OIDC, memberships their tokens keep, and keys bound to teams.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 09:00:00

- ``users.oidc_issuer`` and ``users.oidc_subject``: the identity a user was provisioned for
  (or linked to) on their first sign-in (auth/provisioning.py), unique together, so two
  replicas provisioning one identity at once make one user (insert-or-ignore).
- ``team_members.source``: ``oidc`` for a membership a sign-in added from the token's team
  claim (a later sign-in without that team removes it); NULL for one an admin made.
- ``virtual_keys.bound_teams``: the teams a key made by a team admin acts in (the ones that
  admin administered for its owner when it was made); NULL for every other key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    """Add the nullable columns and the unique index (rows before have none of them)."""
    op.add_column("users", sa.Column("oidc_issuer", sa.String(500), nullable=True))
    op.add_column("users", sa.Column("oidc_subject", sa.String(320), nullable=True))
    op.create_index("uq_users_oidc_identity", "users", ["oidc_issuer", "oidc_subject"], unique=True)
    op.add_column("team_members", sa.Column("source", sa.String(16), nullable=True))
    op.add_column("virtual_keys", sa.Column("bound_teams", JSON, nullable=True))


def downgrade() -> None:
    """Drop them (SQLite rebuilds the tables)."""
    with op.batch_alter_table("virtual_keys") as batch:
        batch.drop_column("bound_teams")
    with op.batch_alter_table("team_members") as batch:
        batch.drop_column("source")
    op.drop_index("uq_users_oidc_identity", "users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("oidc_subject")
        batch.drop_column("oidc_issuer")
