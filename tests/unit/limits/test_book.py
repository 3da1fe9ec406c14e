"""Which limits and budgets apply to whom: config and store merged (limits/book.py)."""

from __future__ import annotations

import datetime as dt

from tollway.auth.principal import Principal
from tollway.config.schema import LimitsConfig
from tollway.limits.backend import RateSpec
from tollway.limits.book import LimitBook
from tollway.store.records import BudgetRecord, RateLimitRecord

NOW = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)
CONFIG = LimitsConfig.model_validate(
    {
        "keys": {"k1": {"tpm": 100}},
        "models": {"gpt-4o": {"rpm": 5}},
        "deployments": {"dep": {"max_concurrent": 2}},
        "budgets": [
            {"scope": "org", "id": "*", "limit_usd": 1000},
            {"scope": "team", "id": "t1", "period": "day", "limit_usd": 10},
            {"scope": "org", "id": "acme", "limit_usd": 500},
        ],
    }
)
CALLER = Principal(kind="key", id="k1", user="u1", team="t1", teams=("t1", "t2"))


def test_an_empty_book_lets_everything_through() -> None:
    book = LimitBook.build(LimitsConfig())
    assert book.empty
    assert book.scopes(CALLER, "gpt-4o") == []
    assert book.budgets_for(CALLER) == []


def test_scopes_and_budgets_of_a_caller() -> None:
    book = LimitBook.build(CONFIG, team_orgs={"t1": "acme"})
    assert not book.empty
    assert book.scopes(CALLER, "gpt-4o") == [
        ("key:k1", RateSpec(tpm=100)),
        ("model:gpt-4o", RateSpec(rpm=5)),
    ]
    assert book.deployment("dep") == RateSpec(max_concurrent=2)
    assert book.deployment("other") is None
    charged = {(b.scope, b.scope_id, b.period) for b in book.budgets_for(CALLER)}
    assert charged == {("org", "*", "month"), ("team", "t1", "day"), ("org", "acme", "month")}
    # Another team's caller is charged only to the org-wide budget.
    stranger = Principal(kind="key", id="k9", team="t9")
    assert [(b.scope, b.scope_id) for b in book.budgets_for(stranger)] == [("org", "*")]


def test_store_entries_replace_config_ones_of_the_same_scope() -> None:
    budgets = [
        BudgetRecord("team", "t1", "day", 2_000_000, "shrink", 0.8, {"a": "b"}, NOW),
        BudgetRecord("user", "u1", "week", 3_000_000, "reject", None, {}, NOW),
    ]
    limits = [RateLimitRecord("key", "k1", None, 7, None, NOW)]
    book = LimitBook.build(CONFIG, budgets, limits)
    assert book.scopes(CALLER, "other-model") == [("key:k1", RateSpec(rpm=7))]
    team_day = [b for b in book.budgets_for(CALLER) if b.scope == "team"]
    assert len(team_day) == 1
    assert (team_day[0].limit_micros, team_day[0].policy) == (2_000_000, "shrink")
    assert team_day[0].downgrade == {"a": "b"} and team_day[0].soft_ratio == 0.8
    assert any(b.scope == "user" and b.period == "week" for b in book.budgets_for(CALLER))
