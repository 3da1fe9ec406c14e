"""OpenAI embeddings requests and responses in both directions."""

from __future__ import annotations

import base64
import sys
from array import array
from typing import Any, Literal, cast

from tollway.core.errors import InvalidRequest, UpstreamProtocolError
from tollway.core.types import EmbeddingRequest, EmbeddingResponse
from tollway.pricing.tokens import embedding_ids_text
from tollway.wire.fields import optional, refuse_credential_fields, required
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
    extra = {k: v for k, v in body.items() if k not in _KEYS}
    if extra:
        refuse_credential_fields(extra)
    return EmbeddingRequest(
        model=model,
        input=_input_from_wire(body.get("input")),
        dimensions=dimensions,
        encoding_format=cast(Literal["float", "base64"] | None, encoding),
        user=optional(body, "user", str),
        extra=extra,
    )


MOST_INPUTS = 2048
"""Inputs one OpenAI embeddings request may hold ("any array must be 2048 dimensions or
less"): refused here for every family, as OpenAI refuses it, rather than sent to a provider
that splits it into calls (Gemini, 100 texts a call) and bills them all."""

_API_REFERENCE = "Please check the API reference: https://platform.openai.com/docs/api-reference."


def _input_from_wire(raw: Any) -> list[str] | list[list[int]]:
    # OpenAI refuses an empty string, an empty token array and a boolean among token ids
    # alike, before embedding anything: so does the gateway, for every family (Gemini would
    # embed "" and read True as token id 1).
    inputs: list[Any] | None = None
    if isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and raw:
        if all(isinstance(item, str) for item in raw):
            inputs = raw
        elif all(_is_token(item) for item in raw):
            inputs = [raw]
        elif all(isinstance(item, list) and all(_is_token(t) for t in item) for item in raw):
            inputs = raw
    if inputs is None or not all(inputs):
        raise InvalidRequest(
            f"'$.input' is invalid: it must be a non-empty string, array of non-empty strings, "
            f"or array of non-empty token arrays. {_API_REFERENCE}",
            param="input",
        )
    if len(inputs) > MOST_INPUTS:
        raise InvalidRequest(
            f"'$.input' is invalid: array length must be {MOST_INPUTS} or less, got "
            f"{len(inputs)}. {_API_REFERENCE}",
            param="input",
        )
    return inputs


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def embedding_texts(request: EmbeddingRequest) -> list[str]:
    """``request``'s inputs as text, for a model that embeds text only: token arrays (OpenAI's
    embedding models' ``cl100k_base`` ids) as the text they encode; an id the encoding lacks
    is a 400 naming ``input[n]``."""
    inputs: list[str | list[int]] = list(request.input)
    return [
        item if isinstance(item, str) else embedding_ids_text(item, f"input[{i}]")
        for i, item in enumerate(inputs)
    ]


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


def embedding_response_from_wire(
    raw: Any, encoding: Literal["float", "base64"] | None = None
) -> EmbeddingResponse:
    """Canonical embeddings from an upstream body, in input order; a float list is encoded
    when the client asked for ``base64`` (``encoding``): some OpenAI-compatible servers
    ignore ``encoding_format`` and answer floats, which a client that asked for base64
    would take for a string."""
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
    if encoding == "base64":
        vectors = [v if isinstance(v, str) else base64_vector(v) for v in vectors]
    return EmbeddingResponse(model=str(raw.get("model") or ""), data=vectors, usage=usage)


def base64_vector(values: list[float]) -> str:
    """``values`` as OpenAI's API encodes an embedding: little-endian float32 bytes, base64."""
    packed = array("f", values)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


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
