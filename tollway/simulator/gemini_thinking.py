"""Gemini thinking in the simulator: ``thinkingConfig``, thought parts and thought signatures.

With ``generationConfig.thinkingConfig.thinkingBudget`` other than 0 (``-1``: dynamic), or,
for a Gemini 3 model (``gemini-3...`` and later), any ``thinkingLevel`` (``MINIMAL``, ``LOW``,
``MEDIUM``, ``HIGH``, in either case) or just ``includeThoughts``, the model reasons before it
answers; as Gemini does, a level for an older model, an unknown level, and a level with a
budget are a 400; its reasoning tokens are ``usageMetadata.thoughtsTokenCount``
(not in ``candidatesTokenCount``). With ``includeThoughts`` the answer starts with the
reasoning as a ``thought: true`` text part (streamed: one such part a token). The answer is
signed (``thoughtSignature``) as Gemini 3 signs it: on its first ``functionCall`` part, or,
without calls, on its last part (streamed: the last event's empty text part).

On the way back every ``thoughtSignature`` in a ``model`` turn must be one the simulator gave
(or Google's placeholder for history the model did not write, ``skip_thought_signature_
validator``), and, with thinking on, the model turn whose function calls the request answers
must carry a signature on its first call, as Gemini 3 requires: both are a 400 otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from tollway.simulator.content import Completion, InvalidRequest

PLACEHOLDER = "skip_thought_signature_validator"
"""Google's documented signature for function calls the model did not produce itself."""
_KEY = b"tollway-sim-gemini-thought\0"
_GEMINI_3 = re.compile(r"(?:^|/)gemini-([3-9]|\d\d+)(?:[.-]|$)")
_GEMINI_2_5 = re.compile(r"(?:^|/)gemini-2\.5-")
_LEVELS = frozenset({"MINIMAL", "LOW", "MEDIUM", "HIGH"})
_MISSING = (
    "Function call is missing a thought_signature in functionCall parts. This is required for "
    "tools to work correctly, and missing thought_signature may lead to degraded model "
    "performance. Additional data, function call `default_api:{name}` , position {position}."
)


def thought_signature(reasoning: str) -> str:
    """The signature the simulator gives an answer that reasoned ``reasoning``."""
    payload = hashlib.sha256(reasoning.encode()).digest()[:12]
    mac = hashlib.sha256(_KEY + payload).digest()[:12]
    return base64.b64encode(payload + mac).decode()


def _valid(signature: Any) -> bool:
    if signature == PLACEHOLDER:
        return True
    try:
        raw = base64.b64decode(str(signature), validate=True)
    except ValueError:
        return False
    payload, mac = raw[:12], raw[12:]
    return len(raw) == 24 and hashlib.sha256(_KEY + payload).digest()[:12] == mac


def thinking(config: Any, model: str = "") -> tuple[bool, bool]:
    """Whether ``generationConfig`` turns thinking on for ``model``, and whether thoughts are
    shown."""
    thinking_config = config.get("thinkingConfig") if isinstance(config, dict) else None
    if not isinstance(thinking_config, dict):
        return False, False
    if "thinkingLevel" in thinking_config:
        _check_level(thinking_config, model)
        return True, thinking_config.get("includeThoughts") is True
    budget = thinking_config.get("thinkingBudget", -1)
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < -1:
        raise InvalidRequest("thinkingBudget must be -1, 0 or a positive integer", "thinkingConfig")
    _check_budget(budget, model.lower())
    on = budget != 0
    return on, on and thinking_config.get("includeThoughts") is True


def _check_budget(budget: int, model: str) -> None:
    """A budget outside a Gemini 2.5 model's range (Google's: Pro 128 to 32768 and never 0,
    Flash 0 to 24576, Flash-Lite 0 or 512 to 24576) is a 400, in Gemini's words."""
    if budget == -1 or not _GEMINI_2_5.search(model):
        return
    if "-pro" in model:
        if budget == 0:
            raise InvalidRequest(
                "Budget 0 is invalid. This model only works in thinking mode.", "thinkingConfig"
            )
        low, high = 128, 32768
    else:
        low, high = (512 if "flash-lite" in model else 1), 24576
    if budget != 0 and not low <= budget <= high:
        raise InvalidRequest(
            f"The thinking budget {budget} is invalid. Please choose a value between {low} and "
            f"{high}.",
            "thinkingConfig",
        )


def _check_level(thinking_config: dict[str, Any], model: str) -> None:
    if not _GEMINI_3.search(model.lower()):
        raise InvalidRequest("Thinking level is not supported for this model.", "thinkingConfig")
    if "thinkingBudget" in thinking_config:
        raise InvalidRequest(
            "Unable to submit request because thinking_budget and thinking_level are not "
            "supported together.",
            "thinkingConfig",
        )
    level = thinking_config["thinkingLevel"]
    if not isinstance(level, str) or level.upper() not in _LEVELS:
        raise InvalidRequest(
            f"Invalid value at 'generation_config.thinking_config.thinking_level' ({level!r})",
            "thinkingConfig",
        )
    if level.upper() == "MINIMAL" and "-pro" in model.lower():  # Gemini 3 Pro has no MINIMAL
        raise InvalidRequest(
            "Thinking level MINIMAL is not supported for this model.", "thinkingConfig"
        )


def check_history(contents: list[Any], thinking_on: bool) -> None:
    """Signatures given back must be the simulator's; with thinking on, the calls the request
    answers must be signed (see above)."""
    for index, content in enumerate(contents):
        if not isinstance(content, dict) or content.get("role") != "model":
            continue
        for position, part in enumerate(content.get("parts") or ()):
            if isinstance(part, dict) and not _valid(part.get("thoughtSignature", PLACEHOLDER)):
                raise InvalidRequest(
                    f"Thought signature is not valid (contents[{index}].parts[{position}])",
                    "contents",
                )
    if not thinking_on or len(contents) < 2:
        return
    answered, last = contents[-2], contents[-1]
    if not (isinstance(answered, dict) and answered.get("role") == "model"):
        return
    results = [p for p in last.get("parts") or () if isinstance(p, dict)]
    if not any("functionResponse" in part for part in results):
        return
    parts = answered.get("parts") or []
    for position, part in enumerate(parts):
        if isinstance(part, dict) and "functionCall" in part:
            if "thoughtSignature" not in part:
                name = part["functionCall"].get("name")
                raise InvalidRequest(_MISSING.format(name=name, position=position + 1), "contents")
            return


def signed_parts(
    parts: list[dict[str, Any]], completion: Completion, show: bool
) -> list[dict[str, Any]]:
    """An answer's parts with its thoughts (``show``) first and its signature in place."""
    if not completion.reasoning:
        return parts
    reasoning = "".join(completion.reasoning)
    out = [dict(part) for part in parts]
    signed = next((part for part in out if "functionCall" in part), out[-1] if out else None)
    if signed is not None:
        signed["thoughtSignature"] = thought_signature(reasoning)
    return ([{"text": reasoning, "thought": True}] if show else []) + out


def usage(input_tokens: int, output_tokens: int, thoughts: int, cached: int = 0) -> dict[str, int]:
    """``usageMetadata``: ``output_tokens`` includes the ``thoughts``, which are apart, and
    ``input_tokens`` the ``cached`` ones, which Gemini says apart only when there are some."""
    out = {
        "promptTokenCount": input_tokens,
        "candidatesTokenCount": output_tokens - thoughts,
        "totalTokenCount": input_tokens + output_tokens,
    }
    if cached:
        out["cachedContentTokenCount"] = cached
    if thoughts:
        out["thoughtsTokenCount"] = thoughts
    return out
