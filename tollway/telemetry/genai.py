"""The OpenTelemetry GenAI semantic conventions as the gateway writes them into spans.

Attribute names are plain strings here rather than imports from ``opentelemetry.semconv``:
the GenAI names live in that package's ``_incubating`` modules, which are private and move
between releases, while the names on the wire are what backends match on. Message content
(``capture_content``) follows the conventions' JSON shape: a list of
``{"role", "parts": [{"type": "text", "content"}, {"type": "tool_call", ...}, ...]}``.

This module needs no OpenTelemetry package; only ``tracing.py`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson

from tollway.core.errors import GatewayError
from tollway.core.types import (
    ChatChunk,
    Choice,
    Deployment,
    DocumentPart,
    ImagePart,
    Message,
    OpaquePart,
    ReasoningPart,
    TextPart,
)

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
SYSTEM = "gen_ai.system"
"""The older name of ``gen_ai.provider.name``, still read by many backends."""
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_TOP_P = "gen_ai.request.top_p"
REQUEST_STREAM = "gen_ai.request.stream"
REQUEST_CHOICES = "gen_ai.request.choice.count"
REQUEST_SEED = "gen_ai.request.seed"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_WRITE_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
EMBEDDING_DIMENSIONS = "gen_ai.embeddings.dimension.count"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
HTTP_STATUS = "http.response.status_code"

# The conventions' well-known provider names where one exists; other providers go by the
# gateway's own name (custom values are allowed). Data, not dispatch: nothing branches on it.
_PROVIDER_NAMES = {
    "azure_openai": "azure.ai.openai",
    "bedrock": "aws.bedrock",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "mistral": "mistral_ai",
}
_SYSTEM_NAMES = {**_PROVIDER_NAMES, "azure_openai": "az.ai.openai"}


def provider_name(provider: str) -> str:
    """``gen_ai.provider.name`` of a gateway provider family."""
    return _PROVIDER_NAMES.get(provider, provider)


def system_name(provider: str) -> str:
    """The older ``gen_ai.system`` value of a gateway provider family."""
    return _SYSTEM_NAMES.get(provider, provider)


def deployment_attributes(deployment: Deployment) -> dict[str, str | int]:
    """What an attempt span says of its deployment: provider, upstream model, server."""
    attributes: dict[str, str | int] = {
        PROVIDER: provider_name(deployment.provider),
        SYSTEM: system_name(deployment.provider),
        REQUEST_MODEL: deployment.model,
        "tollway.deployment": deployment.id,
    }
    url = urlsplit(deployment.api_base)
    if url.hostname:
        attributes[SERVER_ADDRESS] = url.hostname
        try:
            port = url.port
        except ValueError:
            port = None
        attributes[SERVER_PORT] = port or (443 if url.scheme == "https" else 80)
    return attributes


def error_type(error: GatewayError) -> str:
    """``error.type``: the exception's class (low cardinality; the code goes apart)."""
    return type(error).__name__


# --- content (only with capture_content) ----------------------------------------------------


Text = Callable[[str], str]
"""What a text becomes in a span (``BodyPolicy.text``: cut and redacted); as is by default."""


def _as_is(text: str) -> str:
    return text


def input_messages(messages: Iterable[Message], text: Text = _as_is) -> str:
    """``gen_ai.input.messages``: the conversation as the conventions' JSON."""
    return _dumps([_message(message, text) for message in messages])


def output_messages(choices: Sequence[Choice], text: Text = _as_is) -> str:
    """``gen_ai.output.messages`` of a complete answer."""
    out = []
    for choice in choices:
        message = _message(choice.message, text)
        message["finish_reason"] = choice.finish_reason or ""
        out.append(message)
    return _dumps(out)


def _message(message: Message, text: Text) -> dict[str, Any]:
    if message.role == "tool":
        response = {"type": "tool_call_response", "id": message.tool_call_id}
        return {"role": "tool", "parts": [{**response, "response": text(message.text())}]}
    parts: list[dict[str, Any]] = []
    content = message.content
    if isinstance(content, str):
        parts.append({"type": "text", "content": text(content)})
    elif content:
        parts.extend(_part(part, text) for part in content)
    parts.extend(_tool_call(c.id, c.name, text(c.arguments)) for c in message.tool_calls or ())
    out: dict[str, Any] = {"role": message.role, "parts": parts}
    if message.name:
        out["name"] = message.name
    return out


def _tool_call(call_id: str | None, name: str | None, arguments: str) -> dict[str, Any]:
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": arguments}


def _part(
    part: TextPart | ImagePart | DocumentPart | OpaquePart | ReasoningPart, text: Text
) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "content": text(part.text)}
    if isinstance(part, ReasoningPart):
        # Encrypted reasoning is recorded as there, never its data.
        return {"type": "reasoning", "content": text(part.text)}
    if isinstance(part, ImagePart):
        if part.url is not None:
            return {"type": "uri", "modality": "image", "uri": part.url}
        # Inline image data can be megabytes: its type is recorded, never its bytes.
        return {"type": "blob", "modality": "image", "mime_type": part.media_type}
    if isinstance(part, DocumentPart):
        # A document's bytes or text are recorded as an image's are: never.
        return {"type": "blob", "mime_type": part.media_type}
    return {"type": part.type}


class StreamedOutput:
    """The completion of a stream, gathered chunk by chunk for ``gen_ai.output.messages``."""

    __slots__ = ("_choices", "_text")

    def __init__(self, text: Text = _as_is) -> None:
        # index -> [text pieces, tool calls by index as [id, name, argument pieces], finish]
        self._choices: dict[int, list[Any]] = {}
        self._text = text

    def add(self, chunk: ChatChunk) -> None:
        """Take the content of one chunk."""
        for choice in chunk.choices:
            state = self._choices.get(choice.index)
            if state is None:
                state = self._choices[choice.index] = [[], {}, None]
            if choice.content:
                state[0].append(choice.content)
            for delta in choice.tool_calls or ():
                call = state[1].setdefault(delta.index, [None, None, []])
                call[0] = call[0] or delta.id
                call[1] = call[1] or delta.name
                call[2].append(delta.arguments)
            if choice.finish_reason is not None:
                state[2] = choice.finish_reason

    def messages(self) -> str:
        """``gen_ai.output.messages`` of what was streamed so far."""
        text = self._text
        out = []
        for _, (texts, calls, finish) in sorted(self._choices.items()):
            parts: list[dict[str, Any]] = []
            if texts:
                parts.append({"type": "text", "content": text("".join(texts))})
            for _, (call_id, name, pieces) in sorted(calls.items()):
                parts.append(_tool_call(call_id, name, text("".join(pieces))))
            out.append({"role": "assistant", "parts": parts, "finish_reason": finish or ""})
        return _dumps(out)


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()
