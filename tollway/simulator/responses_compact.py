"""OpenAI's compaction (``POST /v1/responses/compact``), as the simulator answers it.

The conversation (``input`` and ``instructions``, and a stored response that
``previous_response_id`` continues) is counted as ``/v1/responses`` counts it; the answer is a
``response.compaction`` object, as the openai SDK's ``CompactedResponse`` has it: the user's
messages, then one ``compaction`` item whose ``encrypted_content`` stands for the rest, and
usage with ``COMPACTION_TOKENS`` output tokens (``x-sim-compaction-tokens: N``: N, as a long
conversation's compaction runs longer; OpenAI takes no limit for it). A later
``/v1/responses`` request takes the item back in ``input``. A field compaction does not take
is OpenAI's 400 ``unknown_parameter``.
"""

from __future__ import annotations

import base64
import time

from aiohttp import web

from tollway.simulator.content import JSON, InvalidRequest
from tollway.simulator.errors import Dialect, json_response
from tollway.simulator.exchange import Call, delay
from tollway.simulator.openai_responses import read_prompt
from tollway.simulator.responses_tools import continued_tokens
from tollway.simulator.state import SimulatorState

COMPACTION_TOKENS = 32
"""The output tokens a compaction is billed."""
_KNOWN = frozenset(
    {
        "model", "input", "instructions", "previous_response_id", "prompt_cache_key",
        "prompt_cache_retention", "prompt_cache_options", "service_tier",
    }
)  # fmt: skip


async def handle_compact(
    request: web.BaseRequest, call: Call, state: SimulatorState, model: str
) -> web.Response:
    """Answer an admitted compaction request (raises InvalidRequest on a bad body)."""
    body = call.body
    generated = _compaction_tokens(request.headers.get("x-sim-compaction-tokens"))
    for key in body:
        if key not in _KNOWN:
            raise InvalidRequest(f"Unknown parameter: '{key}'.", key, "unknown_parameter")
    given = body.get("input")
    _, input_tokens = read_prompt({**body, "input": [] if given is None else given}, call, state)
    input_tokens += continued_tokens(body, state)
    users = [_user_message(item, state) for item in _items(given) if item.get("role") == "user"]
    sealed = base64.b64encode(f"compacted:{model}:{input_tokens}".encode()).decode()
    compaction = {"id": state.new_id("cmp_"), "type": "compaction", "encrypted_content": sealed}
    compacted = {
        "id": state.new_id("resp_"),
        "object": "response.compaction",
        "created_at": int(time.time()),
        "output": [*users, compaction],
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": generated,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + generated,
        },
    }
    await delay(call, generated)
    return json_response(compacted, call.request_id, Dialect.OPENAI)


def _compaction_tokens(header: str | None) -> int:
    """The output tokens ``x-sim-compaction-tokens`` asks a compaction to bill (a whole number
    of at least 1), else ``COMPACTION_TOKENS``."""
    if header is None:
        return COMPACTION_TOKENS
    try:
        tokens = int(header)
    except ValueError:
        tokens = 0
    if tokens < 1:
        raise InvalidRequest(
            f"simulator: x-sim-compaction-tokens must be a whole number of at least 1, not "
            f"{header!r}",
            None,
            "invalid_value",
        )
    return tokens


def _items(given: object) -> list[JSON]:
    if isinstance(given, str):
        return [{"type": "message", "role": "user", "content": given}]
    return [item for item in given if isinstance(item, dict)] if isinstance(given, list) else []


def _user_message(item: JSON, state: SimulatorState) -> JSON:
    content = item.get("content")
    if isinstance(content, str):
        content = [{"type": "input_text", "text": content}]
    return {
        "id": state.new_id("msg_"),
        "type": "message",
        "status": "completed",
        "role": "user",
        "content": content,
    }
