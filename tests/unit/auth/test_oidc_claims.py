"""Verified OIDC claims become a principal: user, teams and role, as the issuer config says."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tollway.auth.oidc import claim, claim_strings, principal_from_claims
from tollway.config.schema import AuthConfig, OIDCIssuerConfig

ISSUER = "https://idp.example.com"


def config(**fields: Any) -> OIDCIssuerConfig:
    return OIDCIssuerConfig(issuer=ISSUER, audience=["https://tollway.test"], **fields)


def claims(**extra: Any) -> dict[str, Any]:
    return {"iss": ISSUER, "sub": "user-123", "aud": "https://tollway.test", **extra}


def test_identity_is_issuer_and_subject_and_user_is_the_user_claim() -> None:
    principal = principal_from_claims(config(), claims(email="ada@example.com"))
    assert principal.kind == "oidc"
    assert principal.id == f"oidc:{ISSUER}#user-123"
    assert principal.user == "ada@example.com"
    assert principal.allowed_models is None
    assert principal.role == "member"


def test_user_falls_back_to_subject_when_the_user_claim_is_missing_or_not_text() -> None:
    assert principal_from_claims(config(), claims()).user == "user-123"
    assert principal_from_claims(config(), claims(email="")).user == "user-123"
    assert principal_from_claims(config(), claims(email=["a@b.c"])).user == "user-123"
    named = principal_from_claims(
        config(user_claim="preferred_username"), claims(preferred_username="ada")
    )
    assert named.user == "ada"


def test_teams_come_from_a_string_or_a_list_and_the_first_is_the_team() -> None:
    listed = principal_from_claims(config(), claims(groups=["ml", "research", "ml", 7, ""]))
    assert listed.teams == ("ml", "research")
    assert listed.team == "ml"
    single = principal_from_claims(config(), claims(groups="research"))
    assert (single.team, single.teams) == ("research", ("research",))
    odd_values: list[Any] = [None, 3, {"ml": True}, []]
    for odd in odd_values:
        principal = principal_from_claims(config(), claims(groups=odd))
        assert (principal.team, principal.teams) == (None, ())
    no_claim = principal_from_claims(config(team_claim=None), claims(groups=["ml"]))
    assert no_claim.teams == ()


def test_admin_groups_make_an_admin_whatever_the_role_claim_says() -> None:
    issuer = config(admin_groups=["tollway-admins"], role_claim="roles", role_map={"v": "viewer"})
    principal = principal_from_claims(issuer, claims(groups=["ml", "tollway-admins"], roles="v"))
    assert principal.role == "admin"
    assert principal.team == "ml"


def test_the_highest_mapped_role_wins_and_unmapped_values_give_the_default() -> None:
    issuer = config(
        role_claim="roles",
        role_map={"reader": "viewer", "lead": "team_admin", "dev": "member"},
        default_role="viewer",
    )
    assert principal_from_claims(issuer, claims(roles=["reader", "lead", "dev"])).role == (
        "team_admin"
    )
    assert principal_from_claims(issuer, claims(roles="dev")).role == "member"
    assert principal_from_claims(issuer, claims(roles=["unknown"])).role == "viewer"
    assert principal_from_claims(issuer, claims()).role == "viewer"


def test_without_a_role_claim_the_default_role_applies() -> None:
    issuer = config(role_map={"lead": "team_admin"}, default_role="viewer")
    assert principal_from_claims(issuer, claims(roles=["lead"])).role == "viewer"


def test_claims_are_found_by_exact_name_first_then_by_dotted_path() -> None:
    nested = {"realm_access": {"roles": ["lead"]}, "https://tollway.example/groups": ["ml"]}
    assert claim(nested, "realm_access.roles") == ["lead"]
    assert claim(nested, "https://tollway.example/groups") == ["ml"]
    assert claim(nested, "realm_access.missing") is None
    assert claim(nested, "realm_access.roles.deeper") is None
    keycloak = config(role_claim="realm_access.roles", role_map={"lead": "team_admin"})
    assert principal_from_claims(keycloak, claims(**nested)).role == "team_admin"


def test_claim_strings_keep_order_and_drop_non_text() -> None:
    assert claim_strings(["b", "a", "b", None, 1]) == ("b", "a")
    assert claim_strings("a") == ("a",)
    assert claim_strings("") == ()
    assert claim_strings({"a": 1}) == ()


def test_issuer_config_refuses_symmetric_algorithms_and_repeated_issuers() -> None:
    with pytest.raises(ValidationError, match="asymmetric"):
        config(algorithms=["RS256", "HS256"])
    with pytest.raises(ValidationError, match="asymmetric"):
        config(algorithms=["none"])
    with pytest.raises(ValidationError, match=r"repeated: https://idp\.example\.com"):
        AuthConfig(oidc=[config(), config(user_claim="sub")])
