"""A Responses client's ``truncation: "auto"``: a conversation too long for every candidate's
context window loses its oldest turns until it fits.

OpenAI's Responses API, asked for ``auto``, drops input items from the beginning of the
conversation when the input exceeds the model's context window. The router does the same for
the deployments the gateway translates to, and only for a request that fits none of its
candidates (``Router._that_fit``), so no other request pays for it; a deployment that speaks
the Responses API is sent the client's body, ``truncation`` and all, and truncates for itself.

Never dropped: system and developer messages (``instructions`` among them), wherever they
stand, and the latest turn: the last user message and all after it, the function calls and
outputs of a tool loop in progress. The conversation is cut only just before a user message,
so what is left opens with the user's turn (Gemini refuses a function call turn that follows
no user turn, Bedrock a conversation that opens with the assistant), and never between a
function call and its output (a tool result whose call is gone is a 400 at every family).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tollway.core.types import Message

_KEPT_ROLES = frozenset({"system", "developer"})


def cuts(messages: Sequence[Message]) -> list[int]:
    """Where ``messages`` may be cut, in order (the index of the first message of the
    conversation kept): before each user message that has a turn to drop before it, up to the
    last user message, but not between a tool call and its result."""
    users = [i for i, message in enumerate(messages) if message.role == "user"]
    if not users:
        return []
    first = next(i for i, message in enumerate(messages) if message.role not in _KEPT_ROLES)
    # A cut at ``i`` in (call, result] would keep the result and drop its call: counted over
    # each such span, by the difference of its ends.
    called_at = {
        call.id: index
        for index, message in enumerate(messages)
        for call in message.tool_calls or ()
    }
    spans = [0] * (len(messages) + 1)
    for index, message in enumerate(messages):
        called = called_at.get(message.tool_call_id or "")
        if message.role == "tool" and called is not None and called < index:
            spans[called + 1] += 1
            spans[index + 1] -= 1
    open_spans = 0
    allowed = set()
    for index in range(users[-1] + 1):
        open_spans += spans[index]
        if open_spans == 0:
            allowed.add(index)
    return [i for i in users if i > first and i in allowed]


def without_oldest(messages: Sequence[Message], cut: int) -> tuple[list[Message], list[int]]:
    """``messages`` without the ones before ``cut`` but the system and developer messages, and
    the index in ``messages`` of each one kept."""
    kept = [i for i in range(cut) if messages[i].role in _KEPT_ROLES]
    kept += range(cut, len(messages))
    return [messages[i] for i in kept], kept


def oldest_dropped(
    messages: Sequence[Message], fits: Callable[[list[Message]], bool]
) -> tuple[list[Message], list[int]] | None:
    """``messages`` with the fewest oldest turns dropped that ``fits`` holds for, and the index
    in ``messages`` of each one kept; ``None`` when even the system messages and the latest
    turn alone do not fit. ``fits`` (a token count) holds for a conversation whenever it holds
    for a longer one, so the cut is searched for by halves: a few counts, not one a turn."""
    places = cuts(messages)
    if not places or not fits(without_oldest(messages, places[-1])[0]):
        return None
    low, high = 0, len(places) - 1  # the cut at ``high`` fits
    while low < high:
        middle = (low + high) // 2
        if fits(without_oldest(messages, places[middle])[0]):
            high = middle
        else:
            low = middle + 1
    return without_oldest(messages, places[high])
