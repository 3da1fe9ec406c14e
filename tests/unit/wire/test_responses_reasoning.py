"""Claude's signed thinking through a Responses client: sealed in a reasoning item's
``encrypted_content`` and read back into the assistant turn it precedes."""

from __future__ import annotations

import pytest

from tollway.core.errors import InvalidRequest
from tollway.core.types import ReasoningPart, TextPart, ToolCall
from tollway.wire.responses_reasoning import PREFIX, carried, seal, unseal
from tollway.wire.responses_request import request_from_wire

SIGNED = ReasoningPart(text="thought", signature="c2ln")
REDACTED = ReasoningPart(redacted="ZW5j")


def test_only_claudes_signed_thinking_is_carried() -> None:
    unsigned, gemini = ReasoningPart(text="x"), ReasoningPart(signature="gemini:abc")
    assert carried([unsigned, SIGNED, gemini, REDACTED]) == [SIGNED, REDACTED]
    assert seal([]) is None


def test_sealed_thinking_reads_back_as_it_was() -> None:
    assert unseal(seal([SIGNED, REDACTED]), "p") == [SIGNED, REDACTED]


def test_openais_own_encrypted_content_is_not_read() -> None:
    assert unseal("gAAAAABo-openai", "p") == []
    assert unseal(None, "p") == []


def test_a_damaged_seal_is_a_400_naming_it() -> None:
    with pytest.raises(InvalidRequest) as caught:
        unseal(PREFIX + "not base64!", "input[1].encrypted_content")
    assert caught.value.param == "input[1].encrypted_content"


def test_a_reasoning_item_starts_the_assistant_turn_after_it() -> None:
    item = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": seal([SIGNED])}
    chat = request_from_wire(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "go"},
                item,
                {"role": "assistant", "content": "calling"},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "42"},
                {"type": "reasoning", "id": "rs_2", "summary": []},  # unsigned: dropped
            ],
        }
    ).chat
    assert [m.role for m in chat.messages] == ["user", "assistant", "tool"]
    turn = chat.messages[1]
    assert turn.content == [SIGNED, TextPart("calling")]
    assert turn.tool_calls == [ToolCall("c1", "f", "{}")]
