"""How a model group orders its deployments for one request.

A strategy returns every deployment of the group, best first; the pipeline tries them in that
order, skipping those whose circuit is open or that a 429 set aside, so the order after the
first matters as the fallback chain.

- ``priority``: the config order (a fallback chain).
- ``weighted``: random by ``weight`` (a 90/10 split, a 10% canary), every place drawn in
  turn from those left (weight 0 last, in config order): whichever candidates turn out to be
  unavailable, the first that serves is drawn in proportion to the weights of the others, so
  an unavailable pick's share is spread over them, not left to its neighbour.
- ``latency``: lowest recent time first (EWMA): to the first content for a stream, to the
  whole answer for a request answered in one piece (each measured on its own kind of
  request, since a long answer's total says nothing of how soon a stream starts); a
  deployment with no sample of the measure yet goes first so it gets one (while a request
  of its is under way it goes last instead, the least busy of those first: a slow newcomer
  is measured by one request, not sent every request until its first answer ends), and a
  share of requests (``routing.exploration``) starts at a random candidate, so one that
  recovered from a slow spell is noticed.
- ``cost``: cheapest (``price``, input + output per 1M tokens) first; unpriced ones last. A
  request above a long-context tier's threshold ranks by the tier's rates (``cost_at``: the
  router counts its input only where a deployment of the group has a tier).
- ``least-busy``: fewest requests in flight first, ties in random order (under light traffic
  every deployment has none in flight: config order would send it all to the first).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from tollway.core.types import Deployment
from tollway.routing.health import DeploymentHealth

Candidate = tuple[Deployment, DeploymentHealth]
Candidates = Sequence[Candidate]
Order = Callable[[Candidates, random.Random, float, bool], list[Candidate]]
"""Candidates, the router's random source, the exploration share, whether the request
streams; the candidates best first."""

_UNPRICED = float("inf")
_MEASURING = 1e12
"""Above any measured time in seconds: where an unmeasured deployment whose first request is
under way ranks (plus its requests in flight)."""


def priority(
    candidates: Candidates, rng: random.Random, explore: float, streaming: bool
) -> list[Candidate]:
    """Config order."""
    return list(candidates)


def weighted(
    candidates: Candidates, rng: random.Random, explore: float, streaming: bool
) -> list[Candidate]:
    """Every place drawn by weight from the candidates left; weight 0 last, in config order."""
    if len(candidates) == 1:
        return list(candidates)
    left = [c for c in candidates if c[0].weight > 0]
    ordered: list[Candidate] = []
    total = sum(deployment.weight for deployment, _ in left)
    while len(left) > 1:
        point = rng.random() * total
        chosen = len(left) - 1  # float rounding past the end: the last one
        for index, (deployment, _) in enumerate(left):
            point -= deployment.weight
            if point < 0:
                chosen = index
                break
        picked = left.pop(chosen)
        total -= picked[0].weight
        ordered.append(picked)
    ordered += left
    if len(ordered) < len(candidates):
        ordered += [c for c in candidates if c[0].weight <= 0]
    return ordered


def latency(
    candidates: Candidates, rng: random.Random, explore: float, streaming: bool
) -> list[Candidate]:
    """Fastest recent first content (streams) or whole answer (the rest) first; unmeasured
    ones first; sometimes a random start."""
    ordered = sorted(candidates, key=_ttft if streaming else _answer_time)
    if len(ordered) > 1 and rng.random() < explore:
        ordered.insert(0, ordered.pop(rng.randrange(1, len(ordered))))
    return ordered


def cost(
    candidates: Candidates, rng: random.Random, explore: float, streaming: bool
) -> list[Candidate]:
    """Cheapest first; deployments without a price last, in config order."""
    return sorted(candidates, key=_price)


def cost_at(candidates: Candidates, input_tokens: int) -> list[Candidate]:
    """Cheapest first for a request of ``input_tokens``: at the rates of the long-context tier
    it falls in, where a price has one; unpriced ones last, in config order."""

    def price(candidate: Candidate) -> float:
        price = candidate[0].price
        return _UNPRICED if price is None else price.blended_at(input_tokens)

    return sorted(candidates, key=price)


def least_busy(
    candidates: Candidates, rng: random.Random, explore: float, streaming: bool
) -> list[Candidate]:
    """Fewest requests in flight first; ties at random."""
    if len(candidates) == 1:
        return list(candidates)
    draw = rng.random
    # A fraction below 1 added to a whole count orders only within a tie.
    return sorted(candidates, key=lambda candidate: candidate[1].in_flight + draw())


def _ttft(candidate: Candidate) -> float:
    score = candidate[1].ewma_ttft
    return _unmeasured(candidate[1]) if score is None else score


def _answer_time(candidate: Candidate) -> float:
    score = candidate[1].ewma_complete
    return _unmeasured(candidate[1]) if score is None else score


def _unmeasured(health: DeploymentHealth) -> float:
    """First when idle, so it gets its first sample; last while requests of its are under
    way (one of which will give it), the least busy of those first."""
    in_flight = health.in_flight
    return -1.0 if in_flight <= 0 else _MEASURING + in_flight


def _price(candidate: Candidate) -> float:
    price = candidate[0].price
    return _UNPRICED if price is None else price.blended


STRATEGIES: dict[str, Order] = {
    "priority": priority,
    "weighted": weighted,
    "latency": latency,
    "cost": cost,
    "least-busy": least_busy,
}
