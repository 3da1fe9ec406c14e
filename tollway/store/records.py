"""What the store hands out and takes in: frozen dataclasses, never ORM rows.

Callers keep these as long as they like (the in-memory key cache does); no session or
lazy load hides behind them.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

UserKind = Literal["human", "service"]
UserRole = Literal["admin", "team_admin", "member", "viewer"]
TeamRole = Literal["team_admin", "member", "viewer"]
KeyStatus = Literal["active", "blocked", "revoked"]

USER_KINDS: Final[tuple[UserKind, ...]] = ("human", "service")
USER_ROLES: Final[tuple[UserRole, ...]] = ("admin", "team_admin", "member", "viewer")
TEAM_ROLES: Final[tuple[TeamRole, ...]] = ("team_admin", "member", "viewer")
KEY_STATUSES: Final[tuple[KeyStatus, ...]] = ("active", "blocked", "revoked")
KeyAuthority = Literal["owner", "team_admin", "admin"]
KEY_AUTHORITIES: Final[tuple[KeyAuthority, ...]] = ("owner", "team_admin", "admin")
"""Who may act on a key, weakest first: a block is lifted only by its blocker's equal or above."""
BudgetScope = Literal["key", "user", "team", "org"]
LimitScope = Literal["key", "user", "team", "model", "deployment"]
BudgetPeriod = Literal["day", "week", "month", "total"]
BudgetPolicy = Literal["reject", "shrink"]
BUDGET_SCOPES: Final[tuple[BudgetScope, ...]] = ("key", "user", "team", "org")
LIMIT_SCOPES: Final[tuple[LimitScope, ...]] = ("key", "user", "team", "model", "deployment")
BUDGET_PERIODS: Final[tuple[BudgetPeriod, ...]] = ("day", "week", "month", "total")
BUDGET_POLICIES: Final[tuple[BudgetPolicy, ...]] = ("reject", "shrink")


class Unset(enum.Enum):
    """The type of ``UNSET``: an update argument that was not given (``None`` clears)."""

    UNSET = "unset"


UNSET: Final = Unset.UNSET


@dataclass(frozen=True, slots=True)
class TeamRecord:
    """A team: the unit budgets, limits and cache namespaces are usually attached to."""

    id: str
    name: str
    organization: str | None
    metadata: Mapping[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    oidc_issuer: str | None = None
    """The OIDC issuer of the group the team stands for; ``None``: no group's."""
    oidc_group: str | None = None
    """The team claim value (``auth.oidc[].team_claim``) that names the team at sign-in,
    whatever the team is called now."""


@dataclass(frozen=True, slots=True)
class ProvisionedTeam:
    """A team a sign-in's group made (``created``) or took (``linked``: called after the
    group and standing for no group before)."""

    team: TeamRecord
    how: Literal["created", "linked"]


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A person (``human``) or a service account (``service``, usually without email)."""

    id: str
    email: str | None
    name: str | None
    kind: UserKind
    role: UserRole
    blocked: bool
    metadata: Mapping[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    oidc_issuer: str | None = None
    """The OIDC issuer the user was provisioned for (or linked to) at sign-in; else ``None``."""
    oidc_subject: str | None = None
    """The user claim's value (``auth.oidc[].user_claim``) at that issuer."""


@dataclass(frozen=True, slots=True)
class MembershipRecord:
    """A user's role in one team."""

    team_id: str
    user_id: str
    role: TeamRole
    created_at: dt.datetime
    source: str | None = None
    """``oidc``: added by a sign-in from the token's team claim; ``None``: by an admin."""


@dataclass(frozen=True, slots=True)
class NewKey:
    """A virtual key to create; the caller generated it and passes only prefix and hash."""

    name: str
    prefix: str
    key_hash: str = field(repr=False)
    user_id: str | None = None
    team_id: str | None = None
    allowed_models: tuple[str, ...] = ()
    expires_at: dt.datetime | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    limits: Mapping[str, Any] | None = None
    bound_teams: tuple[str, ...] | None = None
    """The teams the key may act in (a key a team admin made for a member); ``None``: all
    of its owner's."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A virtual key as stored: everything but the key itself."""

    id: str
    name: str
    prefix: str
    key_hash: str = field(repr=False)
    user_id: str | None
    team_id: str | None
    allowed_models: tuple[str, ...]
    expires_at: dt.datetime | None
    tags: Mapping[str, str]
    metadata: Mapping[str, Any]
    limits: Mapping[str, Any] | None
    status: KeyStatus
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    rotated_from: str | None
    grace_until: dt.datetime | None
    last_used_at: dt.datetime | None
    blocked_by: KeyAuthority | None = None
    """Who blocked the key (a blocked key from before this was recorded counts as ``admin``)."""
    blocked_reason: str | None = None
    """Why, when the block was made for a reason of the gateway's own (``OWNER_LEFT_TEAM``)."""
    lineage_id: str | None = None
    """The first key of the rotation chain this key belongs to; ``None`` when it is its own."""
    bound_teams: tuple[str, ...] | None = None
    """The teams the key acts in, when a team admin made it for a member: the ones that admin
    administered for the member then. ``None``: every team its owner is in."""

    @property
    def lineage(self) -> str:
        """The id key-scoped budgets and rate limits of this key go by: its chain's first."""
        return self.lineage_id or self.id

    def accepts_requests(self, now: dt.datetime) -> bool:
        """Whether a request made with this key at ``now`` may pass authentication."""
        if self.expires_at is not None and now >= self.expires_at:
            return False
        if self.status == "active":
            return True
        # A rotated key is revoked with a grace period so clients can switch over.
        return self.status == "revoked" and self.grace_until is not None and now < self.grace_until


OWNER_LEFT_TEAM: Final = "its owner was removed from the key's team"
"""The ``blocked_reason`` of the keys blocked when their owner leaves their team."""

OWNER_LEFT_CLAIMED_TEAM: Final = "its owner's sign-in no longer names the key's team"
"""The ``blocked_reason`` of the keys blocked when their owner's token stops naming the team
a sign-in had made them a member of (auth/provisioning.py)."""


@dataclass(frozen=True, slots=True)
class MemberRemoval:
    """What removing a member from a team did: the keys of theirs in that team it stopped."""

    team_id: str
    user_id: str
    blocked_keys: tuple[KeyRecord, ...]
    """Keys now blocked by the remover's authority (active ones, and those blocked with less)."""
    ended_grace: tuple[KeyRecord, ...]
    """Rotated keys whose grace period it ended (their old secrets stopped working)."""


@dataclass(frozen=True, slots=True)
class TeamDeletion:
    """What deleting a team did besides: its budgets and limits removed, its keys revoked."""

    removed: tuple[str, ...]
    """The budgets and rate limits removed, as ``budget:team:<id>:<period>`` and
    ``limit:team:<id>``."""
    revoked_keys: tuple[str, ...]
    """The ids of the team's keys it revoked (every one not revoked already)."""
    ended_grace: tuple[str, ...]
    """The ids of the team's keys rotated away whose grace period it ended (their old
    secrets stopped working)."""


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    """A provider credential's description; the secret is only given by ``reveal``."""

    id: str
    name: str
    provider: str
    created_at: dt.datetime
    rotated_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Reencryption:
    """What encrypting the vault's credentials again with the first vault key did."""

    reencrypted: int
    """Credentials that were under an older key and are now under the first."""
    current: int
    """Credentials that were under the first key already (left as they were)."""
    undecryptable: tuple[str, ...] = ()
    """Names of credentials no configured key decrypts, left as they were."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """An audit event to append; ``at`` defaults to the time it is written."""

    actor: str
    action: str
    target_type: str | None = None
    target_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    source_ip: str | None = None
    request_id: str | None = None
    at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """An audit event as stored."""

    id: int
    at: dt.datetime
    actor: str
    action: str
    target_type: str | None
    target_id: str | None
    details: Mapping[str, Any]
    source_ip: str | None
    request_id: str | None


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of audit events, newest first; pass ``next_cursor`` to get the next."""

    events: tuple[AuditRecord, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class BudgetRecord:
    """A spending limit of one key, user, team or organisation per period (micro-dollars).

    ``scope_id`` is the key id, user id, team id or organisation name (``*``: every
    request). ``soft_ratio`` and ``downgrade``: past that share of the limit, requests for
    a model named in ``downgrade`` go to the model it maps to.
    """

    scope: BudgetScope
    scope_id: str
    period: BudgetPeriod
    limit_micros: int
    policy: BudgetPolicy
    soft_ratio: float | None
    downgrade: Mapping[str, str]
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class RateLimitRecord:
    """Token, request and concurrency limits of one key, user, team, model or deployment."""

    scope: LimitScope
    scope_id: str
    tpm: int | None
    rpm: int | None
    max_concurrent: int | None
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class SpendTally:
    """A budget account's spend as a grow-only counter (limits/redis.py, "Losing data").

    Every settlement lands in exactly one *epoch* of the account in Redis, so the spend is
    ``base`` (spent before any epoch: a row written before revision 0011, or the memory
    backend's total) plus each epoch's own increment. Two tallies merge by the larger of each
    part: what replicas and the store know can arrive late, twice and in any order, and is
    never counted twice (a total cannot be merged so: the larger of two totals loses what
    each knew that the other did not).
    """

    base: int = 0
    epochs: Mapping[str, int] = field(default_factory=dict)
    """Epoch id -> what was spent in that epoch (on top of its floor)."""

    @property
    def total(self) -> int:
        """The spend this tally accounts for (micro-dollars)."""
        return self.base + sum(self.epochs.values())

    def merge(self, other: SpendTally) -> SpendTally:
        """The larger of each part of the two."""
        epochs = dict(self.epochs)
        for epoch, micros in other.epochs.items():
            if micros > epochs.get(epoch, -1):
                epochs[epoch] = micros
        return SpendTally(max(self.base, other.base), epochs)

    def document(self) -> dict[str, Any]:
        """The JSON the store keeps (``budget_spend.tally``)."""
        return {"base": self.base, "epochs": dict(self.epochs)}

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> SpendTally:
        """The tally ``document`` stores."""
        return cls(int(document["base"]), {e: int(m) for e, m in document["epochs"].items()})
