"""Candidate order under each strategy."""

from __future__ import annotations

import random
from collections import Counter

from tollway.config.schema import RoutingConfig
from tollway.core.types import Deployment, Price, UpstreamTimeouts
from tollway.pricing.catalog import PriceCatalog
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
    assert _ids(STRATEGIES["priority"](candidates, random.Random(1), 0.0, False)) == ["a", "b", "c"]


def test_weighted_first_picks_follow_the_weights() -> None:
    book = HealthBook(RoutingConfig())
    candidates = _candidates(book, a={"weight": 9.0}, b={"weight": 1.0})
    rng = random.Random(7)
    firsts = Counter(
        _ids(STRATEGIES["weighted"](candidates, rng, 0.0, False))[0] for _ in range(10_000)
    )
    assert 0.88 < firsts["a"] / 10_000 < 0.92
    # Whatever comes first, every candidate stays in the list for failover.
    assert sorted(_ids(STRATEGIES["weighted"](candidates, rng, 0.0, False))) == ["a", "b"]


def test_weighted_spreads_an_unavailable_picks_share_over_the_rest_by_weight() -> None:
    # 'a' (half the weight) is unavailable: the pipeline passes over it to the next in the
    # order. Its share went to 'b', its neighbour (75/25); the rest by weight is 50/50.
    book = HealthBook(RoutingConfig())
    candidates = _candidates(
        book, a={"weight": 2.0}, b={"weight": 1.0}, c={"weight": 1.0}, d={"weight": 0.0}
    )
    rng = random.Random(5)
    served: Counter[str] = Counter()
    for _ in range(10_000):
        ordered = _ids(STRATEGIES["weighted"](candidates, rng, 0.0, False))
        assert sorted(ordered) == ["a", "b", "c", "d"] and ordered[-1] == "d"
        served[next(ident for ident in ordered if ident != "a")] += 1
    assert 0.47 < served["b"] / 10_000 < 0.53, served


def test_weighted_with_a_zero_weight_never_picks_it_first() -> None:
    book = HealthBook(RoutingConfig())
    candidates = _candidates(book, a={"weight": 0.0}, b={"weight": 1.0})
    rng = random.Random(3)
    assert all(
        _ids(STRATEGIES["weighted"](candidates, rng, 0.0, False))[0] == "b" for _ in range(1000)
    )


def test_latency_orders_streams_by_ttft_and_measures_the_unknown_first() -> None:
    book = HealthBook(RoutingConfig())
    candidates = _candidates(book, slow={}, fast={}, new={})
    book.of("slow").ewma_ttft = 0.5
    book.of("fast").ewma_ttft = 0.05
    ordered = STRATEGIES["latency"](candidates, random.Random(1), 0.0, True)
    assert _ids(ordered) == ["new", "fast", "slow"]


def test_latency_measures_the_unknown_with_one_request_at_a_time() -> None:
    book = HealthBook(RoutingConfig())
    candidates = _candidates(book, slow={}, fast={}, new={}, newer={})
    book.of("slow").ewma_ttft = 0.5
    book.of("fast").ewma_ttft = 0.05
    book.of("new").in_flight = 2  # its first samples are on their way
    book.of("newer").in_flight = 1
    ordered = STRATEGIES["latency"](candidates, random.Random(1), 0.0, True)
    assert _ids(ordered) == ["fast", "slow", "newer", "new"]


def test_latency_ranks_answers_in_one_piece_by_their_own_time() -> None:
    # 'long' serves long answers in one piece but starts streams fastest: each kind of
    # request is ranked by its own measure, never by the other's.
    book = HealthBook(RoutingConfig(latency_alpha=1.0))
    candidates = _candidates(book, long={}, quick={})
    for ident, whole, first in (("long", 4.0, 0.05), ("quick", 0.5, 0.3)):
        health = book.of(ident)
        book.started(health)
        book.succeeded(health, whole, None, streamed=False)
        book.started(health)
        book.succeeded(health, 2.0, first, streamed=True)
    assert book.of("long").ewma_ttft == 0.05 and book.of("long").ewma_complete == 4.0
    streamed = STRATEGIES["latency"](candidates, random.Random(1), 0.0, True)
    assert _ids(streamed) == ["long", "quick"]
    whole = STRATEGIES["latency"](candidates, random.Random(1), 0.0, False)
    assert _ids(whole) == ["quick", "long"]


def test_latency_explores_a_share_of_requests() -> None:
    book = HealthBook(RoutingConfig())
    candidates = _candidates(book, slow={}, fast={})
    book.of("slow").ewma_ttft = 0.5
    book.of("fast").ewma_ttft = 0.05
    rng = random.Random(11)
    firsts = Counter(
        _ids(STRATEGIES["latency"](candidates, rng, 0.1, True))[0] for _ in range(10_000)
    )
    assert 0.08 < firsts["slow"] / 10_000 < 0.12


def test_cost_puts_the_cheapest_first_and_the_unpriced_last() -> None:
    book = HealthBook(RoutingConfig())
    candidates = _candidates(
        book,
        dear={"price": Price(5.0, 15.0)},
        free={},
        cheap={"price": Price(0.15, 0.6)},
    )
    assert _ids(STRATEGIES["cost"](candidates, random.Random(1), 0.0, False)) == [
        "cheap",
        "dear",
        "free",
    ]


def test_least_busy_goes_to_the_fewest_in_flight() -> None:
    book = HealthBook(RoutingConfig())
    candidates = _candidates(book, a={}, b={}, c={})
    book.of("a").in_flight = 4
    book.of("b").in_flight = 1
    book.of("c").in_flight = 2
    assert _ids(STRATEGIES["least-busy"](candidates, random.Random(1), 0.0, False)) == [
        "b",
        "c",
        "a",
    ]


def test_least_busy_spreads_ties_over_the_idle_deployments() -> None:
    # Ties went to config order: light sequential traffic (in flight always 0) all reached
    # the first deployment, and least-busy spread no load at all.
    book = HealthBook(RoutingConfig())
    candidates = _candidates(book, a={}, b={}, c={})
    rng = random.Random(7)
    firsts = Counter(
        STRATEGIES["least-busy"](candidates, rng, 0.0, False)[0][0].id for _ in range(3_000)
    )
    assert all(900 < firsts[ident] < 1_100 for ident in "abc"), firsts
    # A tie among the least busy only: the busier one is never first, and stays last.
    book.of("a").in_flight = 1
    orders = [_ids(STRATEGIES["least-busy"](candidates, rng, 0.0, False)) for _ in range(2_000)]
    assert all(order[-1] == "a" for order in orders)
    firsts = Counter(order[0] for order in orders)
    assert 900 < firsts["b"] < 1_100 and firsts["b"] + firsts["c"] == 2_000


def test_no_embedding_model_in_the_catalog_has_a_long_context_tier() -> None:
    # ``cost`` ranks embeddings requests by base price (docs/routing.md): right while no
    # embedding model is priced by a long-context tier. One that gets a tier needs the
    # router to rank embeddings by it as it ranks chat requests.
    entries = PriceCatalog.load().entries()
    assert any(entry.price.tiers for entry in entries)  # chat models have them
    embeddings = [e for e in entries if "embed" in e.model or e.price.output == 0]
    assert len(embeddings) >= 5
    assert [entry.model for entry in embeddings if entry.price.tiers] == []
