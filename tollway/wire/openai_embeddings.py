"""OpenAI embeddings requests and responses in both directions."""

from __future__ import annotations

from typing import Any, Literal, cast

from tollway.core.errors import InvalidRequest, UpstreamProtocolError
from tollway.core.types import EmbeddingRequest, EmbeddingResponse
from tollway.wire.fields import optional, required
from tollway.wire.openai_response import usage_from_wire

_KEYS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})


def embedding_request_from_wire(body: dict[str, Any]) -> EmbeddingRequest:
    """Parse and validate an embeddings request body."""
    model = required(body, "model", str)
    encoding = optional(body, "encoding_format", str)
    if encoding not in (None, "float", "base64"):
        raise InvalidRequest(
            "'encoding_format' must be 'float' or 'base64'", param="encoding_format"
        )
    dimensions = optional(body, "dimensions", int)
    if dimensions is not None and dimensions < 1:
        raise InvalidRequest("'dimensions' must be at least 1", param="dimensions")
    return EmbeddingRequest(
        model=model,
        input=_input_from_wire(body.get("input")),
        dimensions=dimensions,
        encoding_format=cast(Literal["float", "base64"] | None, encoding),
        user=optional(body, "user", str),
        extra={k: v for k, v in body.items() if k not in _KEYS},
    )


def _input_from_wire(raw: Any) -> list[str] | list[list[int]]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw:
        if all(isinstance(item, str) for item in raw):
            return raw
        if all(isinstance(item, int) and not isinstance(item, bool) for item in raw):
            return [raw]
        if all(
            isinstance(item, list) and item and all(isinstance(t, int) for t in item)
            for item in raw
        ):
            return raw
    raise InvalidRequest(
        "'input' must be a non-empty string, array of strings, or array of token arrays",
        param="input",
    )


def embedding_request_to_wire(request: EmbeddingRequest, model: str) -> dict[str, Any]:
    """The upstream body for ``request`` addressed to the upstream ``model``."""
    body: dict[str, Any] = dict(request.extra)
    body["model"] = model
    body["input"] = request.input
    if request.dimensions is not None:
        body["dimensions"] = request.dimensions
    if request.encoding_format is not None:
        body["encoding_format"] = request.encoding_format
    if request.user is not None:
        body["user"] = request.user
    return body


def embedding_response_from_wire(raw: Any) -> EmbeddingResponse:
    """Canonical embeddings from an upstream body, in input order."""
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise UpstreamProtocolError("upstream embeddings answer has no 'data' array")
    try:
        items = sorted(raw["data"], key=lambda item: int(item.get("index") or 0))
        vectors = [item["embedding"] for item in items]
    except (KeyError, TypeError, AttributeError) as exc:
        raise UpstreamProtocolError(f"upstream embedding is malformed: {exc}") from None
    usage = usage_from_wire(raw.get("usage"))
    if usage is None:
        raise UpstreamProtocolError("upstream embeddings answer has no 'usage'")
    return EmbeddingResponse(model=str(raw.get("model") or ""), data=vectors, usage=usage)


def embedding_response_to_wire(response: EmbeddingResponse) -> dict[str, Any]:
    """An embeddings body for the client."""
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": vector}
            for index, vector in enumerate(response.data)
        ],
        "model": response.model,
        "usage": {
            "prompt_tokens": response.usage.input_tokens,
            "total_tokens": response.usage.total_tokens,
        },
    }
