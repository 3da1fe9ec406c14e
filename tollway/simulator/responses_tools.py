"""The Responses API's built-in web search and stored responses, as the simulator answers them.

Web search: a request that offers a web search tool (``web_search``, ``web_search_preview`` and
their dated names), whose last input item is the user's and whose ``tool_choice`` leaves the
search open (not ``none``, not a function), is answered as OpenAI answers when its model
searches: a completed ``web_search_call`` item (its ``action`` a ``search`` for the user's words;
the ``sources`` only when ``include`` asks for ``web_search_call.action.sources``) after any
reasoning and before the message or the calls, the results read counted as ``SEARCH_TOKENS``
more input tokens (``x-sim-searches: N``: N such items, each its own search, never more than
the request's ``max_tool_calls``: OpenAI bills each call). Streamed, each item's events:
``response.output_item.added``, ``response.web_search_call.in_progress``, ``.searching``,
``.completed``, ``response.output_item.done``. Other built-in tools are accepted and never called.

Stored responses: a response is stored unless ``store: false``, and ``previous_response_id``
continues one this simulator stored (its whole context counted as input, as OpenAI bills it);
another id is OpenAI's 400 ``previous_response_not_found``.
"""

from __future__ import annotations

from typing import Any

from tollway.simulator.content import JSON, InvalidRequest, Prompt
from tollway.simulator.state import SimulatorState

SEARCH_TOKENS = 200
"""The input tokens a simulated search's results add."""
_WEB_SEARCH = frozenset(
    {"web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11"}
)
_SOURCES = "web_search_call.action.sources"
_QUERY_CHARACTERS = 100


def searches(body: JSON, prompt: Prompt) -> bool:
    """Whether the model searches the web before it answers ``body``."""
    tools = body.get("tools") or ()
    offered = any(isinstance(t, dict) and t.get("type") in _WEB_SEARCH for t in tools)
    return offered and prompt.last_is_user and prompt.tool_mode != "none" and not prompt.forced_tool


def search_count(body: JSON, wanted: int) -> int:
    """The searches made: ``wanted``, within the request's ``max_tool_calls``."""
    bound = body.get("max_tool_calls")
    return min(wanted, bound) if isinstance(bound, int) and bound >= 0 else wanted


def search_item(body: JSON, prompt: Prompt, item_id: str) -> JSON:
    """The completed ``web_search_call`` output item."""
    query = prompt.last_user_text[:_QUERY_CHARACTERS]
    action: JSON = {"type": "search", "query": query}
    if _SOURCES in (body.get("include") or ()):
        action["sources"] = [{"type": "url", "url": "https://example.com/simulated-result"}]
    return {"id": item_id, "type": "web_search_call", "status": "completed", "action": action}


def search_events(where: JSON) -> list[tuple[str, JSON, bool]]:
    """The events between a ``web_search_call`` item's ``added`` and ``done``."""
    stages = ("in_progress", "searching", "completed")
    return [(f"response.web_search_call.{stage}", dict(where), False) for stage in stages]


def continued_tokens(body: JSON, state: SimulatorState) -> int:
    """The context tokens of the stored response ``previous_response_id`` continues (0: none);
    an id this simulator did not store is OpenAI's 400."""
    previous: Any = body.get("previous_response_id")
    if previous is None:
        return 0
    tokens = state.stored_response(str(previous))
    if tokens is None:
        raise InvalidRequest(
            f"Previous response with id '{previous}' not found.",
            "previous_response_id",
            "previous_response_not_found",
        )
    return tokens
