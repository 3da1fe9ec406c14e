"""The GenAI convention values the tracing stage writes: provider names and message JSON."""

from __future__ import annotations

import orjson

from tollway.core.errors import UpstreamTimeout
from tollway.core.types import (
    ChatChunk,
    Choice,
    ChunkChoice,
    ImagePart,
    Message,
    OpaquePart,
    TextPart,
    ToolCall,
    ToolCallDelta,
)
from tollway.telemetry import genai


def test_provider_names_follow_the_conventions_and_keep_unknown_names() -> None:
    assert genai.provider_name("openai") == "openai"
    assert genai.provider_name("azure_openai") == "azure.ai.openai"
    assert genai.system_name("azure_openai") == "az.ai.openai"
    assert genai.provider_name("bedrock") == "aws.bedrock"
    assert genai.provider_name("vertex_ai") == "gcp.vertex_ai"
    assert genai.provider_name("vllm") == "vllm"


def test_error_type_is_the_exception_class() -> None:
    assert genai.error_type(UpstreamTimeout("slow", phase="first_byte")) == "UpstreamTimeout"


def test_input_messages_cover_text_images_tool_calls_and_results() -> None:
    messages = [
        Message("system", "be brief"),
        Message("user", [TextPart("what is this?"), ImagePart(url="https://x/cat.png"),
                         ImagePart(data="aGVsbG8=", media_type="image/png"),
                         OpaquePart("input_audio", {"data": "..."})]),
        Message("assistant", None, tool_calls=[ToolCall("call_1", "lookup", '{"q": "cat"}')]),
        Message("tool", "a cat", tool_call_id="call_1"),
    ]  # fmt: skip
    assert orjson.loads(genai.input_messages(messages)) == [
        {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
        {"role": "user", "parts": [
            {"type": "text", "content": "what is this?"},
            {"type": "uri", "modality": "image", "uri": "https://x/cat.png"},
            {"type": "blob", "modality": "image", "mime_type": "image/png"},
            {"type": "input_audio"}]},
        {"role": "assistant", "parts": [
            {"type": "tool_call", "id": "call_1", "name": "lookup", "arguments": '{"q": "cat"}'}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1",
                                    "response": "a cat"}]},
    ]  # fmt: skip
    # Inline image bytes are never recorded.
    assert "aGVsbG8=" not in genai.input_messages(messages)


def test_output_messages_of_a_complete_answer() -> None:
    choices = [Choice(0, Message("assistant", "hi there"), "stop")]
    assert orjson.loads(genai.output_messages(choices)) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "hi there"}],
         "finish_reason": "stop"}
    ]  # fmt: skip


def test_streamed_output_joins_text_and_tool_call_fragments_per_choice() -> None:
    output = genai.StreamedOutput()

    def chunk(*choices: ChunkChoice) -> ChatChunk:
        return ChatChunk("c1", "m", 0, list(choices))

    output.add(chunk(ChunkChoice(0, role="assistant", content="Hel"), ChunkChoice(1, content="B")))
    output.add(chunk(ChunkChoice(0, content="lo")))
    output.add(chunk(ChunkChoice(1, tool_calls=[ToolCallDelta(0, "call_9", "f", '{"a"')])))
    output.add(chunk(ChunkChoice(1, tool_calls=[ToolCallDelta(0, arguments=": 1}")])))
    output.add(
        chunk(ChunkChoice(0, finish_reason="stop"), ChunkChoice(1, finish_reason="tool_calls"))
    )
    assert orjson.loads(output.messages()) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Hello"}],
         "finish_reason": "stop"},
        {"role": "assistant", "finish_reason": "tool_calls", "parts": [
            {"type": "text", "content": "B"},
            {"type": "tool_call", "id": "call_9", "name": "f", "arguments": '{"a": 1}'}]},
    ]  # fmt: skip
