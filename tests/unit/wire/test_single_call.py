"""An answer cut to its first tool call, for a client that turned parallel calls off where the
family has no switch for it (wire/single_call.py), and Claude's own switch on Bedrock."""

from __future__ import annotations

from tollway.core.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Message,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
)
from tollway.wire.bedrock_models import CLAUDE, family_of
from tollway.wire.bedrock_request import request_to_wire
from tollway.wire.single_call import FirstCallOnly, first_call_only, wants_one_call

TOOLS = [Tool("get_weather"), Tool("get_time")]


def request(parallel: bool | None, choice: ToolChoice | None = None) -> ChatRequest:
    return ChatRequest(
        "m", [Message("user", "hi")], tools=TOOLS, tool_choice=choice, parallel_tool_calls=parallel
    )


def test_only_a_request_with_tools_that_turned_parallel_calls_off_wants_one_call() -> None:
    assert wants_one_call(request(False))
    assert not wants_one_call(request(None)) and not wants_one_call(request(True))
    assert not wants_one_call(ChatRequest("m", [], parallel_tool_calls=False))


def test_an_answer_keeps_its_first_call_and_the_rest_of_its_turn() -> None:
    calls = [ToolCall("a", "get_weather", "{}"), ToolCall("b", "get_time", "{}")]
    message = Message("assistant", "Looking.", tool_calls=calls)
    answer = ChatResponse("r", "m", 0, [Choice(0, message, "tool_calls")], raw=b"{}")
    cut = first_call_only(answer)
    assert [c.id for c in cut.choices[0].message.tool_calls or ()] == ["a"]
    assert cut.choices[0].message.content == "Looking." and cut.raw is None
    assert cut.choices[0].finish_reason == "tool_calls"
    one = ChatResponse("r", "m", 0, [Choice(0, Message("assistant", tool_calls=calls[:1]), None)])
    assert first_call_only(one) is one


def test_a_stream_keeps_the_fragments_of_its_first_call() -> None:
    cut = FirstCallOnly()

    def chunk(*deltas: ToolCallDelta) -> ChatChunk:
        return ChatChunk("r", "m", 0, [ChunkChoice(0, tool_calls=list(deltas))], raw=b"{}")

    first = chunk(ToolCallDelta(0, "a", "get_weather"))
    assert cut(first) is first
    assert cut(chunk(ToolCallDelta(1, "b", "get_time"))) is None
    both = cut(chunk(ToolCallDelta(0, arguments="{}"), ToolCallDelta(1, arguments="{}")))
    assert both is not None and both.raw is None
    assert [d.index for d in both.choices[0].tool_calls or ()] == [0]
    text = ChatChunk("r", "m", 0, [ChunkChoice(0, content="hi")])
    assert cut(text) is text


def test_claude_on_bedrock_takes_anthropics_flag_beside_the_tool_choice() -> None:
    body = request_to_wire(request(False), CLAUDE)
    assert body["additionalModelRequestFields"]["tool_choice"] == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }
    forced = request_to_wire(request(False, ToolChoice("function", "get_time")), CLAUDE)
    assert forced["toolConfig"]["toolChoice"] == {"tool": {"name": "get_time"}}
    assert forced["additionalModelRequestFields"]["tool_choice"] == {
        "disable_parallel_tool_use": True
    }
    # Other models have no such field (their answers are cut), nor has a choice of none.
    assert "additionalModelRequestFields" not in request_to_wire(request(False))
    none = request_to_wire(request(False, ToolChoice("none")), CLAUDE)
    assert "additionalModelRequestFields" not in none
    assert "additionalModelRequestFields" not in request_to_wire(request(None), CLAUDE)


def test_claude_is_told_by_its_model_id_or_inference_profile() -> None:
    assert family_of("anthropic.claude-3-5-sonnet-20240620-v1:0") is CLAUDE
    assert family_of("us.anthropic.claude-sonnet-4-20250514-v1:0") is CLAUDE
    arn = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku"
    assert family_of(arn) is CLAUDE
    for other in ("amazon.nova-pro-v1:0", "meta.llama3-70b-instruct-v1:0", "my-app-profile"):
        assert family_of(other) is not CLAUDE
