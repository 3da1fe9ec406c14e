"""Log probabilities on Gemini: an OpenAI-format client's ``logprobs`` / ``top_logprobs``.

Chat Completions' ``logprobs: true`` is Gemini's ``generationConfig.responseLogprobs`` and
``top_logprobs: N`` its ``logprobs: N`` (Google's API reference bounds it to 0..20, and takes
it only with ``responseLogprobs``, as OpenAI takes ``top_logprobs`` only with ``logprobs``:
either mistake is a 400 naming the field before any call). Each candidate answers with
``logprobsResult``: ``chosenCandidates`` (per decoding step, the token chosen:
``token``, ``logProbability``) and ``topCandidates`` (per step, the likeliest), which are the
choice's ``logprobs`` (``TokenLogprob``), each streamed event's for the tokens it brings.
Google leaves out a ``logProbability`` of 0 (a default value), so a missing one is 0.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tollway.core.errors import InvalidRequest
from tollway.core.types import ChatRequest, TokenLogprob

MOST_TOP_LOGPROBS = 20
LOGPROBS = frozenset({"logprobs", "top_logprobs"})


def take_logprobs(request: ChatRequest) -> tuple[ChatRequest, dict[str, Any]]:
    """``request`` without an OpenAI-format client's ``logprobs`` and ``top_logprobs`` (a
    copy: a fallback of another family still has them), and the ``generationConfig`` fields
    they ask for."""
    wanted = request.extra.get("logprobs")
    top = request.extra.get("top_logprobs")
    if wanted is not None and not isinstance(wanted, bool):
        raise InvalidRequest("'logprobs' must be a boolean", param="logprobs")
    if top is not None and (
        not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= MOST_TOP_LOGPROBS
    ):
        raise InvalidRequest(
            f"'top_logprobs' must be an integer between 0 and {MOST_TOP_LOGPROBS} for a gemini "
            "deployment (Gemini's most)",
            param="top_logprobs",
        )
    if top and not wanted:
        raise InvalidRequest("'top_logprobs' needs 'logprobs' set to true", param="top_logprobs")
    rest = {key: value for key, value in request.extra.items() if key not in LOGPROBS}
    fields: dict[str, Any] = {}
    if wanted:
        fields["responseLogprobs"] = True
        if top:
            fields["logprobs"] = top
    return replace(request, extra=rest), fields


def logprobs_from_wire(raw: Any) -> list[TokenLogprob] | None:
    """A candidate's ``logprobsResult`` as its tokens' log probabilities (``None``: none)."""
    if not isinstance(raw, dict):
        return None
    chosen = raw.get("chosenCandidates")
    if not isinstance(chosen, list):
        return None
    steps = raw.get("topCandidates")
    steps = steps if isinstance(steps, list) else []
    tokens = []
    for number, candidate in enumerate(chosen):
        step = steps[number] if number < len(steps) and isinstance(steps[number], dict) else {}
        likeliest = step.get("candidates")
        top = [
            _token(alternative)
            for alternative in (likeliest if isinstance(likeliest, list) else ())
            if isinstance(alternative, dict)
        ]
        token = _token(candidate if isinstance(candidate, dict) else {})
        token.top = top
        tokens.append(token)
    return tokens


def _token(raw: dict[str, Any]) -> TokenLogprob:
    token, score = raw.get("token"), raw.get("logProbability")
    return TokenLogprob(
        token if isinstance(token, str) else "",
        float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else 0.0,
    )
