"""Request bodies of the admin API, validated by pydantic (and described in its OpenAPI)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from tollway.config.types import Duration

Role = Literal["admin", "team_admin", "member", "viewer"]
TeamRole = Literal["team_admin", "member", "viewer"]


class Body(BaseModel):
    """Unknown fields are errors, so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid")


def _not_null(value: Any) -> Any:
    # A change's fields are optional to leave out, not to send as null: only the ones that
    # can be cleared (a key's expiry, a user's name) accept null.
    if value is None:
        raise ValueError("cannot be null (leave the field out to keep it as it is)")
    return value


class TeamCreate(Body):
    """A new team."""

    name: str = Field(min_length=1, max_length=200)
    organization: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    oidc_issuer: str | None = Field(default=None, min_length=1, max_length=500)
    """With ``oidc_group``: the issuer (one of ``auth.oidc[]``) of the group the team stands
    for, which sign-ins match it by (docs/oidc.md)."""
    oidc_group: str | None = Field(default=None, min_length=1, max_length=200)
    """The ``team_claim`` value of that group."""


class TeamUpdate(Body):
    """Changes to a team; absent fields stay as they are."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    organization: str | None = None
    metadata: dict[str, Any] | None = None
    oidc_issuer: str | None = Field(default=None, min_length=1, max_length=500)
    """Sent with ``oidc_group``; both null: the team stands for no group."""
    oidc_group: str | None = Field(default=None, min_length=1, max_length=200)

    _present = field_validator("name", "metadata", mode="before")(_not_null)


class MemberAdd(Body):
    """A user joining a team (or changing role in it)."""

    user_id: str
    role: TeamRole = "member"


class UserCreate(Body):
    """A new person or service account."""

    email: str | None = None
    name: str | None = None
    kind: Literal["human", "service"] = "human"
    role: Role = "member"
    metadata: dict[str, Any] = Field(default_factory=dict)


class UserUpdate(Body):
    """Changes to a user; absent fields stay as they are."""

    email: str | None = None
    name: str | None = None
    role: Role | None = None
    blocked: bool | None = None
    metadata: dict[str, Any] | None = None

    _present = field_validator("role", "blocked", "metadata", mode="before")(_not_null)


MAX_KEY_LIFETIME = 100 * 365 * 24 * 3600.0
"""The furthest ahead ``expires_in`` may set a key's expiry (876000h)."""


class KeyCreate(Body):
    """A new virtual key; the key itself is in the answer, once."""

    name: str = Field(min_length=1, max_length=200)
    user_id: str | None = None
    team_id: str | None = None
    allowed_models: list[str] = Field(default_factory=list)
    """Model names or ``*`` globs; empty means every model."""
    expires_at: dt.datetime | None = None
    expires_in: Duration | None = None
    """Alternative to ``expires_at``: e.g. ``"30d"`` is not valid, use ``"720h"``; at most
    100 years (past year 9999 the expiry cannot be written: it was a 500)."""
    tags: dict[str, str] = Field(default_factory=dict)
    """Cost attribution, e.g. ``{"service": "classification-job"}``."""
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("expires_in")
    @classmethod
    def _within_a_century(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and value > MAX_KEY_LIFETIME:
            raise ValueError("must be at most 876000h (100 years); leave it out for no expiry")
        # Both given: one of them would be ignored, and the caller would not learn which
        # (``expires_in`` silently won).
        if value is not None and info.data.get("expires_at") is not None:
            raise ValueError("give expires_at or expires_in, not both")
        return value


class KeyUpdate(Body):
    """Changes to a key; absent fields stay as they are."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    allowed_models: list[str] | None = None
    expires_at: dt.datetime | None = None
    tags: dict[str, str] | None = None
    metadata: dict[str, Any] | None = None

    _present = field_validator("name", "allowed_models", "tags", "metadata", mode="before")(
        _not_null
    )


MAX_GRACE_PERIOD = 7 * 24 * 3600.0
"""The longest a rotated key's old secret may keep working (an old secret that works longer
is a second key, which should be made as one)."""


class KeyRotate(Body):
    """Rotation: a new key now; the old one keeps working for ``grace_period`` (none by
    default, at most 168h), unless the new key is blocked or revoked before."""

    grace_period: Duration | None = None

    @field_validator("grace_period")
    @classmethod
    def _bounded(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value <= MAX_GRACE_PERIOD:
            raise ValueError("must be between 0s and 168h (7 days)")
        return value


class CredentialPut(Body):
    """A provider credential for the vault; the secret is never returned."""

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    provider: str = Field(min_length=1)
    secret: str = Field(min_length=1, repr=False)


class BudgetPut(Body):
    """A budget to create or replace (scope, id and period name it)."""

    scope: Literal["key", "user", "team", "org"]
    scope_id: str = Field(min_length=1, max_length=200)
    """The key id, user id, team id or organisation name (``*``: every request)."""
    period: Literal["day", "week", "month", "total"] = "month"
    limit_usd: float = Field(ge=0, le=1e9)
    policy: Literal["reject", "shrink"] = "reject"
    soft_limit: float | None = Field(default=None, gt=0, le=1)
    downgrade: dict[str, str] = Field(default_factory=dict)


class LimitPut(Body):
    """Rate limits to create or replace for one scope and id; unset means unlimited."""

    scope: Literal["key", "user", "team", "model", "deployment"]
    scope_id: str = Field(min_length=1, max_length=200)
    tpm: int | None = Field(default=None, gt=0)
    rpm: int | None = Field(default=None, gt=0)
    max_concurrent: int | None = Field(default=None, gt=0)
