"""Bedrock Converse's pairing of tool calls and results, checked as Bedrock checks it.

Each ``toolUse`` of an assistant turn must be answered by a ``toolResult`` (same
``toolUseId``, in any order) in the next turn, and that turn may hold no more results than
the turn before made calls; otherwise a ``ValidationException``, in Bedrock's words:
``Expected toolResult blocks at messages.N.content for the following Ids: <unanswered>``
(with ``, but found: <ids>`` naming the results that answer no call), or ``The number of
toolResult blocks at messages.N.content exceeds the number of toolUse blocks of previous
turn.`` A last assistant turn's calls await no answer yet.
"""

from __future__ import annotations

from typing import Any

from tollway.simulator.content import InvalidRequest


def _ids(message: dict[str, Any], kind: str) -> list[str]:
    """The ``toolUseId`` of each ``kind`` (``toolUse`` or ``toolResult``) block of a turn."""
    content = message.get("content")
    return [
        str(block[kind].get("toolUseId"))
        for block in (content if isinstance(content, list) else ())
        if isinstance(block, dict) and isinstance(block.get(kind), dict)
    ]


def check_tool_pairs(messages: list[dict[str, Any]]) -> None:
    """Refuse, as Bedrock does, results that answer no call and calls left unanswered."""
    calls: list[str] = []
    for index, message in enumerate(messages):
        results = _ids(message, "toolResult")
        where = f"messages.{index}.content"
        if len(results) > len(calls):
            raise InvalidRequest(
                f"The number of toolResult blocks at {where} exceeds the number of toolUse "
                "blocks of previous turn.",
                "messages",
            )
        unanswered = [call for call in calls if call not in results]
        if unanswered:
            stray = [result for result in results if result not in calls]
            found = f", but found: {', '.join(stray)}" if stray else ""
            raise InvalidRequest(
                f"Expected toolResult blocks at {where} for the following Ids: "
                f"{', '.join(unanswered)}{found}",
                "messages",
            )
        calls = _ids(message, "toolUse") if message.get("role") == "assistant" else []
