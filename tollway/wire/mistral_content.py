"""Mistral's reasoning answers (Magistral) in the shape the OpenAI codec reads.

Mistral's reasoning models answer with ``message.content`` as a list of chunks rather than
text: ``{"type": "thinking", "thinking": [{"type": "text", "text": ...}]}`` (the reasoning,
itself a list of chunks) and ``{"type": "text", "text": ...}`` (the answer); a stream's
``delta.content`` is such a list too while the model reasons (the answer may then come as
plain text or as ``text`` chunks). The rest of the answer is OpenAI's shape.

``reasoning_in_content`` rewrites such a message or delta, in the parsed JSON, as the
OpenAI-compatible servers that show reasoning say it: the text chunks joined as ``content``
and the thinking as ``reasoning_content`` (DeepSeek's and vLLM's field), which the codec and
every writer already read (``wire/crossing.py``). Chunks of other kinds (``reference``
chunks, a ``thinking`` chunk's references) carry no text of the answer and are left out.
"""

from __future__ import annotations

from typing import Any

from tollway.core.errors import UpstreamProtocolError

REASONING_FIELD = "reasoning_content"


def reasoning_in_content(answer: dict[str, Any]) -> bool:
    """Rewrite every choice's ``message`` (or stream ``delta``) whose ``content`` is a list of
    chunks as text and ``reasoning_content``; whether anything was rewritten."""
    choices = answer.get("choices")
    if not isinstance(choices, list):
        return False
    rewritten = False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        for key in ("message", "delta"):
            message = choice.get(key)
            if isinstance(message, dict) and isinstance(message.get("content"), list):
                _split(message, stream=key == "delta")
                rewritten = True
    return rewritten


def _split(message: dict[str, Any], *, stream: bool) -> None:
    texts: list[str] = []
    thoughts: list[str] = []
    for chunk in message["content"]:
        if not isinstance(chunk, dict):
            raise UpstreamProtocolError("upstream answer's content chunk is not a JSON object")
        kind = chunk.get("type")
        if kind == "text":
            texts.append(_text(chunk.get("text")))
        elif kind == "thinking":
            inner = chunk.get("thinking")
            if isinstance(inner, str):  # not Mistral's documented shape, but plain enough
                thoughts.append(inner)
            elif isinstance(inner, list):
                thoughts.extend(
                    _text(piece.get("text"))
                    for piece in inner
                    if isinstance(piece, dict) and piece.get("type") == "text"
                )
    text = "".join(texts)
    if text or not (stream or message.get("tool_calls")):
        message["content"] = text
    else:
        message["content"] = None  # reasoning alone, or before tool calls: no answer text
    if thoughts:
        message[REASONING_FIELD] = (message.get(REASONING_FIELD) or "") + "".join(thoughts)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise UpstreamProtocolError("upstream answer's text chunk has no text")
    return value
