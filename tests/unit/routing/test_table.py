"""The routing table: deployments resolved from config and the price catalog."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tollway.config import validate_settings
from tollway.config.loader import ConfigError
from tollway.pricing.catalog import PriceCatalog
from tollway.routing.table import RoutingTable, build_routing_table


def _deployment(**config: object) -> dict[str, object]:
    return {"provider": "openai", "model": "gpt-4o", "api_key": "env:OPENAI_API_KEY", **config}


def test_a_deployment_with_its_own_price_keeps_the_catalogs_context_window_and_max_output() -> None:
    catalog = PriceCatalog.load()
    listed = catalog.lookup("openai", "gpt-4o")
    assert listed is not None and listed.context_window and listed.max_output
    settings = validate_settings(
        {
            "models": [
                {"name": "listed", "deployments": [_deployment()]},
                {
                    "name": "discounted",
                    "deployments": [_deployment(price={"input": 1, "output": 4})],
                },
            ]
        },
        source="test",
    )
    table = build_routing_table(settings, None, catalog)
    (discounted,) = table.candidates("discounted", "chat")
    assert discounted.price is not None and discounted.price.input == 1
    assert (discounted.context_window, discounted.max_output) == (
        listed.context_window,
        listed.max_output,
    )


def test_a_deployment_states_its_own_context_window_over_the_catalogs() -> None:
    settings = validate_settings(
        {
            "models": [
                {"name": "m", "deployments": [_deployment(context_window=8192, max_output=512)]}
            ]
        },
        source="test",
    )
    (deployment,) = build_routing_table(settings, None, PriceCatalog.load()).candidates("m", "chat")
    assert (deployment.context_window, deployment.max_output) == (8192, 512)


def test_only_openais_own_api_speaks_the_responses_api_unless_config_says() -> None:
    azure = {"provider": "azure_openai", "api_base": "https://x.openai.azure.com"}
    rows = {
        "official": _deployment(),
        "regional": _deployment(api_base="https://eu.api.openai.com/v1"),
        "compatible": _deployment(api_base="http://127.0.0.1:8000/v1"),
        "vllm": _deployment(provider="vllm"),
        "vllm-set": _deployment(provider="vllm", responses_api=True),
        "official-off": _deployment(responses_api=False),
        "azure": _deployment(**azure, api_version="v1"),
        "azure-set": _deployment(**azure, api_version="v1", responses_api=True),
    }
    models = [{"name": name, "deployments": [row]} for name, row in rows.items()]
    table = build_routing_table(validate_settings({"models": models}, source="test"), None)
    speaks = {name: table.candidates(name, "chat")[0].responses_api for name in rows}
    assert speaks == {
        "official": True, "regional": True, "compatible": False, "vllm": False,
        "vllm-set": True, "official-off": False, "azure": False, "azure-set": True,
    }  # fmt: skip


def test_a_family_without_a_responses_api_cannot_be_given_one() -> None:
    claude = {"provider": "anthropic", "model": "claude", "api_key": "env:K"}
    with pytest.raises(ConfigError, match="cannot set responses_api"):
        validate_settings(
            {"models": [{"name": "c", "deployments": [{**claude, "responses_api": True}]}]},
            source="test",
        )


def _chained(*groups: tuple[str, list[str]]) -> RoutingTable:
    """A table of one-deployment groups, each with the fallbacks given."""
    models = [
        {"name": name, "deployments": [_deployment(id=name)], "fallbacks": fallbacks}
        for name, fallbacks in groups
    ]
    return build_routing_table(validate_settings({"models": models}, source="test"), None)


def _names(
    table: RoutingTable, model: str, may_use: Callable[[str], bool] | None = None
) -> list[str]:
    return [group.name for group in table.fallback_chain(model, may_use)]


def test_fallbacks_are_followed_breadth_first_in_the_order_written() -> None:
    table = _chained(
        ("a", ["b", "c"]), ("b", ["d"]), ("c", ["e", "d"]), ("d", ["f"]), ("e", []), ("f", [])
    )
    assert _names(table, "a") == ["b", "c", "d", "e", "f"]
    assert _names(table, "b") == ["d", "f"]
    assert _names(table, "f") == []


def test_a_cycle_of_fallbacks_visits_each_group_once() -> None:
    table = _chained(("a", ["b"]), ("b", ["c", "a"]), ("c", ["a", "b"]))
    assert _names(table, "a") == ["b", "c"]
    assert _names(table, "b") == ["c", "a"]
    assert _names(table, "c") == ["a", "b"]


def test_the_walk_does_not_go_through_a_group_the_caller_may_not_use() -> None:
    table = _chained(("a", ["b", "d"]), ("b", ["c"]), ("c", []), ("d", ["e"]), ("e", ["c"]))
    assert _names(table, "a") == ["b", "d", "c", "e"]
    assert _names(table, "a", lambda name: name != "b") == ["d", "e", "c"]
    assert _names(table, "a", lambda name: name not in ("b", "e")) == ["d"]
    # A group reached another way is still followed; only its own way is barred.
    assert _names(table, "a", lambda name: name != "d") == ["b", "c"]
    # The chain computed at load is the one a caller who may use everything gets.
    assert table.fallback_chain("a", lambda name: True) is table.fallback_chain("a")
