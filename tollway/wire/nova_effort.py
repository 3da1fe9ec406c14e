"""A client's reasoning effort as Amazon Nova 2's extended thinking on Bedrock.

Nova 2 (``amazon.nova-2-lite-v1:0``; ``bedrock_models.NOVA_2``) takes no budget but a level:
``additionalModelRequestFields.reasoningConfig`` = ``{"type": "enabled",
"maxReasoningEffort": "low" | "medium" | "high"}``. An OpenAI client's ``reasoning_effort``
is the level of its name (``minimal`` the least, ``low``; ``xhigh`` the most, ``high``;
``none`` no reasoning, Nova's default); an Anthropic client's ``output_config.effort`` too
(``xhigh`` and ``max`` are ``high``). Nova answers with ``reasoningContent`` blocks
(unsigned, so never sent back to it), which reach the client as reasoning like Claude's.
Nova's first models have no reasoning: their family does not take it, and the field stays
a 400 naming it (``bedrock_request``, ``crossing.request_for``).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from tollway.core.types import ChatRequest
from tollway.wire.effort import take_effort, take_output_effort

NOVA_EFFORTS = MappingProxyType(
    {
        "none": None, "minimal": "low", "low": "low", "medium": "medium", "high": "high",
        "xhigh": "high",
    }
)  # fmt: skip
"""Nova's ``maxReasoningEffort`` per OpenAI ``reasoning_effort`` (``None``: no reasoning)."""
NOVA_OUTPUT_EFFORTS = MappingProxyType(
    {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
)
"""Nova's ``maxReasoningEffort`` per Anthropic ``output_config.effort``."""


def reasoning_config_for_effort(request: ChatRequest) -> tuple[ChatRequest, dict[str, Any] | None]:
    """``request`` without the client's effort, and Nova's ``reasoningConfig`` for it
    (``None``: none asked, or ``none``)."""
    request, level = take_effort(request, NOVA_EFFORTS, "an Amazon Nova 2 deployment")
    request, output_effort = take_output_effort(request)
    if level is None and output_effort is not None:
        level = NOVA_OUTPUT_EFFORTS.get(output_effort)
    if level is None:
        return request, None
    return request, {"type": "enabled", "maxReasoningEffort": level}
