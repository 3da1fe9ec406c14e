"""Gemini embeddings: ``embedContent`` and ``batchEmbedContents`` (Gemini API), ``predict``
(Vertex AI), with the same deterministic vectors as the OpenAI endpoint.

``outputDimensionality`` sets the size (``embedding_dimensions`` otherwise). Token count: words
of the text, reported as ``usageMetadata.promptTokenCount`` (Gemini API) or
``statistics.token_count`` per instance (Vertex AI). A call holds as many texts as Google's
take: 100 requests a ``batchEmbedContents``; 250 instances a ``predict``, and one for a
``gemini-embedding`` model (Google's 400 otherwise).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

from aiohttp import web

from tollway.simulator.content import InvalidRequest, word_count
from tollway.simulator.embeddings import input_key
from tollway.simulator.errors import Dialect, json_response
from tollway.simulator.exchange import Call, delay
from tollway.simulator.state import SimulatorState

EmbedHandler = Callable[[Call, SimulatorState, Dialect, str], Awaitable[web.Response]]


def _text(content: Any, param: str) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        raise InvalidRequest(f"* {param}.parts: at least one part is required", param)
    return " ".join(str(p["text"]) for p in parts if isinstance(p, dict) and "text" in p)


def _dimensions(raw: Any, state: SimulatorState) -> int:
    if raw is None:
        return state.settings.embedding_dimensions
    if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= 65536:
        raise InvalidRequest("outputDimensionality must be a positive integer", "dimensions")
    return raw


BATCH_MOST = 100
"""Requests one ``batchEmbedContents`` call may hold (Gemini API)."""
PREDICT_MOST = 250
"""Instances one ``predict`` call may hold (Vertex AI's text-embedding models)."""


def predict_most(model: str) -> int:
    """Instances one ``predict`` call may hold for ``model``: Gemini embedding models take one."""
    return 1 if model.startswith("gemini-embedding") else PREDICT_MOST


def _values(state: SimulatorState, text: str, dimensions: int) -> Any:
    return state.embeddings.get(input_key(text), dimensions).as_json()


async def embed_content(
    call: Call, state: SimulatorState, dialect: Dialect, model: str
) -> web.Response:
    """One text's embedding."""
    text = _text(call.body.get("content"), "content")
    dimensions = _dimensions(call.body.get("outputDimensionality"), state)
    await delay(call, 0)
    payload = {
        "embedding": {"values": _values(state, text, dimensions)},
        "usageMetadata": {"promptTokenCount": word_count(text)},
    }
    return json_response(payload, call.request_id, dialect)


async def batch_embed_contents(
    call: Call, state: SimulatorState, dialect: Dialect, model: str
) -> web.Response:
    """Every request's embedding, in order."""
    requests = call.body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise InvalidRequest("* BatchEmbedContentsRequest.requests: required", "requests")
    if len(requests) > BATCH_MOST:
        raise InvalidRequest(
            f"* BatchEmbedContentsRequest.requests: at most {BATCH_MOST} requests can be in "
            "one batch",
            "requests",
        )
    embeddings, tokens = [], 0
    for index, item in enumerate(requests):
        if not isinstance(item, dict):
            raise InvalidRequest(f"* requests[{index}]: must be an object", "requests")
        text = _text(item.get("content"), f"requests[{index}].content")
        dimensions = _dimensions(item.get("outputDimensionality"), state)
        embeddings.append({"values": _values(state, text, dimensions)})
        tokens += word_count(text)
    await delay(call, 0)
    payload = {"embeddings": embeddings, "usageMetadata": {"promptTokenCount": tokens}}
    return json_response(payload, call.request_id, dialect)


async def predict(call: Call, state: SimulatorState, dialect: Dialect, model: str) -> web.Response:
    """Vertex AI text embeddings: one prediction per instance."""
    instances = call.body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise InvalidRequest("instances: at least one instance is required", "instances")
    most = predict_most(model)
    if len(instances) > most:
        raise InvalidRequest(
            f"{most} instance(s) is allowed per prediction. Actual: {len(instances)}", "instances"
        )
    parameters = call.body.get("parameters")
    raw_dimensions = (
        parameters.get("outputDimensionality") if isinstance(parameters, dict) else None
    )
    dimensions = _dimensions(raw_dimensions, state)
    predictions = []
    for index, instance in enumerate(instances):
        text = instance.get("content") if isinstance(instance, dict) else None
        if not isinstance(text, str):
            raise InvalidRequest(f"instances[{index}].content must be a string", "instances")
        statistics = {"token_count": word_count(text), "truncated": False}
        embedding = {"values": _values(state, text, dimensions), "statistics": statistics}
        predictions.append({"embeddings": embedding})
    await delay(call, 0)
    return json_response({"predictions": predictions}, call.request_id, dialect)


EMBED_METHODS: Mapping[str, EmbedHandler] = MappingProxyType(
    {
        "embedContent": embed_content,
        "batchEmbedContents": batch_embed_contents,
        "predict": predict,
    }
)
