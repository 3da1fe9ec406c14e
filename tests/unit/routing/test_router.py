"""The router's plan: which candidates a request may try."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from tollway.auth.principal import Principal
from tollway.config import validate_settings
from tollway.config.schema import RoutingConfig
from tollway.core.context import RequestContext
from tollway.core.errors import InvalidRequest
from tollway.core.types import ChatRequest, Message, ResponsesOnly
from tollway.pricing.tokens import TokenCounter
from tollway.routing.health import HealthBook
from tollway.routing.router import Router
from tollway.routing.table import build_routing_table
from tollway.wire import anthropic_request

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


def _long_conversation(truncation: Literal["auto", "disabled"]) -> RequestContext:
    messages = [Message("system", "Be brief.")]
    for turn in range(10):
        messages += [Message("user", f"question {turn} " * 40), Message("assistant", "x " * 80)]
    messages.append(Message("user", "the latest question"))
    chat = ChatRequest(model="small", messages=messages, max_tokens=50, truncation=truncation)
    return RequestContext("req-1", "responses", "small", {}, chat=chat)


def test_truncation_auto_drops_the_oldest_turns_to_fit_the_largest_window() -> None:
    router = _router(
        {
            "name": "small",
            "deployments": [
                {**_COMPATIBLE, "id": "tiny", "context_window": 100},
                {**_COMPATIBLE, "id": "small", "context_window": 600},
            ],
        }
    )
    with pytest.raises(InvalidRequest) as caught:
        router.plan(_long_conversation("disabled"), "chat")
    assert caught.value.code == "context_length_exceeded"
    ctx = _long_conversation("auto")
    assert _planned(router, ctx) == ["small"]  # the tiny window cannot hold even the rest
    assert ctx.chat is not None and ctx.chat.kept_messages is not None
    messages = ctx.chat.messages
    assert messages[0].content == "Be brief." and messages[-1].content == "the latest question"
    assert messages[1].role == "user" and 3 < len(messages) < 22
    assert ctx.chat.kept_messages == [0, *range(22 - len(messages) + 1, 22)]
    assert ctx.input_tokens_estimate is not None and ctx.input_tokens_estimate + 50 <= 600


def test_truncation_auto_is_a_400_when_the_latest_turn_alone_does_not_fit() -> None:
    router = _router({"name": "small", "deployments": [{**_COMPATIBLE, "context_window": 60}]})
    ctx = _long_conversation("auto")
    with pytest.raises(InvalidRequest) as caught:
        router.plan(ctx, "chat")
    assert caught.value.code == "context_length_exceeded"
    assert "latest turn alone" in caught.value.message
    assert ctx.chat is not None and len(ctx.chat.messages) == 22  # nothing dropped


def _chain(**windows: int | None) -> Router:
    """Groups a -> b -> c (c back to a), one deployment each, with the windows given."""

    def group(name: str, fallback: str) -> dict[str, Any]:
        deployment = {**_COMPATIBLE, "id": name, "context_window": windows.get(name)}
        return {"name": name, "deployments": [deployment], "fallbacks": [fallback]}

    return _router(group("a", "b"), group("b", "c"), group("c", "a"))


def test_a_fallbacks_fallbacks_are_candidates_too() -> None:
    router = _chain()
    assert _planned(router, _context("a")) == ["a", "b", "c"]
    assert _planned(router, _context("c")) == ["c", "a", "b"]


def test_a_fallback_chain_stops_at_a_group_the_caller_may_not_use() -> None:
    router = _chain()
    ctx = _context("a")
    ctx.principal = Principal(kind="key", id="k", allowed_models=("a", "c"))
    assert _planned(router, ctx) == ["a"]  # c is reached only through b
    ctx.principal = Principal(kind="key", id="k", allowed_models=("a", "b"))
    assert _planned(router, ctx) == ["a", "b"]


def test_a_window_deep_in_the_chain_is_checked() -> None:
    router = _chain(c=64)
    assert router.windowed("a") and router.windowed("b") and router.windowed("c")
    long = _context("a")
    assert long.chat is not None
    long.chat.messages = [Message("user", "word " * 200)]
    assert _planned(router, long) == ["a", "b"]


def _with_url_document(text: str) -> RequestContext:
    """A Claude request of ``text`` and a PDF by URL (its pages unknown until fetched)."""
    document = {"type": "document", "source": {"type": "url", "url": "https://example.com/t.pdf"}}
    content = [document, {"type": "text", "text": text}]
    body = {
        "model": "claude",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": content}],
    }
    chat = anthropic_request.request_from_wire(body)
    return RequestContext("req-1", "messages", "claude", {}, chat=chat)


def test_a_window_skips_or_refuses_a_url_document_only_when_it_surely_does_not_fit() -> None:
    group = {
        "name": "claude",
        "deployments": [
            {**_CLAUDE, "id": "small", "context_window": 8_000},
            {**_CLAUDE, "id": "large", "context_window": 20_000},
        ],
        "strategy": "priority",
    }
    settings = validate_settings({"models": [group]}, source="test")
    table = build_routing_table(settings, None)
    router = Router(table, HealthBook(RoutingConfig()), seed=1, counter=TokenCounter())
    text = " ".join(f"toll road {i} is open." for i in range(2_000))  # ~12k tokens
    # At the most its PDF costs (600 pages) no window holds it; at the least, the large one.
    ctx = _with_url_document(text)
    assert _planned(router, ctx) == ["large"]
    assert ctx.input_tokens_estimate is not None and ctx.input_tokens_estimate > 1_000_000
    # Its text alone is over every window: refused, saying it needs at least that.
    with pytest.raises(InvalidRequest) as caught:
        router.plan(_with_url_document(text * 2), "chat")
    assert caught.value.code == "context_length_exceeded"
    assert "at least" in caught.value.message


def _priced(ident: str, rates: tuple[float, float], tier: tuple[float, float] | None = None) -> Any:
    price: dict[str, Any] = {"input": rates[0], "output": rates[1]}
    if tier is not None:
        price["tiers"] = [{"above_input_tokens": 1_000, "input": tier[0], "output": tier[1]}]
    return {**_NATIVE, "id": ident, "price": price}


def _prompt(model: str, characters: int) -> RequestContext:
    chat = ChatRequest(model=model, messages=[Message("user", "x" * characters)])
    return RequestContext("req-1", "chat", model, {}, chat=chat)


def test_cost_ranks_a_long_request_by_the_long_context_tier_it_will_pay() -> None:
    # The cost strategy ranked by the base price whatever the request's length: a request
    # above a long-context tier's threshold went first to the deployment whose tier made it
    # the dearest.
    tiered = _priced("tiered", (1.0, 2.0), (10.0, 20.0))
    flat = _priced("flat", (2.0, 4.0))
    router = _router(
        {"name": "cheap", "strategy": "cost", "deployments": [flat, tiered]},
        {"name": "front", "deployments": [{**_CLAUDE, "id": "front"}], "fallbacks": ["cheap"]},
    )
    assert _planned(router, _prompt("cheap", 400)) == ["tiered", "flat"]  # ~100 tokens
    assert _planned(router, _prompt("cheap", 8_000)) == ["flat", "tiered"]  # ~2,000 tokens
    # A fallback group with a tier ranks by it too.
    assert _planned(router, _prompt("front", 8_000)) == ["front", "flat", "tiered"]
    assert _planned(router, _prompt("front", 400)) == ["front", "tiered", "flat"]
