"""The routing table: deployments resolved from config and the price catalog."""

from __future__ import annotations

from tollway.config import validate_settings
from tollway.pricing.catalog import PriceCatalog
from tollway.routing.table import build_routing_table


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
