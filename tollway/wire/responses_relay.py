"""A Responses upstream's events written on to a Responses client (``EventRelay``).

Each event goes as it came (its chunk's ``raw``), but for what a stage changed: a text delta
a stage changed is written from the chunk's text, and once one was (or one was dropped), the
events that repeat the whole text (``response.output_text.done``,
``response.content_part.done``, ``response.output_item.done``, ``response.completed``) say
the text the client was sent. A stream that fails after its first byte ends with ``error``
and ``response.failed`` events numbered after the upstream's.
"""

from __future__ import annotations

from typing import Any

import orjson

from tollway.core.errors import GatewayError
from tollway.core.types import JSON, ChatChunk
from tollway.wire.responses_upstream import OPENING_EVENTS, TERMINAL_EVENTS

Texts = dict[tuple[Any, Any], list[str]]
"""Text deltas by output and content index."""


class EventRelay:
    """Writes a Responses upstream's events on to a Responses client as they came, and the
    closing events of a stream that fails after its first byte, numbered after them."""

    def __init__(self) -> None:
        self._sequence = 0
        self._response: JSON = {}
        self._done: list[JSON] = []
        self._texts: Texts = {}
        """The text deltas the client was sent, by output and content index."""
        self._rewrite = False
        """A stage changed (or dropped) a text delta: the closing events, which repeat the
        whole text, are written with what the client was sent instead."""

    def feed(self, chunk: ChatChunk) -> bytes:
        """One event; a chunk a stage changed (its ``raw`` cleared) is written from its event
        with the chunk's text in place of the upstream's, and so are the events that close
        its part, item and response once one was."""
        event = chunk.extra
        kind = str(event.get("type"))
        number = event.get("sequence_number")
        if isinstance(number, int):
            self._sequence = number + 1
        raw = chunk.raw
        if kind == "response.output_text.delta":
            if raw is None:
                self._rewrite = True
                event = _changed(event, chunk)
            key = (event.get("output_index"), event.get("content_index"))
            self._texts.setdefault(key, []).append(str(event.get("delta") or ""))
        elif kind in _CLOSING:
            if kind == "response.output_text.done" and not self._rewrite:
                sent = self._texts.get((event.get("output_index"), event.get("content_index")))
                self._rewrite = sent is not None and "".join(sent) != event.get("text")
            if self._rewrite:
                event, raw = _closed(kind, event, self._texts), None
        if kind in OPENING_EVENTS and isinstance(event.get("response"), dict):
            self._response = event["response"]
        elif kind == "response.output_item.done" and isinstance(event.get("item"), dict):
            self._done.append(event["item"])
        if raw is None:  # changed above (a text delta, a closing event), or left as it came
            raw = orjson.dumps(event)
        return b"event: " + kind.encode() + b"\ndata: " + raw + b"\n\n"

    def error(self, exc: GatewayError) -> bytes:
        """``error``, then ``response.failed`` with the upstream's response, the items it
        completed and the error, as the gateway ends any Responses stream that fails."""
        code = exc.code or exc.openai_type
        fields = {"code": code, "message": exc.message, "param": exc.param}
        failed = "rate_limit_exceeded" if exc.status == 429 else "server_error"
        response = {
            **self._response,
            "status": "failed",
            "output": self._done,
            "error": {"code": failed, "message": exc.message},
        }
        return self._event("error", fields) + self._event("response.failed", {"response": response})

    def _event(self, kind: str, fields: JSON) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


_CLOSING = frozenset(
    {
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        *TERMINAL_EVENTS,
    }
)
"""The events that repeat a text part whole: its own, its item's and the response's."""


def _closed(kind: str, event: JSON, texts: Texts) -> JSON:
    """A closing event with the texts the client was sent in place of the upstream's."""
    index = event.get("output_index")
    if kind == "response.output_text.done":
        sent = texts.get((index, event.get("content_index")))
        return event if sent is None else {**event, "text": "".join(sent)}
    if kind == "response.content_part.done":
        sent = texts.get((index, event.get("content_index")))
        part = event.get("part")
        if sent is None or not isinstance(part, dict) or part.get("type") != "output_text":
            return event
        return {**event, "part": _part_as_sent(part, sent)}
    if kind == "response.output_item.done":
        return {**event, "item": _item_as_sent(event.get("item"), index, texts)}
    response = event.get("response")
    if not isinstance(response, dict) or not isinstance(response.get("output"), list):
        return event
    output = [_item_as_sent(item, at, texts) for at, item in enumerate(response["output"])]
    return {**event, "response": {**response, "output": output}}


def _item_as_sent(item: Any, index: Any, texts: Texts) -> Any:
    """A message item with its text parts as the client was sent them."""
    if not isinstance(item, dict) or not isinstance(item.get("content"), list):
        return item
    content = []
    for at, part in enumerate(item["content"]):
        sent = texts.get((index, at))
        if sent is not None and isinstance(part, dict) and part.get("type") == "output_text":
            part = _part_as_sent(part, sent)
        content.append(part)
    return {**item, "content": content}


def _part_as_sent(part: JSON, sent: list[str]) -> JSON:
    """An ``output_text`` part with the text the client was sent; its annotations dropped if
    that text changed (their offsets point into the upstream's), as in a changed answer."""
    text = "".join(sent)
    if text == part.get("text"):
        return part
    if part.get("annotations"):
        return {**part, "text": text, "annotations": []}
    return {**part, "text": text}


def _changed(event: JSON, chunk: ChatChunk) -> JSON:
    """``event`` with what a stage changed in its chunk: the text of a text delta."""
    if event.get("type") == "response.output_text.delta":
        text = "".join(choice.content or "" for choice in chunk.choices)
        return {**event, "delta": text}
    return event
