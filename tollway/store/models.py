"""The tables, as SQLAlchemy declarative models; only the repositories touch these.

Changing a model means writing a migration (docs/store.md); a test checks the two agree.
Ids are UUID text so they read the same on every backend and in URLs.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tollway.store.columns import (
    BigId,
    JSONColumn,
    NullableJSON,
    UTCDateTime,
    UTCMicros,
    utcnow,
)
from tollway.store.records import (
    BUDGET_PERIODS,
    BUDGET_POLICIES,
    BUDGET_SCOPES,
    KEY_STATUSES,
    LIMIT_SCOPES,
    TEAM_ROLES,
    USER_KINDS,
    USER_ROLES,
    KeyAuthority,
    KeyStatus,
    TeamRole,
    UserKind,
    UserRole,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Named constraints, so later migrations can alter them (SQLite batch mode needs names)."""


def new_id() -> str:
    """A fresh random id (UUID4 text)."""
    return str(uuid.uuid4())


def one_of(column: str, values: tuple[str, ...]) -> str:
    """A CHECK expression limiting ``column`` to ``values``."""
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


class Base(DeclarativeBase):
    """Declarative base carrying the shared metadata."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TeamRow(Base):
    """``teams``: a group of users and keys sharing budgets and policies."""

    __tablename__ = "teams"
    __table_args__ = (
        # One team per OIDC group, whichever replica provisions it first (revision 0015).
        Index("uq_teams_oidc_group", "oidc_issuer", "oidc_group", unique=True),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    organization: Mapped[str | None] = mapped_column(String(200))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONColumn, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The OIDC group (a team claim value at that issuer) the team stands for: what sign-ins
    # match it by, so a rename keeps it (auth/provisioning.py). NULL: no group's.
    oidc_issuer: Mapped[str | None] = mapped_column(String(500))
    oidc_group: Mapped[str | None] = mapped_column(String(200))


class UserRow(Base):
    """``users``: people and service accounts; emails are stored lower-cased."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(one_of("kind", USER_KINDS), name="kind"),
        CheckConstraint(one_of("role", USER_ROLES), name="role"),
        # One user per identity, whichever replica provisions it first (revision 0013).
        Index("uq_users_oidc_identity", "oidc_issuer", "oidc_subject", unique=True),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[UserKind] = mapped_column(String(16))
    role: Mapped[UserRole] = mapped_column(String(16))
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONColumn, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The OIDC identity (issuer, user claim value) the user stands for; NULL for the others.
    oidc_issuer: Mapped[str | None] = mapped_column(String(500))
    oidc_subject: Mapped[str | None] = mapped_column(String(320))


class MembershipRow(Base):
    """``team_members``: a user's role in a team; a user may be in several teams."""

    __tablename__ = "team_members"
    __table_args__ = (CheckConstraint(one_of("role", TEAM_ROLES), name="role"),)

    team_id: Mapped[str] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[TeamRole] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # "oidc": added by a sign-in from the token's team claim, and removed by a later sign-in
    # without that team; NULL: made by an admin, which sign-ins leave alone.
    source: Mapped[str | None] = mapped_column(String(16))


class KeyRow(Base):
    """``virtual_keys``: keys clients authenticate with; only the SHA-256 of a key is kept."""

    __tablename__ = "virtual_keys"
    __table_args__ = (CheckConstraint(one_of("status", KEY_STATUSES), name="status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Deleting a user or team revokes its keys first (repositories), then detaches them.
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    team_id: Mapped[str | None] = mapped_column(
        ForeignKey("teams.id", ondelete="SET NULL"), index=True
    )
    allowed_models: Mapped[list[str]] = mapped_column(JSONColumn, default=list)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    tags: Mapped[dict[str, str]] = mapped_column(JSONColumn, default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONColumn, default=dict)
    limits: Mapped[dict[str, Any] | None] = mapped_column(JSONColumn)
    status: Mapped[KeyStatus] = mapped_column(String(16), default="active", index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    rotated_from: Mapped[str | None] = mapped_column(
        ForeignKey("virtual_keys.id", ondelete="SET NULL")
    )
    grace_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # owner, team_admin or admin: a block is lifted only by as much authority as made it.
    blocked_by: Mapped[KeyAuthority | None] = mapped_column(String(16))
    # Why, when the gateway blocked it for a reason of its own (its owner left its team).
    blocked_reason: Mapped[str | None] = mapped_column(String(200))
    # The first key of the rotation chain (NULL: this key is its own first). Key-scoped
    # budgets, their spend and rate limits go by it, so they follow the key across rotations.
    lineage_id: Mapped[str | None] = mapped_column(String(36), index=True)
    # The teams the key acts in when a team admin made it for a member (those it administered
    # for the member then); NULL: every team of its owner's, as the owner (revision 0013).
    bound_teams: Mapped[list[str] | None] = mapped_column(NullableJSON)


class CredentialRow(Base):
    """``provider_credentials``: provider secrets, Fernet-encrypted with the vault key."""

    __tablename__ = "provider_credentials"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    provider: Mapped[str] = mapped_column(String(64))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    rotated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"CredentialRow(name={self.name!r}, provider={self.provider!r})"


class AuditRow(Base):
    """``audit_events``: who did what to which record; append-only, never secrets."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_target", "target_type", "target_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(320), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str | None] = mapped_column(String(64))
    target_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSONColumn, default=dict)
    source_ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))


class BudgetRow(Base):
    """``budgets``: a spending limit per scope and period; amounts in micro-dollars."""

    __tablename__ = "budgets"
    __table_args__ = (
        CheckConstraint(one_of("scope", BUDGET_SCOPES), name="scope"),
        CheckConstraint(one_of("period", BUDGET_PERIODS), name="period"),
        CheckConstraint(one_of("policy", BUDGET_POLICIES), name="policy"),
    )

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    scope_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    period: Mapped[str] = mapped_column(String(16), primary_key=True)
    limit_micros: Mapped[int] = mapped_column(BigInteger)
    policy: Mapped[str] = mapped_column(String(16))
    soft_ratio: Mapped[float | None] = mapped_column(Float)
    downgrade: Mapped[dict[str, str]] = mapped_column(JSONColumn, default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class RateLimitRow(Base):
    """``rate_limits``: tokens and requests per minute and concurrency per scope."""

    __tablename__ = "rate_limits"
    __table_args__ = (CheckConstraint(one_of("scope", LIMIT_SCOPES), name="scope"),)

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    scope_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    tpm: Mapped[int | None] = mapped_column(Integer)
    rpm: Mapped[int | None] = mapped_column(Integer)
    max_concurrent: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class SpendRow(Base):
    """``budget_spend``: what each budget account (scope, id, period) has spent so far."""

    __tablename__ = "budget_spend"

    account: Mapped[str] = mapped_column(String(300), primary_key=True)
    spent_micros: Mapped[int] = mapped_column(BigInteger)
    """The total, for reports; seeding reads ``tally`` (NULL in rows from before 0011)."""
    tally: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON)
    """``SpendTally.document()``: the spend per epoch, merged by the larger of each part."""
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


def _not_null(column: str) -> dict[str, Any]:
    """An index's options that leave out the rows where ``column`` is NULL, on both backends."""
    where = text(f"{column} IS NOT NULL")
    return {"sqlite_where": where, "postgresql_where": where}


class RequestLogChainStartRow(Base):
    """``request_log_chain_starts``: where each request log chain now starts (revision 0012).

    Retention deletes a prefix of a chain and records here the last record it deleted
    (``seq`` and ``hash``), so verification knows the chain's first remaining record must
    follow it; a chain with no row here must start at seq 1 (telemetry/chain.py).
    """

    __tablename__ = "request_log_chain_starts"

    chain_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str | None] = mapped_column(String(64))


class RequestLogRow(Base):
    """``request_log``: one row per request the pipeline ran or refused before it ran
    (telemetry/request_log.py, telemetry/refusals.py).

    ``chain_id`` and ``seq`` name a row uniquely per writer process, so a batch replayed from
    the spool is inserted once; ``prev_hash`` and ``hash`` link the rows of one chain
    (telemetry/chain.py) when ``telemetry.request_log.chain`` is on.
    """

    __tablename__ = "request_log"
    __table_args__ = (
        UniqueConstraint("chain_id", "seq", name="uq_request_log_chain_seq"),
        # Partial (revision 0010): a filter by team, user or key never asks for NULL, and
        # many rows have one (a key without a team, a user signed in without a key).
        *(
            Index(f"ix_request_log_{name}_at", f"{name}_id", "at", **_not_null(f"{name}_id"))
            for name in ("team", "user", "key")
        ),
        Index("ix_request_log_model_at", "model", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCMicros, index=True)
    chain_id: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(BigInteger)
    request_id: Mapped[str] = mapped_column(String(128))
    principal_kind: Mapped[str | None] = mapped_column(String(16))
    key_id: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(320))
    team_id: Mapped[str | None] = mapped_column(String(200))
    service: Mapped[str | None] = mapped_column(String(200))
    endpoint: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(200))
    served_model: Mapped[str | None] = mapped_column(String(200))
    deployment_id: Mapped[str | None] = mapped_column(String(200))
    provider: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer)
    fallbacks: Mapped[int] = mapped_column(Integer)
    status: Mapped[int] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(64))
    stream: Mapped[bool] = mapped_column(Boolean)
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    cached_tokens: Mapped[int] = mapped_column(BigInteger)
    # Anthropic's cache_creation_input_tokens, and the part of them written for an hour
    # (revision 0007; rows stored before hold 0).
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cache_write_1h_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    usage_estimated: Mapped[bool] = mapped_column(Boolean)
    cost_micros: Mapped[int] = mapped_column(BigInteger)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    cache: Mapped[str | None] = mapped_column(String(16))
    guardrails: Mapped[list[str]] = mapped_column(JSONColumn)
    prompt: Mapped[Any] = mapped_column(NullableJSON, nullable=True)
    response: Mapped[Any] = mapped_column(NullableJSON, nullable=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))
    refused: Mapped[str | None] = mapped_column(String(200))
    """Set on a placeholder: why the store refused the row written for this request (the
    row itself is set aside in the spool's ``rejected/``); revision 0007."""
    source_ip: Mapped[str | None] = mapped_column(String(64))
    """The client's address (the connection's peer, or the client a trusted proxy names:
    ``server.trusted_proxies``); revision 0009, NULL in rows before."""
    # The provider's server-side tool calls (web search...) and their fees, the part of
    # cost_micros they are (revision 0014; rows stored before hold 0).
    tool_calls: Mapped[int] = mapped_column(BigInteger, server_default="0")
    tool_cost_micros: Mapped[int] = mapped_column(BigInteger, server_default="0")
