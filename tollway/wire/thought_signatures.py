"""Gemini's thought signatures in OpenAI's Chat Completions shape, both ways.

Gemini 3 refuses a replayed function call without the ``thoughtSignature`` it gave it, and
every Gemini model reasons worse from history that lost its signatures. Chat Completions has
no place for one, so Google's own OpenAI-compatible API puts it on the tool call as
``extra_content: {"google": {"thought_signature": ...}}``, and clients that work with Gemini
(the OpenAI SDK replaying a message as it came, agents built for Google's endpoint) give it
back there. The gateway does the same:

- an answer's call that a Gemini signature precedes (a signed ``ReasoningPart`` just before
  the call's place; streamed, the signature of the chunk that brings the call) carries it
  (``signatures_of_calls``, ``signed_call``);
- a client's assistant turn whose calls carry one has it as that signed reasoning part before
  the call (``signatures_from_calls``), which the Gemini codec puts back on the call's part.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tollway.core.types import (
    GEMINI_SIGNATURE_PREFIX,
    ChatRequest,
    ContentPart,
    Message,
    ReasoningPart,
    TextPart,
)


def signed_call(call: dict[str, Any], signature: str) -> dict[str, Any]:
    """``call`` (a Chat Completions tool call or delta) carrying a canonical Gemini
    ``signature`` as Google's OpenAI-compatible API does."""
    google = {"thought_signature": signature[len(GEMINI_SIGNATURE_PREFIX) :]}
    return {**call, "extra_content": {"google": google}}


def gemini_signature(signature: str | None) -> str | None:
    """``signature`` if it is Gemini's (the canonical, prefixed form)."""
    return signature if signature and signature.startswith(GEMINI_SIGNATURE_PREFIX) else None


def signatures_of_calls(message: Message) -> list[str | None]:
    """The Gemini signature each of the message's calls follows, if any."""
    content, calls = message.content, message.tool_calls or ()
    if not isinstance(content, list):
        return [None] * len(calls)
    out: list[str | None] = []
    signed_at: set[int] = set()  # a signature signs the first call after it, not the next
    for call in calls:
        at = call.position
        before = content[at - 1] if at is not None and 0 < at <= len(content) else None
        if isinstance(before, ReasoningPart) and before.signer == "gemini" and at not in signed_at:
            signed_at.add(at or 0)
            out.append(before.signature)
        else:
            out.append(None)
    return out


def signatures_from_calls(request: ChatRequest) -> ChatRequest:
    """``request`` (an OpenAI-format client's) with the signatures its assistant turns' calls
    carry as signed reasoning parts before those calls; unchanged when none carries one."""
    messages = request.messages
    for index, message in enumerate(messages):
        if message.role == "assistant" and any(_carried(c.extra) for c in message.tool_calls or ()):
            messages = [*messages[:index], _placed(message), *messages[index + 1 :]]
    return request if messages is request.messages else replace(request, messages=messages)


def _carried(extra: dict[str, Any]) -> str | None:
    """The signature a client's tool call carries in ``extra_content.google``, if any."""
    content = extra.get("extra_content") if extra else None
    google = content.get("google") if isinstance(content, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return signature if isinstance(signature, str) and signature else None


def _placed(message: Message) -> Message:
    """An assistant turn with each call's signature a reasoning part just before the call:
    its text first, then its calls in order (where Chat Completions puts them)."""
    content = message.content
    parts: list[ContentPart] = (
        list(content) if isinstance(content, list) else [TextPart(content)] if content else []
    )
    calls = []
    for call in message.tool_calls or ():
        signature = _carried(call.extra)
        if signature is not None:
            parts.append(ReasoningPart(signature=GEMINI_SIGNATURE_PREFIX + signature))
        calls.append(replace(call, position=len(parts)))
    return replace(message, content=parts, tool_calls=calls)
