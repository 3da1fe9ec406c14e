"""Which rate limits and budgets apply to a request: config and store, merged in memory.

Built at start and again whenever the store is re-read (``auth.reconcile_interval``), so
the request path only looks things up in dicts. A store entry (set through the admin API)
replaces the config entry of the same scope and id.

Key-scoped entries go by the key's rotation chain (``KeyRecord.lineage``: its first key's
id), whichever key of the chain they name: a rotated key, and its old secret during the
grace period, take from one account, not one each, so rotating escapes no budget or limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tollway.auth.principal import Principal
from tollway.config.schema import LimitsConfig, RateLimitConfig
from tollway.limits.backend import RateSpec, nearest_micros
from tollway.limits.budget import Budget
from tollway.store.records import BudgetRecord, RateLimitRecord


def _spec(config: RateLimitConfig | RateLimitRecord) -> RateSpec:
    return RateSpec(tpm=config.tpm, rpm=config.rpm, max_concurrent=config.max_concurrent)


@dataclass(frozen=True, slots=True)
class LimitBook:
    """Rate limits by scope and id, budgets by scope and id."""

    limits: Mapping[str, Mapping[str, RateSpec]] = field(default_factory=dict)
    """``{"key": {key_id: spec}, "user": ..., "team": ..., "model": ..., "deployment": ...}``"""
    budgets: Mapping[tuple[str, str], tuple[Budget, ...]] = field(default_factory=dict)
    team_orgs: Mapping[str, str] = field(default_factory=dict)
    """Team id -> its organisation (``org`` budgets by name)."""
    key_lineages: Mapping[str, str] = field(default_factory=dict)
    """Rotated key id -> its chain's first key id (key-scoped entries are kept by that)."""

    @classmethod
    def build(
        cls,
        config: LimitsConfig,
        budgets: Sequence[BudgetRecord] = (),
        limits: Sequence[RateLimitRecord] = (),
        team_orgs: Mapping[str, str] | None = None,
        key_lineages: Mapping[str, str] | None = None,
    ) -> LimitBook:
        """The book of ``config`` with the store's ``budgets`` and ``limits`` over it;
        ``key_lineages`` maps rotated keys to their chain's first (``KeyRepository.lineages``)."""
        lineages = dict(key_lineages or {})

        def book_id(scope: str, given: str) -> str:
            return lineages.get(given, given) if scope == "key" else given

        by_scope: dict[str, dict[str, RateSpec]] = {
            "key": {book_id("key", k): _spec(v) for k, v in config.keys.items()},
            "user": {k: _spec(v) for k, v in config.users.items()},
            "team": {k: _spec(v) for k, v in config.teams.items()},
            "model": {k: _spec(v) for k, v in config.models.items()},
            "deployment": {k: _spec(v) for k, v in config.deployments.items()},
        }
        for record in limits:
            by_scope[record.scope][book_id(record.scope, record.scope_id)] = _spec(record)
        merged: dict[tuple[str, str, str], Budget] = {}
        for b in config.budgets:
            b_id = book_id(b.scope, b.id)
            merged[(b.scope, b_id, b.period)] = Budget(
                b.scope, b_id, b.period, nearest_micros(b.limit_usd), b.policy, b.soft_limit,
                dict(b.downgrade),
            )  # fmt: skip
        for r in budgets:
            r_id = book_id(r.scope, r.scope_id)
            merged[(r.scope, r_id, r.period)] = Budget(
                r.scope, r_id, r.period, r.limit_micros, r.policy, r.soft_ratio,
                dict(r.downgrade),
            )  # fmt: skip
        grouped: dict[tuple[str, str], list[Budget]] = {}
        for (scope, scope_id, _), budget in merged.items():
            grouped.setdefault((scope, scope_id), []).append(budget)
        return cls(
            limits={scope: specs for scope, specs in by_scope.items() if specs},
            budgets={key: tuple(value) for key, value in grouped.items()},
            team_orgs=dict(team_orgs or {}),
            key_lineages=lineages,
        )

    def key_account(self, key_id: str) -> str:
        """The id key-scoped entries of key ``key_id`` are kept by: its chain's first key."""
        return self.key_lineages.get(key_id, key_id)

    @property
    def empty(self) -> bool:
        """Nothing to enforce: the admission stage lets every request straight through."""
        return not self.limits and not self.budgets

    def scopes(self, principal: Principal | None, model: str) -> list[tuple[str, RateSpec]]:
        """The rate-limited scopes a request of ``principal`` for ``model`` takes from."""
        limits = self.limits
        scopes: list[tuple[str, RateSpec]] = []
        if principal is not None:
            key = principal.lineage or principal.id
            if (keys := limits.get("key")) and (spec := keys.get(key)):
                scopes.append(("key:" + key, spec))
            user, team = principal.user, principal.team
            if user and (users := limits.get("user")) and (spec := users.get(user)):
                scopes.append(("user:" + user, spec))
            if team and (teams := limits.get("team")) and (spec := teams.get(team)):
                scopes.append(("team:" + team, spec))
        if (models := limits.get("model")) and (spec := models.get(model)):
            scopes.append(("model:" + model, spec))
        return scopes

    def deployment(self, deployment_id: str) -> RateSpec | None:
        """The limits of one deployment, if it has any."""
        deployments = self.limits.get("deployment")
        return None if deployments is None else deployments.get(deployment_id)

    def budgets_for(self, principal: Principal | None) -> list[Budget]:
        """Every budget a request of ``principal`` is charged to."""
        budgets = self.budgets
        if not budgets:
            return []
        found: list[Budget] = list(budgets.get(("org", "*"), ()))
        if principal is None:
            return found
        found += budgets.get(("key", principal.lineage or principal.id), ())
        if principal.user:
            found += budgets.get(("user", principal.user), ())
        if principal.team:
            found += budgets.get(("team", principal.team), ())
            org = self.team_orgs.get(principal.team)
            if org:
                found += budgets.get(("org", org), ())
        return found

    def every_budget(self) -> list[Budget]:
        """All budgets (to seed their accounts' spend from the store)."""
        return [budget for group in self.budgets.values() for budget in group]
