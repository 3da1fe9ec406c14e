"""Gemini's log probabilities: ``generationConfig.responseLogprobs`` and ``logprobs``.

With ``responseLogprobs: true`` each candidate says its tokens' log probabilities in
``logprobsResult``: ``chosenCandidates`` (one ``{token, tokenId, logProbability}`` per decoding
step) and ``topCandidates`` (per step, the ``logprobs`` likeliest, ``{"candidates": [...]}``),
with ``avgLogprobs`` beside it; a stream's events each say those of the tokens they bring.
``logprobs`` outside 0 to 20 is Google's 400, as its API reference bounds it. The simulated
values are made from the tokens, the same for the same text (thoughts and calls have none).
"""

from __future__ import annotations

from typing import Any

from tollway.simulator.content import InvalidRequest

MOST_TOP = 20


def requested(config: Any) -> int | None:
    """How many alternatives each step lists, when ``config`` asks for log probabilities."""
    if not isinstance(config, dict) or config.get("responseLogprobs") is not True:
        return None
    top = config.get("logprobs", 0)
    if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= MOST_TOP:
        raise InvalidRequest(
            f"logprobs must be in the range [0, {MOST_TOP}], got {top!r}", "logprobs"
        )
    return top


def _scored(token: str, rank: int) -> dict[str, Any]:
    score = -round((len(token) % 5 + 1) / 10 + rank, 4)
    return {"token": token, "tokenId": sum(token.encode()) + rank, "logProbability": score}


def result(pieces: list[str], top: int) -> dict[str, Any]:
    """``logprobsResult`` and ``avgLogprobs`` of a candidate saying ``pieces`` (its tokens)."""
    chosen = [_scored(piece, 0) for piece in pieces]
    steps = [
        {"candidates": [chosen[n], *(_scored(f"alt{k}", k) for k in range(1, top))][:top]}
        for n in range(len(pieces))
    ]
    fields: dict[str, Any] = {
        "logprobsResult": {"topCandidates": steps, "chosenCandidates": chosen}
    }
    if chosen:
        fields["avgLogprobs"] = sum(c["logProbability"] for c in chosen) / len(chosen)
    return fields
