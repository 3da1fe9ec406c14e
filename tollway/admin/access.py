"""Who may do what in the admin API.

admin       everything
team_admin  its teams: read them, manage their members and their keys
member      its own keys (list, create in its teams, rotate, revoke); read its teams
viewer      read its teams and their keys

Whoever makes or changes a key can give it only models the caller may use itself, so a key
limited to some models cannot make (or widen) a key into one that reaches others. A key that
a non-admin makes belongs to one of its owner's teams, so that team's budgets and limits
apply to it. A block is lifted only by as much authority as made it: an admin's block by an
admin, a team admin's by that team's admin (or an admin); the owner lifts only its own.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from tollway.auth.principal import ROLE_RANK, Principal, Role
from tollway.core.errors import InvalidRequest, PermissionDenied
from tollway.store import KeyAuthority, KeyRecord
from tollway.store.records import KEY_AUTHORITIES

_BLOCKERS = {"owner": "its owner", "team_admin": "a team admin", "admin": "an admin"}


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


def require_models_within(principal: Principal, models: Sequence[str]) -> None:
    """403 unless every model ``models`` allows (none: every model) is one ``principal`` may use."""
    own = principal.allowed_models
    if own is None:
        return
    wider = [pattern for pattern in models if not _covered(pattern, own)] if models else ["*"]
    if wider:
        raise PermissionDenied(
            f"A key can only be given models you may use yourself ({', '.join(own) or 'none'});"
            f" not {', '.join(wider)} (no models means every model).",
            code="model_not_allowed",
            param="allowed_models",
        )


def _covered(pattern: str, own: Sequence[str]) -> bool:
    """Whether everything ``pattern`` names is in one of the ``own`` names or globs."""
    if pattern in own:
        return True
    if not any(char in pattern for char in "*?["):
        return any(fnmatch.fnmatchcase(pattern, mine) for mine in own)
    # A glob is covered by a plain prefix glob ("gpt-4o*" covers "gpt-4o-mini*"); anything
    # subtler is refused rather than guessed at.
    return any(
        mine.endswith("*")
        and not any(c in mine[:-1] for c in "*?[")
        and pattern.startswith(mine[:-1])
        for mine in own
    )


def require_outranked_owner(principal: Principal, owner_role: Role | None) -> None:
    """403 when a key's owner has a role above the caller's: a key acts with its owner's role,
    so making (or rotating) one would hand the caller that role."""
    # Below admin, no role outranks a team's admin in that team.
    if owner_role == "admin" and not principal.has_role("admin"):
        raise PermissionDenied(
            "Only an admin may make or manage the keys of an admin.", code="insufficient_role"
        )


def require_owner_within_reach(principal: Principal, owner_teams: Sequence[str]) -> None:
    """403 unless a non-admin administers every team a key's owner is in (``owner_teams``).

    A key acts with its owner's rights in each of the owner's teams, not only its own, and
    whoever makes or rotates a key holds its secret: a team admin making a key for a member
    who is also in another team would hold that member's rights there.
    """
    if principal.has_role("admin"):
        return
    outside = [team for team in owner_teams if principal.role_in(team) != "team_admin"]
    if outside:
        raise PermissionDenied(
            "A key acts with its owner's rights in each of their teams, and its owner is also"
            f" in teams you do not administer ({', '.join(sorted(outside))}): ask an admin, or"
            " the owner, to make or rotate it.",
            code="insufficient_role",
        )


def require_key_manager(
    principal: Principal, key: KeyRecord, owner_role: Role | None = None
) -> None:
    """403 unless ``principal`` may change ``key``: admin, its team's admin (unless the key's
    owner, whose role ``owner_role`` is, is an admin), or its owner."""
    if principal.has_role("admin"):
        return
    if principal.role_in(key.team_id) == "team_admin":
        if key.user_id != principal.user:
            require_outranked_owner(principal, owner_role)
        return
    if principal.has_role("member") and principal.user and key.user_id == principal.user:
        return
    raise PermissionDenied("You may not manage this key.", code="not_your_key")


def key_authority(principal: Principal, key: KeyRecord) -> KeyAuthority:
    """How ``principal`` acts on ``key`` (once ``require_key_manager`` let it): as an admin,
    as the admin of the key's team, or as its owner."""
    if principal.has_role("admin"):
        return "admin"
    if principal.role_in(key.team_id) == "team_admin":
        return "team_admin"
    return "owner"


def require_may_unblock(authority: KeyAuthority, key: KeyRecord) -> None:
    """403 when ``key`` was blocked with more authority than ``authority``: an owner cannot
    lift its team admin's or an admin's block, nor a team admin an admin's."""
    if key.status != "blocked":
        return
    blocker = key.blocked_by or "admin"  # blocked before blockers were recorded
    if KEY_AUTHORITIES.index(authority) < KEY_AUTHORITIES.index(blocker):
        raise PermissionDenied(
            f"This key was blocked by {_BLOCKERS[blocker]}; only {_BLOCKERS[blocker]}"
            f"{'' if blocker == 'admin' else ' or an admin'} may unblock it.",
            code="insufficient_role",
        )


def own_team(principal: Principal) -> str:
    """The team a non-admin's key goes to when the request names none: the caller's only
    team (where it is at least a member); 400 when it has several, 403 when none."""
    member = ROLE_RANK["member"]
    teams = [team for team, role in principal.team_roles.items() if ROLE_RANK[role] >= member]
    if len(teams) == 1:
        return teams[0]
    if not teams:
        raise PermissionDenied(
            "Keys you make belong to one of your teams (its budgets apply to them), and you are"
            " a member of none: ask an admin to add you to a team, or to make the key.",
            code="outside_team",
        )
    raise InvalidRequest(
        "'team_id': you are in several teams; name the one the key belongs to (its budgets"
        " apply to the key).",
        param="team_id",
    )
