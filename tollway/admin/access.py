"""Who may do what in the admin API.

admin       everything
team_admin  its teams: read them, manage their members and their keys
member      its own keys (list, create in its teams, rotate, revoke); read its teams
viewer      read its teams and their keys
"""

from __future__ import annotations

from tollway.auth.principal import ROLE_RANK, Principal, Role
from tollway.core.errors import PermissionDenied
from tollway.store import KeyRecord


def require_role(principal: Principal, role: Role) -> None:
    """403 unless ``principal`` has ``role`` or above."""
    if not principal.has_role(role):
        raise PermissionDenied(f"This needs the {role} role.", code="insufficient_role")


def require_team(principal: Principal, team_id: str | None, role: Role) -> None:
    """403 unless ``principal`` is an admin, or has ``role`` (or above) in ``team_id`` itself.

    The role counted is the one held in that team: administering one team gives nothing in
    another the caller merely belongs to.
    """
    held = principal.role_in(team_id)
    if held is None:
        raise PermissionDenied("This is outside your teams.", code="outside_team")
    if ROLE_RANK[held] < ROLE_RANK[role]:
        raise PermissionDenied(
            f"This needs the {role} role in that team.", code="insufficient_role"
        )


def may_read_key(principal: Principal, key: KeyRecord) -> bool:
    """Admins see all keys, team members their teams' keys, anyone their own keys."""
    if principal.has_role("admin") or (principal.user and key.user_id == principal.user):
        return True
    return principal.role_in(key.team_id) is not None


def require_key_manager(principal: Principal, key: KeyRecord) -> None:
    """403 unless ``principal`` may change ``key``: admin, its team's admin, or its owner."""
    if principal.has_role("admin"):
        return
    if principal.role_in(key.team_id) == "team_admin":
        return
    if principal.has_role("member") and principal.user and key.user_id == principal.user:
        return
    raise PermissionDenied("You may not manage this key.", code="not_your_key")
