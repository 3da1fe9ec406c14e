"""Signed reasoning carried through a Responses client, as a ``reasoning`` item's
``encrypted_content``.

Claude (on Anthropic's API or Bedrock) wants its thinking back, text and signature unchanged,
in the turn of the tool calls whose results it is sent while thinking is on. The Responses API
has a field for reasoning a client cannot read but sends back: ``encrypted_content``. So a
``reasoning`` item made of Claude's signed thinking carries the blocks there (``seal``), and
the same item in a later ``input`` gives them back to the assistant turn it precedes
(``unseal``). Reasoning no provider signed is not carried (no provider is sent it back), nor
is a Responses upstream's own ``encrypted_content`` read (it is OpenAI's, sealed for OpenAI).
Gemini's thought signatures have a seal of their own (``responses_thought_signatures``): a
block here that holds one is refused, as a seal the gateway did not write.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from tollway.core.errors import InvalidRequest
from tollway.core.types import GEMINI_SIGNATURE_PREFIX, ChunkChoice, ReasoningDelta, ReasoningPart

T = TypeVar("T")

PREFIX = "tollway.reasoning:"
"""Starts the ``encrypted_content`` the gateway writes; OpenAI's own never does."""


def carried(parts: list[ReasoningPart]) -> list[ReasoningPart]:
    """The parts a reasoning item carries back: Claude's signed thinking."""
    return [part for part in parts if part.signer == "claude"]


def signed_delta(choice: ChunkChoice, wire_format: str | None) -> ReasoningDelta | None:
    """The signature or encrypted reasoning a streamed chunk's choice carries: its
    ``reasoning``'s, or (an Anthropic stream's chunk keeps its event as it came) a
    ``signature_delta`` or a ``redacted_thinking`` block."""
    delta = choice.reasoning
    if delta is not None and (delta.signature or delta.redacted is not None):
        return delta
    extra = choice.extra
    if wire_format != "anthropic" or not extra:
        return None
    event = extra.get("delta") or extra.get("content_block")
    if not isinstance(event, dict):
        return None
    kind = event.get("type")
    if kind == "signature_delta" and isinstance(event.get("signature"), str):
        return ReasoningDelta(signature=event["signature"])
    if kind == "redacted_thinking" and isinstance(event.get("data"), str):
        return ReasoningDelta(redacted=event["data"])
    return None


def seal(parts: list[ReasoningPart]) -> str | None:
    """``parts`` (Claude's signed thinking) as an ``encrypted_content``; ``None``: none."""
    if not parts:
        return None
    blocks = [
        {"redacted": part.redacted}
        if part.redacted is not None
        else {"text": part.text, "signature": part.signature}
        for part in parts
    ]
    return PREFIX + base64.b64encode(orjson.dumps(blocks)).decode()


def unseal(value: Any, param: str) -> list[ReasoningPart]:
    """The parts an ``encrypted_content`` at ``param`` carries: none when it is not the
    gateway's; a 400 naming it when it is but cannot be read."""
    return read_seal(value, PREFIX, param, lambda blocks: [_part(block) for block in blocks])


def read_seal(value: Any, prefix: str, param: str, read: Callable[[Any], list[T]]) -> list[T]:
    """What a seal of the gateway's beginning ``prefix`` at ``param`` carries, as ``read``
    makes it of the sealed JSON: none when ``value`` is no such seal; a 400 naming it when it
    is but cannot be read (``read`` raising any of the errors a wrong shape raises)."""
    if not isinstance(value, str) or not value.startswith(prefix):
        return []
    try:
        return read(orjson.loads(base64.b64decode(value[len(prefix) :], validate=True)))
    except (binascii.Error, ValueError, TypeError, KeyError, AttributeError):
        raise InvalidRequest(
            f"'{param}' is not reasoning the gateway wrote; send the reasoning item back as "
            "it came",
            param=param,
        ) from None


def _part(block: dict[str, Any]) -> ReasoningPart:
    if "redacted" in block:
        return ReasoningPart(redacted=_text(block["redacted"]))
    signature = _text(block["signature"])
    if signature.startswith(GEMINI_SIGNATURE_PREFIX):
        raise TypeError(signature)  # never sealed here: Gemini's have a seal of their own
    return ReasoningPart(text=_text(block["text"]), signature=signature)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value
