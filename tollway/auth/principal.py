"""Who is calling: the principal every authenticated request runs as."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

Role = Literal["admin", "team_admin", "member", "viewer"]
PrincipalKind = Literal["key", "oidc", "anonymous"]

ROLE_RANK: Mapping[str, int] = MappingProxyType(
    {"viewer": 0, "member": 1, "team_admin": 2, "admin": 3}
)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a virtual key, an OIDC identity, or anonymous (when allowed).

    ``allowed_models`` holds model names or ``*`` globs; ``None`` means every model.
    ``id`` is never a secret: a key's id, ``oidc:<issuer>#<subject>`` or ``anonymous``.
    """

    kind: PrincipalKind
    id: str
    role: Role = "member"
    user: str | None = None
    team: str | None = None
    teams: tuple[str, ...] = ()
    allowed_models: tuple[str, ...] | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    key_prefix: str | None = None
    team_roles: Mapping[str, Role] = field(default_factory=dict)
    """The caller's role in each of its teams; team-scoped permissions are judged by these,
    so administering one team gives nothing in another."""
    lineage: str | None = None
    """A key's rotation chain's first key id: key-scoped budgets and rate limits go by it,
    so a rotated key (and its old secret in its grace period) shares one account with the
    keys it replaced. ``None`` for other principals (they go by ``id``)."""

    def may_use(self, model: str) -> bool:
        """Whether this principal may call ``model``."""
        if self.allowed_models is None:
            return True
        return any(
            pattern == model or fnmatch.fnmatchcase(model, pattern)
            for pattern in self.allowed_models
        )

    def has_role(self, role: Role) -> bool:
        """Whether this principal's role is ``role`` or above."""
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    def role_in(self, team_id: str | None) -> Role | None:
        """This principal's role in ``team_id``; ``None`` when outside it (admins: admin)."""
        if self.role == "admin":
            return "admin"
        return None if team_id is None else self.team_roles.get(team_id)


ANONYMOUS = Principal(kind="anonymous", id="anonymous", role="member", allowed_models=())
"""The caller without a credential; config decides which models it may use."""
