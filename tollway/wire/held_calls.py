"""Parallel tool calls streamed interleaved, held back so a writer can send them one by one.

An OpenAI-format stream numbers every tool-call fragment with its call's ``index``, so a server
may interleave parallel calls (every call's header before any arguments, or fragments in turn),
and nothing in the stream says that a call is complete. Anthropic's content blocks and the
Responses API's output items are strictly sequential. So a writer streams the first call live,
holds every call that starts while that one is open, and sends each held call whole (start,
its arguments, end), in index order, once the open call ends: when text or the end of the
answer comes.

Upstream formats whose calls are sequential by protocol (Anthropic's and Bedrock's blocks,
Gemini's whole calls) cannot interleave: there a new call ends the open one and every call
streams live, as it came.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tollway.core.types import ToolCallDelta

SEQUENTIAL_FORMATS = frozenset({"anthropic", "bedrock", "gemini"})
"""Upstream wire formats whose tool calls come one after the other, each complete before the
next begins."""


def may_interleave(wire_format: str | None) -> bool:
    """Whether tool calls parsed from ``wire_format`` may come interleaved (unknown: may)."""
    return wire_format not in SEQUENTIAL_FORMATS


@dataclass(slots=True)
class HeldCall:
    """A tool call that started while another was being streamed: its header and fragments."""

    index: int
    id: str | None
    name: str | None
    fragments: list[str] = field(default_factory=list)

    @property
    def arguments(self) -> str:
        """The arguments received so far, as one string."""
        return "".join(self.fragments)


def hold(held: dict[int, HeldCall], call: ToolCallDelta) -> None:
    """Keep ``call``'s fragment with the held call it belongs to, starting that if new."""
    kept = held.get(call.index)
    if kept is None:
        kept = held[call.index] = HeldCall(call.index, call.id, call.name)
    else:
        kept.id = kept.id or call.id
        kept.name = kept.name or call.name
    if call.arguments:
        kept.fragments.append(call.arguments)


def release(held: dict[int, HeldCall]) -> list[HeldCall]:
    """Every held call in index order; ``held`` is left empty."""
    calls = [held[index] for index in sorted(held)]
    held.clear()
    return calls
