"""OpenAI embeddings and the model list (which also answers in Anthropic's shape).

Embeddings accept every ``input`` form the API does (string, strings, token ids, lists of token
ids); ``encoding_format`` ``base64`` (what openai-python asks for by default) returns the
little-endian float32 bytes base64-encoded. Token count: words per string, ids per id list.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from tollway.simulator.content import InvalidRequest, word_count
from tollway.simulator.embeddings import input_key
from tollway.simulator.errors import Dialect, json_response
from tollway.simulator.exchange import Call, delay
from tollway.simulator.state import SimulatorState

CHAT_MODELS = ("sim-chat", "sim-chat-large")
EMBEDDING_MODELS = ("sim-embed",)
_CREATED = 1_700_000_000
OPENAI_MODELS = orjson.dumps(
    {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": _CREATED, "owned_by": "tollway-simulator"}
            for name in CHAT_MODELS + EMBEDDING_MODELS
        ],
    }
)
ANTHROPIC_MODELS = orjson.dumps(
    {
        "data": [
            {
                "type": "model",
                "id": name,
                "display_name": name.replace("-", " ").title(),
                "created_at": "2023-11-14T22:13:20Z",
            }
            for name in CHAT_MODELS
        ],
        "has_more": False,
        "first_id": CHAT_MODELS[0],
        "last_id": CHAT_MODELS[-1],
    }
)


def _inputs(value: Any) -> list[Any]:
    """The request's inputs as a list of strings or token-id lists; raises on bad shapes."""
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list) and value and all(_is_token(v) for v in value):
        items = [value]
    elif isinstance(value, list) and value:
        items = value
    else:
        raise InvalidRequest("'$.input' is invalid. Please check the API reference.", "input")
    for item in items:
        valid = (isinstance(item, str) and item != "") or (
            isinstance(item, list) and item and all(_is_token(v) for v in item)
        )
        if not valid:
            raise InvalidRequest("'$.input' is invalid. Please check the API reference.", "input")
    return items


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _dimensions(body: dict[str, Any], native: int, dialect: Dialect) -> int:
    value = body.get("output_dimension" if dialect is Dialect.MISTRAL else "dimensions")
    if value is None:
        return native
    if not _is_token(value) or not 1 <= value <= native:
        raise InvalidRequest(
            f"Invalid 'dimensions': expected an integer between 1 and {native}.", "dimensions"
        )
    return int(value)


async def handle_embeddings(
    call: Call, state: SimulatorState, dialect: Dialect, model: str
) -> web.Response:
    """Answer an admitted embeddings request (raises InvalidRequest on a bad body)."""
    body = call.body
    if "input" not in body:
        raise InvalidRequest("Missing required parameter: 'input'.", "input")
    items = _inputs(body["input"])
    dimensions = _dimensions(body, state.settings.embedding_dimensions, dialect)
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise InvalidRequest(
            "Invalid 'encoding_format': expected 'float' or 'base64'.", "encoding_format"
        )
    data = []
    tokens = 0
    for index, item in enumerate(items):
        tokens += word_count(item) if isinstance(item, str) else len(item)
        embedding = state.embeddings.get(input_key(item), dimensions)
        vector = embedding.as_base64() if encoding == "base64" else embedding.as_json()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    await delay(call, 0)
    payload = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return json_response(payload, call.request_id, dialect)
