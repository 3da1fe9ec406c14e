"""The async ``anthropic`` and ``openai`` SDKs against every provider family: create, stream
and a streamed tool round trip, as docs/providers.md's client table claims (the sync SDKs'
tests are test_anthropic_sdk, test_openai_sdk and test_responses_sdk)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from tests.integration.sdk import WEATHER
from tests.support import CLIENT_KEY

FAMILIES = ["test-claude", "test-chat", "test-azure", "test-gemini", "test-bedrock"]
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
RESPONSES_WEATHER: Any = {"type": "function", **WEATHER["function"]}


@pytest.fixture(scope="module")
async def claude(gateway_url: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """The async ``anthropic`` SDK with only its base URL changed."""
    async with anthropic.AsyncAnthropic(
        base_url=gateway_url, api_key=CLIENT_KEY, max_retries=0
    ) as client:
        yield client


@pytest.fixture(scope="module")
async def gpt(gateway_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    """The async ``openai`` SDK with only its base URL changed."""
    async with openai.AsyncOpenAI(
        base_url=gateway_url + "/v1", api_key=CLIENT_KEY, max_retries=0
    ) as client:
        yield client


@pytest.mark.parametrize("model", FAMILIES)
async def test_async_anthropic_message_and_stream(
    claude: anthropic.AsyncAnthropic, model: str
) -> None:
    message = await claude.messages.create(
        model=model, max_tokens=100, messages=[{"role": "user", "content": f"async to {model}"}]
    )
    assert message.stop_reason == "end_turn" and message.usage.output_tokens > 0
    assert f"async to {model}" in "".join(b.text for b in message.content if b.type == "text")
    async with claude.messages.stream(
        model=model, max_tokens=100, messages=[{"role": "user", "content": f"stream to {model}"}]
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert f"stream to {model}" in text
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


@pytest.mark.parametrize("model", FAMILIES)
async def test_async_anthropic_streamed_tool_round_trip(
    claude: anthropic.AsyncAnthropic, model: str
) -> None:
    question: list[Any] = [{"role": "user", "content": "weather in Lima?"}]
    async with claude.messages.stream(
        model=model, max_tokens=200, messages=question, tools=[WEATHER_TOOL]
    ) as stream:
        first = await stream.get_final_message()
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and isinstance(call.input, dict) and "city" in call.input
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "misty, 17C"}
    second = await claude.messages.create(
        model=model,
        max_tokens=200,
        tools=[WEATHER_TOOL],
        messages=[
            *question,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [result]},
        ],
    )
    assert second.stop_reason == "end_turn"
    assert "misty, 17C" in "".join(b.text for b in second.content if b.type == "text")


@pytest.mark.parametrize("model", FAMILIES)
async def test_async_openai_chat_stream_and_tools(gpt: openai.AsyncOpenAI, model: str) -> None:
    completion = await gpt.chat.completions.create(
        model=model, messages=[{"role": "user", "content": f"async chat to {model}"}]
    )
    assert f"async chat to {model}" in (completion.choices[0].message.content or "")
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    stream = await gpt.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": f"async stream to {model}"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert f"async stream to {model}" in text
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0
    question: list[Any] = [{"role": "user", "content": "weather in Lima?"}]
    first = await gpt.chat.completions.create(model=model, messages=question, tools=[WEATHER])
    calls = first.choices[0].message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls" and len(calls) == 1
    assert calls[0].type == "function" and calls[0].function.name == "get_weather"
    answered = [
        *question,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": calls[0].id, "content": "misty, 17C"},
    ]
    second = await gpt.chat.completions.create(model=model, messages=answered, tools=[WEATHER])
    assert "misty, 17C" in (second.choices[0].message.content or "")


@pytest.mark.parametrize("model", FAMILIES)
async def test_async_openai_responses_stream_and_tools(gpt: openai.AsyncOpenAI, model: str) -> None:
    response = await gpt.responses.create(model=model, input=f"async responses to {model}")
    assert f"async responses to {model}" in response.output_text
    assert response.usage is not None and response.usage.output_tokens > 0
    async with gpt.responses.stream(
        model=model, input="weather in Lima?", tools=[RESPONSES_WEATHER]
    ) as stream:
        first = await stream.get_final_response()
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert "city" in json.loads(calls[0].arguments)
    follow_up: list[Any] = [{"role": "user", "content": "weather in Lima?"}]
    follow_up += [item.model_dump(exclude_none=True) for item in first.output]
    follow_up.append(
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "misty, 17C"}
    )
    second = await gpt.responses.create(model=model, input=follow_up, tools=[RESPONSES_WEATHER])
    assert "misty, 17C" in second.output_text
