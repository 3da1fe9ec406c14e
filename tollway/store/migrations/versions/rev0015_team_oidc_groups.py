"""Teams keep the OIDC group they stand for, so a rename does not lose it.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-09 09:00:00

- ``teams.oidc_issuer`` and ``teams.oidc_group``: the issuer and team claim value a sign-in
  matches the team by (auth/provisioning.py), unique together; they were matched by name, so
  a team renamed through the admin API lost its group and the next sign-in made a new team
  (and blocked the keys its members had made in the old one).
- A team a sign-in made before (``metadata.oidc_issuer``) stands for the group it was named
  after; that key leaves its metadata (the columns hold it now). Other teams stand for no
  group until a sign-in names them (docs/oidc.md).
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

_TEAMS = sa.table(
    "teams",
    sa.column("id", sa.String),
    sa.column("name", sa.String),
    sa.column("metadata", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
    sa.column("oidc_issuer", sa.String),
    sa.column("oidc_group", sa.String),
)


def upgrade() -> None:
    """Add the columns and their unique index; give provisioned teams their group."""
    op.add_column("teams", sa.Column("oidc_issuer", sa.String(500), nullable=True))
    op.add_column("teams", sa.Column("oidc_group", sa.String(200), nullable=True))
    op.create_index("uq_teams_oidc_group", "teams", ["oidc_issuer", "oidc_group"], unique=True)
    connection = op.get_bind()
    rows = connection.execute(sa.select(_TEAMS.c.id, _TEAMS.c.name, _TEAMS.c.metadata))
    for team_id, name, metadata in list(rows):
        meta = _mapping(metadata)
        issuer = meta.pop("oidc_issuer", None)
        if not isinstance(issuer, str):
            continue
        connection.execute(
            _TEAMS.update()
            .where(_TEAMS.c.id == team_id)
            .values(oidc_issuer=issuer, oidc_group=name, metadata=meta)
        )


def downgrade() -> None:
    """Put the issuer back in the metadata of the teams that have one, drop the columns."""
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(_TEAMS.c.id, _TEAMS.c.metadata, _TEAMS.c.oidc_issuer).where(
            _TEAMS.c.oidc_issuer.is_not(None)
        )
    )
    for team_id, metadata, issuer in list(rows):
        meta = {**_mapping(metadata), "oidc_issuer": issuer}
        connection.execute(_TEAMS.update().where(_TEAMS.c.id == team_id).values(metadata=meta))
    op.drop_index("uq_teams_oidc_group", "teams")
    with op.batch_alter_table("teams") as batch:
        batch.drop_column("oidc_group")
        batch.drop_column("oidc_issuer")


def _mapping(value: Any) -> dict[str, Any]:
    """A metadata column's value as a dict (SQLite may hand back its JSON text)."""
    if isinstance(value, (str, bytes)):
        value = orjson.loads(value)
    return dict(value) if isinstance(value, dict) else {}
