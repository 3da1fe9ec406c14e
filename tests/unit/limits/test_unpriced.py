"""``limits.unpriced: refuse``: under a budget, unpriced deployments are never candidates.

Admission decides (it knows which budgets apply); the router skips what admission ruled out.
"""

from __future__ import annotations

from typing import Any

import pytest

from tollway.auth.principal import Principal
from tollway.config.schema import RoutingConfig, Settings
from tollway.core.context import RequestContext
from tollway.core.errors import PermissionDenied
from tollway.limits.candidates import unpriced_warnings
from tollway.limits.memory import MemoryLimiter
from tollway.limits.service import LimitService
from tollway.limits.stage import Admission
from tollway.pricing.metering import Metering
from tollway.pricing.tokens import TokenCounter
from tollway.routing.health import HealthBook
from tollway.routing.router import Router
from tollway.routing.table import build_routing_table
from tollway.wire.openai_request import request_from_wire

KEY = Principal(kind="key", id="key_1")
PRICE = {"input": 2.5, "output": 10.0}
_BASE = {"provider": "openai", "api_base": "http://127.0.0.1:9/v1", "api_key": "k"}
UNPRICED = {**_BASE, "model": "house-model", "id": "unpriced"}
PRICED = {**_BASE, "model": "house-model", "id": "priced", "price": PRICE}
FREE = {**_BASE, "model": "house-model", "id": "free", "price": {"input": 0, "output": 0}}
KEY_BUDGET = {"scope": "key", "id": "key_1", "period": "day", "limit_usd": 5.0}

MODELS: list[dict[str, Any]] = [
    {"name": "mixed", "deployments": [UNPRICED, PRICED], "strategy": "priority"},
    {"name": "unpriced", "deployments": [UNPRICED]},
    {"name": "falling", "deployments": [{**UNPRICED, "id": "unpriced-2"}], "fallbacks": ["priced"]},
    {"name": "priced", "deployments": [PRICED | {"id": "priced-2"}]},
    {"name": "free", "deployments": [FREE]},
]


def _gateway(limits: dict[str, Any]) -> tuple[Admission, Router, LimitService]:
    settings = Settings.model_validate({"models": MODELS, "limits": limits})
    table = build_routing_table(settings, None)
    service = LimitService(settings.limits, MemoryLimiter(), None)
    admission = Admission(service, table, Metering(TokenCounter()).input_tokens)
    return admission, Router(table, HealthBook(RoutingConfig()), seed=1), service


def _context(model: str, principal: Principal = KEY) -> RequestContext:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10}
    return RequestContext(
        "req_1", "chat", model, {}, principal=principal, chat=request_from_wire(body)
    )


def _served_by(limits: dict[str, Any], model: str, principal: Principal = KEY) -> list[str]:
    """The deployments a request may try once admitted."""
    admission, router, _ = _gateway(limits)
    ctx = _context(model, principal)
    assert admission.on_request(ctx) is None  # admitted at once
    candidates, _, _ = router.plan(ctx, "chat")
    return [deployment.id for deployment, _ in candidates]


REFUSE = {"unpriced": "refuse", "budgets": [KEY_BUDGET]}


def test_under_a_budget_refuse_skips_unpriced_candidates() -> None:
    assert _served_by(REFUSE, "mixed") == ["priced"]


def test_under_a_budget_refuse_skips_an_unpriced_group_for_its_priced_fallback() -> None:
    assert _served_by(REFUSE, "falling") == ["priced-2"]


def test_a_model_priced_at_zero_is_priced_and_served() -> None:
    assert _served_by(REFUSE, "free") == ["free"]


def test_allow_is_the_default_and_keeps_unpriced_candidates() -> None:
    assert Settings.model_validate({}).limits.unpriced == "allow"
    assert _served_by({"budgets": [KEY_BUDGET]}, "mixed") == ["unpriced", "priced"]
    assert _served_by({"budgets": [KEY_BUDGET]}, "unpriced") == ["unpriced"]


def test_refuse_leaves_a_request_under_no_budget_alone() -> None:
    other = Principal(kind="key", id="key_2")  # the budget is key_1's
    assert _served_by(REFUSE, "mixed", other) == ["unpriced", "priced"]
    assert _served_by(REFUSE, "unpriced", other) == ["unpriced"]
    assert _served_by({"unpriced": "refuse"}, "unpriced") == ["unpriced"]


@pytest.mark.parametrize(
    "budget",
    [
        KEY_BUDGET,
        {"scope": "org", "id": "*", "period": "month", "limit_usd": 100.0},
        {"scope": "team", "id": "team_1", "period": "week", "limit_usd": 100.0},
        {"scope": "user", "id": "user_1", "period": "day", "limit_usd": 100.0},
    ],
)
def test_refuse_under_any_budget_with_only_unpriced_candidates_is_a_403_reserving_nothing(
    budget: dict[str, Any],
) -> None:
    admission, _, service = _gateway({"unpriced": "refuse", "budgets": [budget]})
    principal = Principal(kind="key", id="key_1", user="user_1", team="team_1")
    ctx = _context("unpriced", principal)
    with pytest.raises(PermissionDenied) as refused:
        admission.on_request(ctx)
    error = refused.value
    assert (error.status, error.code, error.param) == (403, "model_unpriced", "model")
    assert "'unpriced'" in error.message and "no price" in error.message
    assert "budget" in error.message
    assert ctx.ticket is None
    account = service.account(service.book.budgets_for(principal)[0])
    assert not service.limiter.known_spent(account)


def test_refuse_warns_of_models_only_unpriced_deployments_serve() -> None:
    settings = Settings.model_validate({"models": MODELS, "limits": {"unpriced": "refuse"}})
    warnings = unpriced_warnings(build_routing_table(settings, None))
    assert len(warnings) == 1  # "falling" falls back to a priced model
    assert "'unpriced'" in warnings[0] and "limits.unpriced" in warnings[0]
