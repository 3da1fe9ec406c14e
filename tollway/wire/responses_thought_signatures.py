"""Gemini's thought signatures carried through a Responses client, as a ``reasoning`` item's
``encrypted_content``.

Gemini signs parts of its answers (``thoughtSignature``: the first function call of a step,
or the last part of an answer) and wants each signature back on the same part when the
conversation is replayed; Gemini 3 refuses a replayed call without its own (the gateway then
sends Google's placeholder, which passes but loses the model's reasoning). The Responses API's
place for what a client cannot read but sends back is a ``reasoning`` item's
``encrypted_content``, which the ``openai`` SDK and agents replay with the rest of the output.
So the signatures of an answer are sealed there (``seal``) with the part each was on
(``Signed``): a ``function_call`` by its ``call_id``, the answer's ``text``, or the ``end`` of
the answer (after its last part). The item precedes the answer's items; streamed, the text's
signature comes after the text, so an item of its own follows the message.

On the way back (``unseal``), each becomes a reasoning part signed by Gemini, marked with its
part, and ``placed`` puts it just before that part in the assistant turn, where the Gemini
codec gives it back (``gemini_content.assistant_parts``); other families are not sent it
(``crossing.REPLAYS_REASONING``).

What is sealed says whose it is: ``PREFIX`` (the format and its version), then base64 of
``{"family": "gemini", "signatures": [{"part": ..., "call_id": ..., "signature": ...}]}``, the
signature as Gemini gave it. Claude's signed thinking has its own seal
(``responses_reasoning``), whose blocks are never read as Gemini's, nor these as Claude's.
As there, ``encrypted_content`` that is not the gateway's (OpenAI's own) is not read, and one
that says it is but cannot be read is a 400 naming it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from typing import Any

import orjson

from tollway.core.types import (
    GEMINI_SIGNATURE_PREFIX,
    ContentPart,
    Message,
    ReasoningPart,
    TextPart,
    ToolCall,
)
from tollway.wire.responses_reasoning import read_seal

PREFIX = "tollway.gemini-signatures.v1:"
"""Starts the ``encrypted_content`` that carries Gemini's signatures; OpenAI's never does,
nor does the gateway's seal of Claude's thinking (``responses_reasoning.PREFIX``)."""
CALL, TEXT, END = "function_call", "text", "end"
"""The parts a signature may be on: a function call, the answer's text, the end of the answer
(a stream's closing empty part, after its last part)."""
_PARTS = frozenset({CALL, TEXT, END})
_FAMILY = "gemini"
_MARK = "tollway.signed_part"
"""Where a read signature's part waits, in its reasoning part's ``extra``, to be placed."""


@dataclass(frozen=True, slots=True)
class Signed:
    """One Gemini signature (canonical: ``GEMINI_SIGNATURE_PREFIX`` first) and the part of
    the answer it was on: ``CALL`` (the call ``call_id``), ``TEXT`` or ``END``."""

    signature: str
    part: str
    call_id: str | None = None


def is_geminis(signature: str | None) -> bool:
    """Whether ``signature`` (a canonical reasoning signature) is Gemini's."""
    return bool(signature) and str(signature).startswith(GEMINI_SIGNATURE_PREFIX)


def signatures_of(message: Message) -> list[Signed]:
    """The Gemini signatures of a whole answer, each with the part it was on (as
    ``gemini_content`` reads them: a signature signs the part after it)."""
    content = message.content
    if not isinstance(content, list):
        return []
    calls = message.tool_calls or []
    at: dict[int, list[ToolCall]] = {}
    for call in calls:
        at.setdefault(len(content) if call.position is None else call.position, []).append(call)
    out: list[Signed] = []
    waiting: str | None = None
    for index in range(len(content) + 1):
        for call in at.get(index, ()):
            if waiting is not None:
                out.append(Signed(waiting, CALL, call.id))
                waiting = None
        part = content[index] if index < len(content) else None
        if isinstance(part, ReasoningPart):
            if is_geminis(part.signature):
                waiting = part.signature
        elif part is not None and waiting is not None and not _empty(part):
            out.append(Signed(waiting, TEXT))
            waiting = None
    if waiting is not None:
        out.append(Signed(waiting, END))
    return out


def _empty(part: ContentPart) -> bool:
    return isinstance(part, TextPart) and not part.text


def seal(signed: list[Signed]) -> str | None:
    """``signed`` as an ``encrypted_content``; ``None``: none."""
    if not signed:
        return None
    entries = [
        {
            "part": each.part,
            **({"call_id": each.call_id} if each.part == CALL else {}),
            "signature": each.signature[len(GEMINI_SIGNATURE_PREFIX) :],
        }
        for each in signed
    ]
    sealed = orjson.dumps({"family": _FAMILY, "signatures": entries})
    return PREFIX + base64.b64encode(sealed).decode()


def unseal(value: Any, param: str) -> list[Signed]:
    """The signatures an ``encrypted_content`` at ``param`` carries: none when it is not this
    seal; a 400 naming it when it is but cannot be read."""
    return read_seal(value, PREFIX, param, _signatures)


def _signatures(sealed: dict[str, Any]) -> list[Signed]:
    if sealed["family"] != _FAMILY:
        raise ValueError(sealed["family"])
    return [_signed(entry) for entry in sealed["signatures"]]


def _signed(entry: dict[str, Any]) -> Signed:
    signature, part = entry["signature"], entry["part"]
    if not isinstance(signature, str) or not signature or part not in _PARTS:
        raise ValueError(entry)
    call_id = entry["call_id"] if part == CALL else None
    if part == CALL and not (isinstance(call_id, str) and call_id):
        raise ValueError(entry)
    return Signed(GEMINI_SIGNATURE_PREFIX + signature, part, call_id)


def marked(signed: Signed) -> ReasoningPart:
    """A read signature as the reasoning part ``placed`` will put before its part."""
    part = signed.call_id if signed.part == CALL else None
    return ReasoningPart(signature=signed.signature, extra={_MARK: [signed.part, part]})


def placed(message: Message) -> Message:
    """``message`` with each signature read from a reasoning item (``marked``) just before
    its part: a call's before the call, the text's before the (last) text, the end's after
    everything; a signature whose call the turn no longer has is dropped."""
    content = message.content
    if not isinstance(content, list) or not any(_mark(part) for part in content):
        return message
    parts: list[ContentPart] = [part for part in content if _mark(part) is None]
    signatures: dict[tuple[str, str | None], ReasoningPart] = {}
    for part in content:
        mark = _mark(part)
        if mark is not None and isinstance(part, ReasoningPart):  # a part has one: the first
            signatures.setdefault(mark, ReasoningPart(signature=part.signature))
    text_signature = signatures.get((TEXT, None))
    if text_signature is not None:
        texts = [index for index, part in enumerate(parts) if isinstance(part, TextPart)]
        parts.insert(texts[-1] if texts else len(parts), text_signature)
    calls = []
    for call in message.tool_calls or ():
        signature = signatures.get((CALL, call.id))
        if signature is not None:
            parts.append(signature)
        calls.append(replace(call, position=len(parts)))
    end_signature = signatures.get((END, None))
    if end_signature is not None:
        parts.append(end_signature)
    return replace(message, content=parts, tool_calls=calls or message.tool_calls)


def _mark(part: ContentPart) -> tuple[str, str | None] | None:
    """The part a read signature waits to be placed before (see ``marked``), if any."""
    mark = part.extra.get(_MARK) if isinstance(part, ReasoningPart) else None
    return (mark[0], mark[1]) if isinstance(mark, list) else None
