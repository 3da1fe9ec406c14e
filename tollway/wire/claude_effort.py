"""OpenAI's ``reasoning_effort`` (Responses: ``reasoning.effort``) as Claude's extended thinking.

Claude takes no effort level; it thinks within a token budget (``thinking: {"type": "enabled",
"budget_tokens": N}``, at least 1024, less than ``max_tokens``, which counts the thinking as
OpenAI's ``max_completion_tokens`` counts reasoning). A level is the budget Google's
OpenAI-compatible endpoint gives it for Gemini (``wire/effort.py``; ``minimal`` the least
Claude takes), so one level asks the same of both families; ``none`` is no thinking, other
levels a 400 naming the field. With the client's ``max_tokens`` the budget is cut to fit under
it (a limit that leaves no 1024 is a 400); without one, ``max_tokens`` is the budget plus the
answer room a request without a limit gets (``DEFAULT_MAX_TOKENS``).

Two requests are sent without thinking, since Claude would refuse them with it: one that
forces a tool call (``tool_choice`` ``required`` or a named function), and one that answers the
tool calls of a turn that does not start with Claude's signed thinking (an OpenAI client never
keeps it; with thinking on, Claude requires it back in that turn). The tool loop then goes on
without extended thinking, and the next question thinks again. The second holds for a client's
own ``thinking`` too (an Anthropic or Converse client's): a turn whose calls another family
made, in a fallback or a model group of several families, holds no thinking Claude signed
(Gemini's signature goes back to Gemini only, an OpenAI-compatible model's reasoning is
unsigned), which the client cannot mend.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from tollway.core.errors import InvalidRequest
from tollway.core.types import ChatRequest, Message, ReasoningPart
from tollway.wire.effort import EFFORT, EFFORT_BUDGETS, take_effort

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` sent to Anthropic when the client set none (Anthropic requires one), and the
answer room beside a thinking budget."""
MIN_BUDGET = 1024
"""The least ``budget_tokens`` Claude takes."""
CLAUDE_BUDGETS = MappingProxyType({**EFFORT_BUDGETS, "minimal": MIN_BUDGET})
"""``budget_tokens`` per ``reasoning_effort``: the shared levels, and ``minimal`` as the least
Claude takes."""


def thinking_for_effort(request: ChatRequest) -> ChatRequest:
    """``request`` with an OpenAI client's ``reasoning_effort`` as Claude's ``thinking`` (and
    the ``max_tokens`` it needs), the field itself taken out; others unchanged."""
    plain, budget = take_effort(request, CLAUDE_BUDGETS, "a Claude deployment")
    if _thinks(plain) and _answers_unthought_calls(plain.messages, others_only=True):
        return replace(plain, thinking=None)  # the client's own thinking (the docstring)
    if not budget or _forces_a_call(request) or _answers_unthought_calls(request.messages):
        return plain  # none asked, "none", or a request Claude would refuse with thinking
    if request.max_tokens is None:
        max_tokens = budget + DEFAULT_MAX_TOKENS
    elif request.max_tokens > MIN_BUDGET:
        max_tokens, budget = request.max_tokens, min(budget, request.max_tokens - 1)
    else:
        raise InvalidRequest(
            f"'{EFFORT}' needs a token limit above {MIN_BUDGET} on a Claude deployment: "
            f"Claude thinks in at least {MIN_BUDGET} tokens, counted within the limit",
            param=EFFORT,
        )
    thinking = {"type": "enabled", "budget_tokens": budget}
    return replace(plain, thinking=thinking, max_tokens=max_tokens)


def _thinks(request: ChatRequest) -> bool:
    thinking = request.thinking
    return thinking is not None and thinking.get("type", "disabled") != "disabled"


def _forces_a_call(request: ChatRequest) -> bool:
    choice = request.tool_choice
    return bool(request.tools) and choice is not None and choice.mode in ("required", "function")


CLAUDE_CALL_IDS = ("toolu_", "tooluse_")
"""How the ids of the tool calls Claude makes begin: on Anthropic's API, and on Bedrock."""


def _answers_unthought_calls(messages: list[Message], others_only: bool = False) -> bool:
    """Whether the request answers the tool calls of a turn that does not start with
    Claude's signed thinking; ``others_only``: and that Claude did not make (ids of its own:
    a turn of Claude's without its thinking is the client's to mend, and Claude's to judge,
    as it would directly)."""
    if not messages or messages[-1].role != "tool":
        return False
    turn = next((m for m in reversed(messages) if m.role == "assistant"), None)
    if turn is None or not turn.tool_calls:
        return False
    if others_only and all(call.id.startswith(CLAUDE_CALL_IDS) for call in turn.tool_calls):
        return False
    content = turn.content
    first = content[0] if isinstance(content, list) and content else None
    return not (isinstance(first, ReasoningPart) and first.signer == "claude")
