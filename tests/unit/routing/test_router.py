"""The router's plan: which candidates a request may try."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.config import validate_settings
from tollway.config.schema import RoutingConfig
from tollway.core.context import RequestContext
from tollway.core.errors import InvalidRequest
from tollway.core.types import ChatRequest, Message, ResponsesOnly
from tollway.routing.health import HealthBook
from tollway.routing.router import Router
from tollway.routing.table import build_routing_table

_CLAUDE: dict[str, Any] = {"provider": "anthropic", "model": "claude-sonnet-4-5", "api_key": "k"}
_NATIVE: dict[str, Any] = {"provider": "openai", "model": "gpt-4o", "api_key": "k"}
_COMPATIBLE: dict[str, Any] = {**_NATIVE, "api_base": "http://127.0.0.1:8000/v1"}
_SEARCH = ResponsesOnly("tools[0].type", "'tools[0].type' 'web_search' is OpenAI's own tool")


def _router(*groups: dict[str, Any]) -> Router:
    settings = validate_settings({"models": list(groups)}, source="test")
    return Router(build_routing_table(settings, None), HealthBook(RoutingConfig()), seed=1)


def _context(model: str, needs: ResponsesOnly | None = None) -> RequestContext:
    chat = ChatRequest(model=model, messages=[Message("user", "hi")], responses_only=needs)
    return RequestContext("req-1", "responses", model, {}, chat=chat)


def _planned(router: Router, ctx: RequestContext) -> list[str]:
    candidates, _, _ = router.plan(ctx, "chat")
    return [deployment.id for deployment, _ in candidates]


def test_what_only_the_responses_api_serves_goes_only_to_deployments_that_speak_it() -> None:
    router = _router(
        {
            "name": "mixed",
            "deployments": [
                {**_CLAUDE, "id": "claude"},
                {**_COMPATIBLE, "id": "vllm"},
                {**_NATIVE, "id": "native"},
            ],
        }
    )
    assert _planned(router, _context("mixed")) == ["claude", "vllm", "native"]
    assert _planned(router, _context("mixed", _SEARCH)) == ["native"]


def test_a_fallback_group_that_speaks_the_responses_api_serves_it() -> None:
    router = _router(
        {"name": "claude", "deployments": [{**_CLAUDE, "id": "claude"}], "fallbacks": ["openai"]},
        {"name": "openai", "deployments": [{**_NATIVE, "id": "native"}]},
    )
    assert _planned(router, _context("claude", _SEARCH)) == ["native"]


def test_no_deployment_that_speaks_it_is_a_400_naming_the_field() -> None:
    router = _router(
        {"name": "claude", "deployments": [{**_CLAUDE, "id": "claude"}, {**_COMPATIBLE}]}
    )
    with pytest.raises(InvalidRequest) as caught:
        router.plan(_context("claude", _SEARCH), "chat")
    assert caught.value.param == "tools[0].type"
    message = caught.value.message
    assert message.startswith("'tools[0].type' 'web_search' is OpenAI's own tool")
    assert "Model 'claude' has no deployment that speaks OpenAI's Responses API" in message
