"""Prompt and response bodies for the request log: what is kept, and what is redacted.

Bodies are kept only for the teams ``telemetry.request_log.bodies`` names (or for all with
``enabled``). They are built and redacted by the writer's background task, never on the
request path: the pipeline stage only keeps a reference to the canonical request and to what
was answered. Nothing from the HTTP request but its parsed body is kept: no header, so never
the client's ``Authorization``.

A prompt is ``{"messages": [{"role", "content", ...}]}`` (images as a count, tool calls as
name and arguments) or, for embeddings, ``{"input": [...]}``; a response is
``{"text": ..., "tool_calls": [...]}``. Every text is cut to ``max_chars`` and, with
``redact`` (the default), passed through ``redact``: e-mail addresses become ``[EMAIL]``
(found from each ``@``, in linear time: ``_email_spans``); ``Bearer <token>`` becomes
``Bearer [SECRET]``; API-key-looking strings become ``[SECRET]`` (``sk-``, ``sk-ant-``,
``pk-``, ``rk-``, ``tw-`` followed by 16 or more key characters; AWS ``AKIA``/``ASIA`` ids;
GitHub ``ghp_``/``gho_``/``github_pat_`` tokens; Slack ``xox?-`` tokens; Google ``AIza``
keys; JWTs); 13 to 19 digits (spaces or dashes between) that pass the Luhn check become
``[CARD]``; US social security numbers ``123-45-6789`` become ``[SSN]``. It is a net for
the obvious, not a guarantee: keep bodies off for teams whose prompts must never be stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tollway.core.types import (
    ChatRequest,
    ChatResponse,
    DocumentPart,
    EmbeddingRequest,
    ImagePart,
    Message,
    OpaquePart,
    ToolCallDelta,
)
from tollway.telemetry.request_log_rows import clean_text

_EMAIL_LOCAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
_EMAIL_DOMAIN = re.compile(r"[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_SECRET = (
    r"\b(?:sk-ant-|sk-|pk-|rk-|tw-)[A-Za-z0-9_\-]{16,}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\b(?:ghp_|gho_|ghu_|ghs_|github_pat_)[A-Za-z0-9_]{20,}"
    r"|\bxox[abprs]-[A-Za-z0-9\-]{10,}"
    r"|\bAIza[0-9A-Za-z_\-]{30,}"
    r"|\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"
)


def _cards(match: re.Match[str]) -> str:
    digits = [int(c) for c in match.group(0) if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return match.group(0)
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return "[CARD]" if total % 10 == 0 else match.group(0)


def _email_spans(text: str) -> Iterator[tuple[int, int]]:
    """Where ``text`` holds e-mail addresses (``local@domain.tld``), in order.

    What the regex ``[local chars]+@domain`` finds, found from each ``@`` instead: that
    regex was tried from every character of a run of letters and digits, each try reading
    to the run's end, so a 20,000-character run (a pasted base64 blob) took about 0.5 s of
    the event loop. Here each ``@`` reads back over its local part once and its domain once.
    """
    done = 0
    at = text.find("@")
    while at != -1:
        start = at
        while start > done and text[start - 1] in _EMAIL_LOCAL:
            start -= 1
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        if start < at and domain is not None:
            yield start, domain.end()
            done = domain.end()
            at = text.find("@", done)
        else:
            at = text.find("@", at + 1)


def _emails(text: str, cut: int) -> tuple[str, int]:
    """``text`` with every e-mail address as ``[EMAIL]``, and where ``cut`` is now."""
    kept: list[str] = []
    cuts = _Cut(cut)
    done = 0
    for start, end in _email_spans(text):
        kept += (text[done:start], "[EMAIL]")
        cuts.replaced(start, end, 7)
        done = end
    if not kept:
        return text, cut
    kept.append(text[done:])
    return "".join(kept), cuts.now()


class _Cut:
    """Follows a position of a text through one pass of replacements, made in order: it
    moves by what the replacements before it added or took, and a replacement across it is
    kept whole (a secret across a cut is never cut)."""

    __slots__ = ("moved", "position", "shift")

    def __init__(self, position: int) -> None:
        self.position = position
        self.shift = 0
        self.moved: int | None = None

    def replaced(self, start: int, end: int, length: int) -> None:
        """``text[start:end]`` became ``length`` characters."""
        if self.moved is None and end > self.position:
            across = start < self.position
            self.moved = start + self.shift + length if across else self.position + self.shift
        self.shift += length - (end - start)

    def now(self) -> int:
        """Where the position is in the text the pass made."""
        return self.position + self.shift if self.moved is None else self.moved


def _substituted(
    pattern: re.Pattern[str],
    replacement: str | Callable[[re.Match[str]], str],
    text: str,
    cut: int,
) -> tuple[str, int]:
    """``pattern.sub(replacement, text)``, and where ``cut`` is in it."""
    cuts = _Cut(cut)

    def replace(match: re.Match[str]) -> str:
        new = replacement(match) if callable(replacement) else match.expand(replacement)
        if new != match.group(0):  # a number that fails the Luhn check is left as it is
            cuts.replaced(match.start(), match.end(), len(new))
        return new

    return pattern.sub(replace, text), cuts.now()


REDACTIONS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"\b(Bearer\s+)[A-Za-z0-9._~+/\-]{8,}=*", re.IGNORECASE), r"\1[SECRET]"),
    (re.compile(_SECRET), "[SECRET]"),
    (re.compile(r"\b\d(?:[ \-]?\d){12,18}\b"), _cards),
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), "[SSN]"),
)
"""The redactions applied to every text of a kept body, in order, after the e-mail
addresses (``redact``)."""


def redact(text: str) -> str:
    """``text`` with e-mail addresses, secrets, card and social security numbers replaced."""
    text = _emails(text, 0)[0]
    for pattern, replacement in REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def _redacted(text: str, cut: int) -> tuple[str, int]:
    """``redact(text)``, and where what was ``text[:cut]`` ends in it (a replacement across
    ``cut`` included whole)."""
    text, cut = _emails(text, cut)
    for pattern, replacement in REDACTIONS:
        text, cut = _substituted(pattern, replacement, text, cut)
    return text, cut


_MARGIN = 256


class BodyPolicy:
    """Turns canonical requests and answers into the JSON the request log keeps."""

    def __init__(self, *, max_chars: int, redact: bool) -> None:
        self.max_chars = max_chars
        self.redact = redact

    def text(self, value: str) -> str:
        """``value`` cut to ``max_chars``, redacted, without NUL characters (which
        PostgreSQL's JSONB cannot hold) and with lone surrogates (no UTF-8 has them) as
        ``?``."""
        if len(value) <= self.max_chars:
            return clean_text(redact(value) if self.redact else value)
        # Redacted a little past the cut, so a secret across it is still found; never the
        # whole of a huge text (the regex engine holds the event loop while it runs). Cut
        # where the first max_chars characters end once redacted: replacements shorten the
        # text, and a cut at max_chars of the redacted text reached into the margin, whose
        # last secret the margin's end may have halved, so left unredacted.
        kept = value[: self.max_chars]
        if self.redact:
            redacted, cut = _redacted(value[: self.max_chars + _MARGIN], self.max_chars)
            kept = redacted[:cut]
        return clean_text(kept + f"…[{len(value) - self.max_chars} more chars]")

    def prompt(self, request: ChatRequest | EmbeddingRequest) -> dict[str, Any]:
        """What was asked."""
        if isinstance(request, EmbeddingRequest):
            return {
                "input": [
                    self.text(item) if isinstance(item, str) else f"[{len(item)} tokens]"
                    for item in request.input
                ]
            }
        return {"messages": [self._message(message) for message in request.messages]}

    def _message(self, message: Message) -> dict[str, Any]:
        kept: dict[str, Any] = {
            "role": clean_text(message.role),
            "content": self.text(message.text()),
        }
        if isinstance(message.content, list):
            images = sum(1 for part in message.content if isinstance(part, ImagePart))
            others = [
                clean_text(part.type) if isinstance(part, OpaquePart) else "document"
                for part in message.content
                if isinstance(part, (OpaquePart, DocumentPart))
            ]
            if images:
                kept["images"] = images
            if others:
                kept["other_parts"] = others
        if message.tool_calls:
            kept["tool_calls"] = [
                {"name": clean_text(call.name), "arguments": self.text(call.arguments)}
                for call in message.tool_calls
            ]
        if message.tool_call_id is not None:
            kept["tool_call_id"] = clean_text(message.tool_call_id)
        return kept

    def response(self, captured: Sequence[object]) -> dict[str, Any] | None:
        """What was answered: a complete response, or the streamed pieces in order."""
        texts: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        for item in captured:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, ToolCallDelta):
                call = calls.setdefault(item.index, {"name": "", "arguments": ""})
                call["name"] += item.name or ""
                call["arguments"] += item.arguments
            elif isinstance(item, ChatResponse):
                for choice in item.choices:
                    texts.append(choice.message.text())
                    for call_made in choice.message.tool_calls or ():
                        calls[len(calls)] = {
                            "name": call_made.name,
                            "arguments": call_made.arguments,
                        }
        if not texts and not calls:
            return None
        kept: dict[str, Any] = {"text": self.text("".join(texts))}
        if calls:
            kept["tool_calls"] = [
                {"name": clean_text(call["name"]), "arguments": self.text(call["arguments"])}
                for _, call in sorted(calls.items())
            ]
        return kept
