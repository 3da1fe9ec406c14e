"""Candidate order under each strategy."""

from __future__ import annotations

import random
from collections import Counter

from tollway.config.schema import RoutingConfig
from tollway.core.types import Deployment, Price, UpstreamTimeouts
from tollway.routing.health import HealthBook
from tollway.routing.strategies import STRATEGIES, Candidate

TIMEOUTS = UpstreamTimeouts(1.0, 1.0, 1.0)


def _candidates(book: HealthBook, **deployments: dict[str, object]) -> list[Candidate]:
    made = []
    for ident, fields in deployments.items():
        deployment = Deployment(
            id=ident, provider="openai", model="m", api_base="http://x", timeouts=TIMEOUTS,
            **fields,  # type: ignore[arg-type]
        )  # fmt: skip
        made.append((deployment, book.of(ident)))
    return made


def _ids(ordered: list[Candidate]) -> list[str]:
    return [deployment.id for deployment, _ in ordered]


def test_priority_keeps_config_order() -> None:
    book = HealthBook(RoutingConfig())
    candidates = _candidates(book, a={}, b={}, c={})
    assert _ids(STRATEGIES["priority"](candidates, random.Random(1), 0.0)) == ["a", "b", "c"]


def test_weighted_first_picks_follow_the_weights() -> None:
    book = HealthBook(RoutingConfig())
    candidates = _candidates(book, a={"weight": 9.0}, b={"weight": 1.0})
    rng = random.Random(7)
    firsts = Counter(_ids(STRATEGIES["weighted"](candidates, rng, 0.0))[0] for _ in range(10_000))
    assert 0.88 < firsts["a"] / 10_000 < 0.92
    # Whatever comes first, every candidate stays in the list for failover.
    assert sorted(_ids(STRATEGIES["weighted"](candidates, rng, 0.0))) == ["a", "b"]


def test_weighted_with_a_zero_weight_never_picks_it_first() -> None:
    book = HealthBook(RoutingConfig())
    candidates = _candidates(book, a={"weight": 0.0}, b={"weight": 1.0})
    rng = random.Random(3)
    assert all(_ids(STRATEGIES["weighted"](candidates, rng, 0.0))[0] == "b" for _ in range(1000))


def test_latency_orders_by_ttft_and_measures_the_unknown_first() -> None:
    book = HealthBook(RoutingConfig())
    candidates = _candidates(book, slow={}, fast={}, new={})
    book.of("slow").ewma_ttft = 0.5
    book.of("fast").ewma_ttft = 0.05
    assert _ids(STRATEGIES["latency"](candidates, random.Random(1), 0.0)) == ["new", "fast", "slow"]


def test_latency_explores_a_share_of_requests() -> None:
    book = HealthBook(RoutingConfig())
    candidates = _candidates(book, slow={}, fast={})
    book.of("slow").ewma_ttft = 0.5
    book.of("fast").ewma_ttft = 0.05
    rng = random.Random(11)
    firsts = Counter(_ids(STRATEGIES["latency"](candidates, rng, 0.1))[0] for _ in range(10_000))
    assert 0.08 < firsts["slow"] / 10_000 < 0.12


def test_cost_puts_the_cheapest_first_and_the_unpriced_last() -> None:
    book = HealthBook(RoutingConfig())
    candidates = _candidates(
        book,
        dear={"price": Price(5.0, 15.0)},
        free={},
        cheap={"price": Price(0.15, 0.6)},
    )
    assert _ids(STRATEGIES["cost"](candidates, random.Random(1), 0.0)) == ["cheap", "dear", "free"]


def test_least_busy_goes_to_the_fewest_in_flight() -> None:
    book = HealthBook(RoutingConfig())
    candidates = _candidates(book, a={}, b={}, c={})
    book.of("a").in_flight = 4
    book.of("b").in_flight = 1
    book.of("c").in_flight = 2
    assert _ids(STRATEGIES["least-busy"](candidates, random.Random(1), 0.0)) == ["b", "c", "a"]
