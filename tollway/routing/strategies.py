"""How a model group orders its deployments for one request.

A strategy returns every deployment of the group, best first; the pipeline tries them in that
order, skipping those whose circuit is open or that a 429 set aside, so the order after the
first matters as the fallback chain.

- ``priority``: the config order (a fallback chain).
- ``weighted``: the first pick is random by ``weight`` (a 90/10 split, a 10% canary); the
  rest follow in config order.
- ``latency``: lowest recent time to first token first (EWMA); a deployment with no sample
  yet goes first so it gets one, and a share of requests (``routing.exploration``) starts at
  a random candidate, so one that recovered from a slow spell is noticed.
- ``cost``: cheapest (``price``, input + output per 1M tokens) first; unpriced ones last.
- ``least-busy``: fewest requests in flight first.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from tollway.core.types import Deployment
from tollway.routing.health import DeploymentHealth

Candidate = tuple[Deployment, DeploymentHealth]
Candidates = Sequence[Candidate]
Order = Callable[[Candidates, random.Random, float], list[Candidate]]

_UNPRICED = float("inf")


def priority(candidates: Candidates, rng: random.Random, explore: float) -> list[Candidate]:
    """Config order."""
    return list(candidates)


def weighted(candidates: Candidates, rng: random.Random, explore: float) -> list[Candidate]:
    """A random first pick by weight, then the rest in config order."""
    total = sum(deployment.weight for deployment, _ in candidates)
    if total <= 0 or len(candidates) == 1:
        return list(candidates)
    point = rng.random() * total
    chosen = len(candidates) - 1
    for index, (deployment, _) in enumerate(candidates):
        point -= deployment.weight
        if point < 0:
            chosen = index
            break
    ordered = list(candidates)
    ordered.insert(0, ordered.pop(chosen))
    return ordered


def latency(candidates: Candidates, rng: random.Random, explore: float) -> list[Candidate]:
    """Fastest recent first token first; unmeasured ones first; sometimes a random start."""
    ordered = sorted(candidates, key=_latency_score)
    if len(ordered) > 1 and rng.random() < explore:
        ordered.insert(0, ordered.pop(rng.randrange(1, len(ordered))))
    return ordered


def cost(candidates: Candidates, rng: random.Random, explore: float) -> list[Candidate]:
    """Cheapest first; deployments without a price last, in config order."""
    return sorted(candidates, key=_price)


def least_busy(candidates: Candidates, rng: random.Random, explore: float) -> list[Candidate]:
    """Fewest requests in flight first."""
    return sorted(candidates, key=_in_flight)


def _latency_score(candidate: Candidate) -> float:
    health = candidate[1]
    score = health.ewma_ttft if health.ewma_ttft is not None else health.ewma_latency
    return -1.0 if score is None else score


def _price(candidate: Candidate) -> float:
    price = candidate[0].price
    return _UNPRICED if price is None else price.blended


def _in_flight(candidate: Candidate) -> int:
    return candidate[1].in_flight


STRATEGIES: dict[str, Order] = {
    "priority": priority,
    "weighted": weighted,
    "latency": latency,
    "cost": cost,
    "least-busy": least_busy,
}
