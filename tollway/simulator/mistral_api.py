"""Mistral's chat API: OpenAI's shapes, validated as strictly as Mistral validates.

Mistral's server refuses every field its schema lacks with a 422 whose ``message`` holds
pydantic's ``detail`` list (``extra_forbidden``), in the body and in each message, whose
fields depend on its role (and whose role must be ``system``, ``user``, ``assistant`` or
``tool``). So OpenAI's ``max_completion_tokens``, ``seed`` (Mistral's is ``random_seed``),
``user``, ``store``, ``stream_options``, ``logit_bias`` ... are refused, as are ``name`` on a
user message and an echoed ``refusal`` on an assistant one. The fields are those of
``ChatCompletionRequest`` in mistralai/client-python. A stream ends with the usage on its last
chunk, unasked (``openai_chat.handle_chat``). Its embeddings API is as strict
(``EmbeddingRequest``): ``dimensions`` is ``output_dimension`` there, ``user`` is refused,
``input`` is text only.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tollway.simulator.errors import Dialect, json_response

_FIELDS = frozenset(
    {
        "model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop",
        "random_seed", "metadata", "response_format", "tools", "tool_choice",
        "presence_penalty", "frequency_penalty", "n", "prediction", "parallel_tool_calls",
        "reasoning_effort", "prompt_mode", "guardrails", "prompt_cache_key", "safe_prompt",
    }
)  # fmt: skip
_EMBEDDING_FIELDS = frozenset(
    {"model", "input", "metadata", "output_dimension", "output_dtype", "encoding_format"}
)
_MESSAGE_FIELDS = {
    "system": frozenset({"role", "content"}),
    "user": frozenset({"role", "content"}),
    "assistant": frozenset({"role", "content", "tool_calls", "prefix"}),
    "tool": frozenset({"role", "content", "tool_call_id", "name"}),
}
_ROLES = ", ".join(f"'{role}'" for role in sorted(_MESSAGE_FIELDS))


def _forbidden(location: list[Any], value: Any) -> dict[str, Any]:
    return {
        "type": "extra_forbidden",
        "loc": ["body", *location],
        "msg": "Extra inputs are not permitted",
        "input": value,
    }


def _message_problems(message: Any, index: int) -> list[dict[str, Any]]:
    if not isinstance(message, dict):
        return []
    role = message.get("role")
    allowed = _MESSAGE_FIELDS.get(role) if isinstance(role, str) else None
    if allowed is None:
        return [
            {
                "type": "union_tag_invalid",
                "loc": ["body", "messages", index],
                "msg": f"Input tag '{role}' found using 'role' does not match any of the "
                f"expected tags: {_ROLES}",
                "input": message,
            }
        ]
    return [
        _forbidden(["messages", index, role, key], value)
        for key, value in message.items()
        if key not in allowed
    ]


def problems(body: dict[str, Any]) -> list[dict[str, Any]]:
    """What Mistral's validation says of ``body``: one detail per refused field."""
    found = [_forbidden([key], value) for key, value in body.items() if key not in _FIELDS]
    messages = body.get("messages")
    if isinstance(messages, list):
        for index, message in enumerate(messages):
            found.extend(_message_problems(message, index))
    return found


def embedding_problems(body: dict[str, Any]) -> list[dict[str, Any]]:
    """What Mistral's validation says of an embeddings ``body``: its ``input`` is text only,
    a string or strings (token arrays are refused)."""
    found = [_forbidden([k], v) for k, v in body.items() if k not in _EMBEDDING_FIELDS]
    raw = body.get("input")
    items = raw if isinstance(raw, list) else [raw]
    found += [
        {
            "type": "string_type",
            "loc": ["body", "input", index],
            "msg": "Input should be a valid string",
            "input": item,
        }
        for index, item in enumerate(items)
        if not isinstance(item, str)
    ]
    return found


def refusal(details: list[dict[str, Any]], request_id: str) -> web.Response:
    """Mistral's 422 for a body that fails validation."""
    payload = {
        "object": "error",
        "message": {"detail": details},
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    return json_response(payload, request_id, Dialect.MISTRAL, status=422)
