"""Admin API of budgets and rate limits, with each budget's spend in its current period.

Admins set and remove; anyone may read the budgets and limits that apply to themselves
(their key, their user, their teams, the organisation). A change applies on this gateway
at once and on other replicas when the change feed tells them (PostgreSQL; within moments),
else at their next reconcile (``auth.reconcile_interval``).
Budgets and limits from the config file are shown too (``source: config``); the store's
entry of the same scope, id (and period) replaces the config's.
"""

from __future__ import annotations

from typing import Any

from tollway.admin import bodies
from tollway.admin.access import require_role
from tollway.admin.call import AdminCall, Query, Route
from tollway.auth.principal import Principal
from tollway.limits.backend import MICRO, nearest_micros
from tollway.limits.book import LimitBook
from tollway.limits.budget import Budget
from tollway.store import BudgetRecord, RateLimitRecord


def _visible(principal: Principal, scope: str, scope_id: str) -> bool:
    if principal.has_role("admin"):
        return True
    if scope == "org":
        return True
    if scope == "key":  # kept by the rotation chain's first key (limits/book.py)
        return scope_id == (principal.lineage or principal.id)
    if scope == "user":
        return scope_id == principal.user
    if scope == "team":
        return scope_id in principal.teams or scope_id == principal.team
    return scope in ("model", "deployment")


def _book_id(book: LimitBook, scope: str, scope_id: str) -> str:
    """The id the book keeps ``scope_id`` by: a key's by its rotation chain's first key."""
    return book.key_account(scope_id) if scope == "key" else scope_id


async def _budget_rows(call: AdminCall, budgets: list[Budget]) -> list[dict[str, Any]]:
    service = call.gateway.limits
    accounts = [service.account(budget) for budget in budgets]
    states = {s.account: s for s in await service.accounts(accounts)}
    book = service.book
    stored = {
        (b.scope, _book_id(book, b.scope, b.scope_id), b.period) for b in service.stored_budgets()
    }
    rows = []
    for budget, account in zip(budgets, accounts, strict=True):
        state = states[account]
        left = budget.limit_micros - state.spent_micros - state.reserved_micros
        rows.append(
            {
                "scope": budget.scope,
                "scope_id": budget.scope_id,
                "period": budget.period,
                "period_key": account[len(budget.scope) + len(budget.scope_id) + 2 :],
                "limit_usd": budget.limit_micros / MICRO,
                "spent_usd": state.spent_micros / MICRO,
                "reserved_usd": state.reserved_micros / MICRO,
                "remaining_usd": max(0, left) / MICRO,
                "used": round(state.spent_micros / budget.limit_micros, 4)
                if budget.limit_micros
                else None,
                "policy": budget.policy,
                "soft_limit": budget.soft_ratio,
                "downgrade": dict(budget.downgrade),
                "source": "store"
                if (budget.scope, budget.scope_id, budget.period) in stored
                else "config",
            }
        )
    return rows


async def list_budgets(call: AdminCall) -> dict[str, Any]:
    require_role(call.principal, "viewer")
    query = call.request.query
    book = call.gateway.limits.book
    wanted = query.get("scope_id")
    budgets = [
        b
        for b in book.every_budget()
        if _visible(call.principal, b.scope, b.scope_id)
        and query.get("scope", b.scope) == b.scope
        and (wanted is None or _book_id(book, b.scope, wanted) == b.scope_id)
    ]
    budgets.sort(key=lambda b: (b.scope, b.scope_id, b.period))
    return {"data": await _budget_rows(call, budgets)}


async def put_budget(call: AdminCall) -> dict[str, Any]:
    require_role(call.principal, "admin")
    body = await call.body(bodies.BudgetPut)
    gateway = call.gateway
    before = await _stored_budget(call, body.scope, body.scope_id, body.period)
    record = await gateway.store.limits.put_budget(
        body.scope, body.scope_id, body.period, nearest_micros(body.limit_usd),
        policy=body.policy, soft_ratio=body.soft_limit, downgrade=body.downgrade,
    )  # fmt: skip
    previous = None if before is None else _budget_settings(before)
    await gateway.identity.audit(
        call.actor, "budget.put", "budget", f"{record.scope}:{record.scope_id}:{record.period}",
        {**_budget_settings(record), "previous": previous},
    )  # fmt: skip
    await gateway.fleet.limits_changed(f"budget:{record.scope}:{record.scope_id}:{record.period}")
    book = gateway.limits.book
    scope_id = _book_id(book, record.scope, record.scope_id)
    budget = next(
        b
        for b in book.every_budget()
        if (b.scope, b.scope_id, b.period) == (record.scope, scope_id, record.period)
    )
    return (await _budget_rows(call, [budget]))[0]


async def delete_budget(call: AdminCall) -> None:
    require_role(call.principal, "admin")
    scope, scope_id, period = call.param("scope"), call.param("scope_id"), call.param("period")
    before = await _stored_budget(call, scope, scope_id, period)
    await call.gateway.store.limits.delete_budget(scope, scope_id, period)
    await call.gateway.identity.audit(
        call.actor, "budget.delete", "budget", f"{scope}:{scope_id}:{period}",
        {"previous": None if before is None else _budget_settings(before)},
    )  # fmt: skip
    await call.gateway.fleet.limits_changed(f"budget:{scope}:{scope_id}:{period}")


def _limit_row(scope: str, scope_id: str, spec: Any, source: str) -> dict[str, Any]:
    return {
        "scope": scope,
        "scope_id": scope_id,
        "tpm": spec.tpm,
        "rpm": spec.rpm,
        "max_concurrent": spec.max_concurrent,
        "source": source,
    }


async def list_limits(call: AdminCall) -> dict[str, Any]:
    require_role(call.principal, "viewer")
    service = call.gateway.limits
    book = service.book
    stored = {(r.scope, _book_id(book, r.scope, r.scope_id)) for r in service.stored_limits()}
    rows = [
        _limit_row(scope, scope_id, spec, "store" if (scope, scope_id) in stored else "config")
        for scope, specs in sorted(service.book.limits.items())
        for scope_id, spec in sorted(specs.items())
        if _visible(call.principal, scope, scope_id)
    ]
    return {"data": rows}


async def put_limit(call: AdminCall) -> dict[str, Any]:
    require_role(call.principal, "admin")
    body = await call.body(bodies.LimitPut)
    gateway = call.gateway
    before = await _stored_limit(call, body.scope, body.scope_id)
    record = await gateway.store.limits.put_limit(
        body.scope, body.scope_id, tpm=body.tpm, rpm=body.rpm, max_concurrent=body.max_concurrent
    )
    previous = None if before is None else _limit_settings(before)
    await gateway.identity.audit(
        call.actor, "limit.put", "limit", f"{record.scope}:{record.scope_id}",
        {**_limit_settings(record), "previous": previous},
    )  # fmt: skip
    await gateway.fleet.limits_changed(f"limit:{record.scope}:{record.scope_id}")
    return _limit_row(record.scope, record.scope_id, record, "store")


async def delete_limit(call: AdminCall) -> None:
    require_role(call.principal, "admin")
    scope, scope_id = call.param("scope"), call.param("scope_id")
    before = await _stored_limit(call, scope, scope_id)
    await call.gateway.store.limits.delete_limit(scope, scope_id)
    await call.gateway.identity.audit(
        call.actor, "limit.delete", "limit", f"{scope}:{scope_id}",
        {"previous": None if before is None else _limit_settings(before)},
    )  # fmt: skip
    await call.gateway.fleet.limits_changed(f"limit:{scope}:{scope_id}")


# The audit trail says what a change replaced, not only what it set: the stored settings
# before it (None: there were none in the store), read just before the change.


async def _stored_budget(
    call: AdminCall, scope: str, scope_id: str, period: str
) -> BudgetRecord | None:
    stored = await call.gateway.store.limits.budgets(scope=scope, scope_id=scope_id)
    return next((budget for budget in stored if budget.period == period), None)


def _budget_settings(record: BudgetRecord) -> dict[str, Any]:
    return {
        "limit_usd": record.limit_micros / MICRO,
        "policy": record.policy,
        "soft_limit": record.soft_ratio,
        "downgrade": dict(record.downgrade),
    }


async def _stored_limit(call: AdminCall, scope: str, scope_id: str) -> RateLimitRecord | None:
    stored = await call.gateway.store.limits.limits(scope=scope)
    return next((limit for limit in stored if limit.scope_id == scope_id), None)


def _limit_settings(record: RateLimitRecord) -> dict[str, Any]:
    return {"tpm": record.tpm, "rpm": record.rpm, "max_concurrent": record.max_concurrent}


LIMIT_ROUTES = [
    Route(
        "GET",
        "/admin/budgets",
        list_budgets,
        "Budgets with their spend this period",
        query=(
            Query("scope", "Budgets of this scope: key, user, team or org"),
            Query("scope_id", "Budgets of this key, user or team id, or organisation"),
        ),
    ),
    Route(
        "PUT", "/admin/budgets", put_budget, "Set (create or replace) a budget", bodies.BudgetPut
    ),
    Route(
        "DELETE",
        "/admin/budgets/{scope}/{scope_id}/{period}",
        delete_budget,
        "Remove a budget (its spend history stays)",
        status=204,
    ),
    Route("GET", "/admin/limits", list_limits, "Rate limits (tokens, requests, concurrency)"),
    Route(
        "PUT", "/admin/limits", put_limit, "Set (create or replace) rate limits", bodies.LimitPut
    ),
    Route(
        "DELETE",
        "/admin/limits/{scope}/{scope_id}",
        delete_limit,
        "Remove a scope's rate limits",
        status=204,
    ),
]
