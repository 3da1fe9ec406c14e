"""The head of an upstream stream: the chunks that open an answer but carry none of it.

Every family opens a stream with such chunks: OpenAI's role-only delta (``{"role":
"assistant", "content": ""}``), Azure's ``prompt_filter_results`` chunk before it, Anthropic's
``message_start`` and the empty start of its first text block, Bedrock's ``messageStart``,
Gemini's first candidate with no text yet. The pipeline holds them (``Pipeline.stream``) until
the first chunk that says something, so that an upstream failing right after its head (a very
common one: Anthropic's ``message_start`` then an ``overloaded_error`` event) still fails over
before the client has been sent a byte.

What ends the head is content, a tool call, a finish reason, usage, reasoning (Bedrock's
``reasoningContent``), or anything else a chunk carries in its ``extra`` that is not empty: a
refusal, an OpenAI-compatible server's reasoning text, a thinking block, or a keep-alive
(Anthropic's ``ping`` after the first, which a client must get while a model thinks).
"""

from __future__ import annotations

from typing import Any

from tollway.core.types import ChatChunk

HELD_AT_MOST = 8
"""Head chunks held before the stream is sent on anyway: an upstream that sends more empty
chunks than any head has is keeping its connection alive, and the client's must be too."""


def opens_only(chunk: ChatChunk) -> bool:
    """Whether ``chunk`` belongs to the answer's head: it names the answer (its role, id,
    model, content filter results) but carries nothing of it."""
    if chunk.usage is not None:
        return False
    for choice in chunk.choices:
        if choice.content or choice.tool_calls or choice.finish_reason is not None:
            return False
        if choice.reasoning is not None:  # reasoning is content to a client that shows it
            return False
        if choice.extra and not _empty(choice.extra):
            return False
    return True


def _empty(extra: dict[str, Any]) -> bool:
    """Whether a choice's extra fields hold nothing of the answer: only empty values (an
    OpenAI delta's ``refusal: null``) and the start of an empty text block (Anthropic)."""
    for key, value in extra.items():
        if key == "content_block":
            if value.get("type") != "text" or value.get("text"):
                return False
        elif value:
            return False
    return True
