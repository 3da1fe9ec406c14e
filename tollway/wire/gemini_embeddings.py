"""Gemini embeddings: ``batchEmbedContents`` (Gemini API) and ``predict`` (Vertex AI) bodies.

Both embed texts only: token-id inputs (OpenAI's embedding models' ``cl100k_base`` ids, as
OpenAI-format clients send them) are sent as the text they encode; fields of another format
are a 400 naming them;
``user`` has no counterpart and is dropped. ``dimensions`` is ``outputDimensionality``. Google
answers float lists, so ``encoding_format: base64`` is done here: little-endian float32 bytes,
as OpenAI's API encodes them. Usage is what the answer reports (``usageMetadata`` of the
Gemini API, ``statistics.token_count`` per input on Vertex AI), else 0: the pipeline then
counts the inputs itself (the Gemini API's ``batchEmbedContents`` reports none).
"""

from __future__ import annotations

from typing import Any

from tollway.core.errors import InvalidRequest, UpstreamProtocolError
from tollway.core.types import EmbeddingRequest, EmbeddingResponse, Usage
from tollway.wire.openai_embeddings import base64_vector, embedding_texts


def _texts(request: EmbeddingRequest) -> list[str]:
    for key, value in request.extra.items():
        if value is not None:
            raise InvalidRequest(f"'{key}' cannot be translated for a Gemini deployment", param=key)
    # Gemini embeds text only. OpenAIEmbeddings (LangChain) sends token arrays unless told
    # otherwise (``check_embedding_ctx_length``): the text they encode is embedded instead.
    return embedding_texts(request)


def batch_embed_to_wire(request: EmbeddingRequest, model: str) -> dict[str, Any]:
    """A ``batchEmbedContents`` body: one request per input."""
    extra = {} if request.dimensions is None else {"outputDimensionality": request.dimensions}
    return {
        "requests": [
            {"model": f"models/{model}", "content": {"parts": [{"text": text}]}, **extra}
            for text in _texts(request)
        ]
    }


def predict_to_wire(request: EmbeddingRequest, model: str) -> dict[str, Any]:
    """A Vertex AI ``predict`` body: one instance per input."""
    body: dict[str, Any] = {"instances": [{"content": text} for text in _texts(request)]}
    if request.dimensions is not None:
        body["parameters"] = {"outputDimensionality": request.dimensions}
    return body


def embedding_response_from_wire(
    raw: Any, request: EmbeddingRequest, model: str
) -> EmbeddingResponse:
    """Canonical embeddings from either answer shape, encoded as ``request`` asks."""
    try:
        if isinstance(raw, dict) and isinstance(raw.get("embeddings"), list):
            vectors = [list(item["values"]) for item in raw["embeddings"]]
            tokens = int((raw.get("usageMetadata") or {}).get("promptTokenCount") or 0)
        elif isinstance(raw, dict) and isinstance(raw.get("predictions"), list):
            found = [item["embeddings"] for item in raw["predictions"]]
            vectors = [list(item["values"]) for item in found]
            counts = [(item.get("statistics") or {}).get("token_count") for item in found]
            tokens = sum(int(count or 0) for count in counts)
        else:
            raise UpstreamProtocolError("upstream embeddings answer has no embeddings")
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise UpstreamProtocolError(f"upstream embedding is malformed: {exc!r}") from None
    if len(vectors) != len(request.input):
        raise UpstreamProtocolError("upstream answered a different number of embeddings")
    base64 = request.encoding_format == "base64"
    data: list[list[float] | str] = [base64_vector(v) for v in vectors] if base64 else list(vectors)
    return EmbeddingResponse(model=model, data=data, usage=Usage(input_tokens=tokens))
