"""The candidates admission prices a request at: its group's and its fallback chain's."""

from __future__ import annotations

from tollway.config import validate_settings
from tollway.limits.candidates import candidates_of
from tollway.routing.table import build_routing_table


def test_a_fallbacks_fallback_is_priced_for() -> None:
    def group(name: str, price: float, fallbacks: list[str]) -> dict[str, object]:
        deployment = {"provider": "openai", "model": "m", "api_key": "k", "id": name,
                      "price": {"input": price, "output": price}}  # fmt: skip
        return {"name": name, "deployments": [deployment], "fallbacks": fallbacks}

    models = [group("a", 1, ["b"]), group("b", 2, ["c"]), group("c", 30, ["a"])]
    table = build_routing_table(validate_settings({"models": models}, source="test"), None)
    candidates = candidates_of(table)
    assert candidates["a"].fallbacks == ("b", "c")
    assert sorted(price.input for price, _ in candidates["a"].prices) == [1, 2, 30]
    assert candidates["c"].fallbacks == ("a", "b")
