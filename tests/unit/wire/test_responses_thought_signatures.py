"""Gemini's thought signatures through a Responses client: sealed with the part each was on
in a reasoning item's ``encrypted_content``, streamed or not, and put back on that part."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from openai import omit
from openai.lib.streaming.responses import ResponseStreamState

from tests.unit.wire.test_responses_codec import EVENTS, frames, parse
from tollway.core.errors import InvalidRequest
from tollway.core.types import (
    ChatChunk,
    ChatResponse,
    Choice,
    ChunkChoice,
    Message,
    ReasoningDelta,
    ReasoningPart,
    TextPart,
    ToolCall,
    ToolCallDelta,
)
from tollway.wire.gemini_request import request_to_wire
from tollway.wire.responses_reasoning import seal as seal_claudes
from tollway.wire.responses_reasoning import unseal as unseal_claudes
from tollway.wire.responses_response import response_to_wire
from tollway.wire.responses_stream import StreamWriter
from tollway.wire.responses_thought_signatures import (
    CALL,
    END,
    PREFIX,
    TEXT,
    Signed,
    seal,
    signatures_of,
    unseal,
)

CALL_SIGNED = Signed("gemini:Y2FsbA==", CALL, "call_abcdefgh_0_get_weather")
TEXT_SIGNED = Signed("gemini:dGV4dA==", TEXT)


def test_an_answers_signatures_are_each_on_its_part() -> None:
    # Gemini's parts [text, signed call, call, signed empty end] as its codec reads them.
    answer = Message(
        role="assistant",
        content=[
            ReasoningPart("summary", signature="gemini:dGV4dA=="),
            TextPart("Let me look."),
            ReasoningPart(signature="gemini:Y2FsbA=="),
            ReasoningPart(signature="c2ln"),  # Claude's: not Gemini's to carry
            ReasoningPart(signature="gemini:ZW5k"),
        ],
        tool_calls=[ToolCall("c1", "f", "{}", position=3), ToolCall("c2", "f", "{}", position=3)],
    )
    assert signatures_of(answer) == [
        Signed("gemini:dGV4dA==", TEXT),
        Signed("gemini:Y2FsbA==", CALL, "c1"),
        Signed("gemini:ZW5k", "end"),
    ]
    assert signatures_of(Message(role="assistant", content="plain")) == []


def test_sealed_signatures_read_back_as_they_were_and_say_whose_they_are() -> None:
    sealed = seal([CALL_SIGNED, TEXT_SIGNED, Signed("gemini:ZW5k", END)])
    assert sealed is not None and sealed.startswith(PREFIX)
    body = orjson.loads(base64.b64decode(sealed[len(PREFIX) :]))
    assert body["family"] == "gemini"
    assert body["signatures"][0] == {
        "part": "function_call",
        "call_id": "call_abcdefgh_0_get_weather",
        "signature": "Y2FsbA==",  # as Gemini gave it
    }
    assert unseal(sealed, "p") == [CALL_SIGNED, TEXT_SIGNED, Signed("gemini:ZW5k", END)]
    assert seal([]) is None
    # Neither seal reads the other's.
    assert unseal_claudes(sealed, "p") == []
    assert unseal(seal_claudes([ReasoningPart("t", signature="c2ln")]), "p") == []
    assert unseal("gAAAAABo-openai", "p") == [] and unseal(None, "p") == []


def _sealed(body: Any) -> str:
    return PREFIX + base64.b64encode(orjson.dumps(body)).decode()


@pytest.mark.parametrize(
    "value",
    [
        PREFIX + "not base64!",
        _sealed(["not", "an", "object"]),
        _sealed({"family": "claude", "signatures": []}),
        _sealed({"family": "gemini", "signatures": [{"part": "image", "signature": "x"}]}),
        _sealed({"family": "gemini", "signatures": [{"part": "function_call", "signature": "x"}]}),
        _sealed({"family": "gemini", "signatures": [{"part": "text", "signature": ""}]}),
    ],
)
def test_a_damaged_seal_is_a_400_naming_it(value: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        unseal(value, "input[1].encrypted_content")
    assert caught.value.param == "input[1].encrypted_content"


def test_a_gemini_signature_in_claudes_seal_is_refused() -> None:
    forged = seal_claudes([ReasoningPart("t", signature="gemini:Y2FsbA==")])
    with pytest.raises(InvalidRequest):
        unseal_claudes(forged, "input[1].encrypted_content")


def _replayed(*answer: Any) -> Any:
    """A Responses request replaying ``answer``'s items, then a result of the call."""
    result = {"type": "function_call_output", "call_id": CALL_SIGNED.call_id, "output": "rain"}
    return parse(input=[{"role": "user", "content": "go"}, *answer, result]).chat


CALL_ITEM = {
    "type": "function_call",
    "call_id": CALL_SIGNED.call_id,
    "name": "get_weather",
    "arguments": '{"city":"Oslo"}',
}
OTHER_CALL = {**CALL_ITEM, "call_id": "call_abcdefgh_1_get_weather"}


@pytest.mark.parametrize("after", [False, True])
def test_each_signature_goes_back_to_gemini_on_its_part(after: bool) -> None:
    # Before the answer's items (a whole answer), or the text's after its message (streamed).
    signed = {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [],
        "encrypted_content": seal([CALL_SIGNED, TEXT_SIGNED]),
    }
    message = {"role": "assistant", "content": [{"type": "output_text", "text": "Looking."}]}
    answer = [message, signed] if after else [signed, message]
    chat = _replayed(*answer, CALL_ITEM, OTHER_CALL)
    assert [m.role for m in chat.messages] == ["user", "assistant", "tool"]
    parts = request_to_wire(chat)["contents"][1]["parts"]
    assert parts == [
        {"text": "Looking.", "thoughtSignature": "dGV4dA=="},
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
            "thoughtSignature": "Y2FsbA==",
        },
        {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
    ]


def test_a_signature_of_a_call_the_turn_no_longer_has_is_dropped() -> None:
    lost = Signed("gemini:bG9zdA==", CALL, "call_gone")
    signed = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": seal([lost])}
    parts = request_to_wire(_replayed(signed, CALL_ITEM))["contents"][1]["parts"]
    assert [part["thoughtSignature"] for part in parts] == ["skip_thought_signature_validator"]


def test_a_whole_answers_signatures_are_its_reasoning_items() -> None:
    answer = Message(
        role="assistant",
        content=[ReasoningPart(signature="gemini:Y2FsbA==")],
        tool_calls=[ToolCall(CALL_SIGNED.call_id, "get_weather", "{}", position=1)],
    )
    response = ChatResponse("r", "m", 1, [Choice(0, answer, "tool_calls")], wire_format="gemini")
    output = response_to_wire(response, parse().echo)["output"]
    assert [item["type"] for item in output] == ["reasoning", "function_call"]
    assert unseal(output[0]["encrypted_content"], "p") == [CALL_SIGNED]


def _chunk(**choice: Any) -> ChatChunk:
    return ChatChunk("r", "m", 1, [ChunkChoice(0, **choice)], wire_format="gemini")


def _streamed(*chunks: ChatChunk) -> list[dict[str, Any]]:
    writer = StreamWriter(parse().echo)
    events = frames(b"".join(writer.feed(chunk) for chunk in chunks) + writer.finish())
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=[], text_format=omit)
    for event in events:  # the SDK's accumulator checks each item's place
        state.handle_event(EVENTS.validate_python(event))
    return events


def test_a_streamed_calls_signature_is_an_item_before_it() -> None:
    call = ToolCallDelta(0, CALL_SIGNED.call_id, "get_weather", "{}")
    events = _streamed(
        _chunk(role="assistant", content="Looking."),
        _chunk(reasoning=ReasoningDelta(signature=CALL_SIGNED.signature), tool_calls=[call]),
        _chunk(finish_reason="tool_calls"),
    )
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["message", "reasoning", "function_call"]
    assert unseal(output[1]["encrypted_content"], "p") == [CALL_SIGNED]


def test_a_streamed_texts_signature_is_an_item_after_it_and_a_late_one_at_the_end() -> None:
    thought = ReasoningDelta("thinking", signature=None)
    events = _streamed(
        _chunk(role="assistant", reasoning=thought),
        _chunk(content="Sunny."),
        _chunk(reasoning=ReasoningDelta(signature=TEXT_SIGNED.signature), finish_reason="stop"),
    )
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["reasoning", "message", "reasoning"]
    assert "encrypted_content" not in output[0]
    assert unseal(output[2]["encrypted_content"], "p") == [TEXT_SIGNED]
    # Signed once the call was done: the end of the answer.
    call = ToolCallDelta(0, CALL_SIGNED.call_id, "get_weather", "{}")
    late = _streamed(
        _chunk(role="assistant", tool_calls=[call]),
        _chunk(reasoning=ReasoningDelta(signature="gemini:ZW5k"), finish_reason="tool_calls"),
    )
    output = late[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["function_call", "reasoning"]
    assert unseal(output[1]["encrypted_content"], "p") == [Signed("gemini:ZW5k", END)]


def test_a_streamed_signature_after_thoughts_is_sealed_in_their_item() -> None:
    call = ToolCallDelta(0, CALL_SIGNED.call_id, "get_weather", "{}")
    thought = ReasoningDelta("thinking", signature=CALL_SIGNED.signature)
    events = _streamed(_chunk(role="assistant", reasoning=thought, tool_calls=[call]))
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["reasoning", "function_call"]
    assert output[0]["content"][0]["text"] == "thinking"
    assert unseal(output[0]["encrypted_content"], "p") == [CALL_SIGNED]
