"""One tool call an answer, for a family that has no switch for it.

A client that turns parallel calls off (OpenAI's ``parallel_tool_calls: false``, Anthropic's
``tool_choice.disable_parallel_tool_use``) wants at most one call a turn. Gemini has no such
setting, nor have Bedrock's models other than Claude (which takes Anthropic's own flag), so
their answers are cut to their first call: the calls after it were never made as far as the
client knows, and the model makes them again in a later turn if it still needs them. The
answer's text, reasoning and finish stay as they came (the finish is still a tool call).
"""

from __future__ import annotations

from dataclasses import replace

from tollway.core.types import ChatChunk, ChatRequest, ChatResponse, ChunkChoice


def wants_one_call(request: ChatRequest) -> bool:
    """Whether the client turned parallel tool calls off for a request that offers tools."""
    return request.parallel_tool_calls is False and bool(request.tools)


def first_call_only(response: ChatResponse) -> ChatResponse:
    """``response`` with each choice's calls after the first left out."""
    if all(len(choice.message.tool_calls or ()) < 2 for choice in response.choices):
        return response
    choices = [
        replace(choice, message=replace(choice.message, tool_calls=choice.message.tool_calls[:1]))
        if choice.message.tool_calls
        else choice
        for choice in response.choices
    ]
    return replace(response, choices=choices, raw=None)


class FirstCallOnly:
    """A stream's chunks with the fragments of each choice's calls after its first left out
    (one per stream: it remembers which call came first)."""

    __slots__ = ("_first",)

    def __init__(self) -> None:
        self._first: dict[int, int] = {}  # choice index -> the index of its first call

    def __call__(self, chunk: ChatChunk) -> ChatChunk | None:
        """``chunk``, less the fragments of later calls; ``None`` when nothing is left."""
        if not any(choice.tool_calls for choice in chunk.choices):
            return chunk
        choices = [self._first_call_of(choice) for choice in chunk.choices]
        if all(new is old for new, old in zip(choices, chunk.choices, strict=True)):
            return chunk
        choices = [choice for choice in choices if not _empty(choice)]
        if not choices and chunk.usage is None:  # (a running usage_so_far comes again)
            return None
        return replace(chunk, choices=choices, raw=None)

    def _first_call_of(self, choice: ChunkChoice) -> ChunkChoice:
        if not choice.tool_calls:
            return choice
        kept = self._first.setdefault(choice.index, choice.tool_calls[0].index)
        calls = [call for call in choice.tool_calls if call.index == kept]
        if len(calls) == len(choice.tool_calls):
            return choice
        return replace(choice, tool_calls=calls or None)


def _empty(choice: ChunkChoice) -> bool:
    return not (
        choice.role or choice.content or choice.tool_calls or choice.finish_reason
        or choice.reasoning or choice.extra
    )  # fmt: skip
