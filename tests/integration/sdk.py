"""Helpers of the tests that drive the gateway through the SDKs and read what the simulator
was sent."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx

OPEN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "homes": {
            "type": "array",
            "items": {"type": "object", "properties": {"street": {"type": "string"}}},
        },
    },
    "required": ["city"],
}
"""A JSON schema whose objects leave ``additionalProperties`` unsaid, as OpenAI takes with
strict off (Claude's and Bedrock's structured output need it said ``false``)."""


WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TIME: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}
"""Two function tools in Chat Completions' shape, for the tests of tool calls."""


def user(text: str) -> list[Any]:
    """One user message saying ``text``."""
    return [{"role": "user", "content": text}]


def sent_upstream(simulator_url: str, marker: str) -> dict[str, Any]:
    """The body of the last request the simulator received that mentions ``marker``."""
    for request in reversed(httpx.get(simulator_url + "/_sim/requests").json()):
        if marker in json.dumps(request["json"]):
            return dict(request["json"])
    raise AssertionError(f"the simulator received no request mentioning {marker!r}")


def blocks(message: anthropic.types.Message) -> list[dict[str, Any]]:
    """An Anthropic answer's content blocks as plain dicts."""
    return [block.model_dump(exclude_none=True) for block in message.content]
