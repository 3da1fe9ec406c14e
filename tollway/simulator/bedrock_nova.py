"""Amazon Nova 2's extended thinking on the simulated Converse API, checked as Bedrock does.

Nova 2 (``amazon.nova-2-lite-v1:0``, with an inference profile's region prefix too) reasons
when ``additionalModelRequestFields.reasoningConfig`` says ``{"type": "enabled",
"maxReasoningEffort": "low" | "medium" | "high"}`` (``"disabled"``, the default, does not);
Nova's first models (``amazon.nova-lite-v1:0`` ...) do not know the field, whose key is then
the model's "extraneous key" 400 (``bedrock_api.check_model_fields``). Its reasoning comes as
a ``reasoningContent`` block without a signature (Nova signs none).
"""

from __future__ import annotations

from typing import Any

from tollway.simulator.content import InvalidRequest

REASONING_CONFIG = "reasoningConfig"
EFFORTS = ("low", "medium", "high")
"""Nova 2's ``maxReasoningEffort`` levels."""
_KEYS = frozenset({"type", "maxReasoningEffort"})


def reasons_by_level(model: str) -> bool:
    """Whether the Nova model ``model`` names takes ``reasoningConfig`` (Nova 2)."""
    return "amazon.nova-2-" in model


def nova_reasoning(fields: dict[str, Any]) -> bool:
    """Whether ``reasoningConfig`` among a Nova 2 request's ``additionalModelRequestFields``
    turns reasoning on (checked as Bedrock checks it)."""
    config = fields.get(REASONING_CONFIG)
    if config is None:
        return False
    if not isinstance(config, dict):
        raise InvalidRequest("reasoningConfig must be an object", REASONING_CONFIG)
    if extra := sorted(set(config) - _KEYS):
        raise InvalidRequest(
            f"Malformed input request: extraneous key [{extra[0]}] is not permitted in "
            "reasoningConfig, please reformat your input and try again.",
            REASONING_CONFIG,
        )
    kind = config.get("type", "disabled")
    if kind not in ("enabled", "disabled"):
        raise InvalidRequest(
            "reasoningConfig.type must be one of: enabled, disabled", REASONING_CONFIG
        )
    effort = config.get("maxReasoningEffort")
    if effort is not None and effort not in EFFORTS:
        raise InvalidRequest(
            f"reasoningConfig.maxReasoningEffort must be one of: {', '.join(EFFORTS)}",
            REASONING_CONFIG,
        )
    return bool(kind == "enabled")
