"""What an SDK's stream helper assembles equals the plain answer to the same request.

Every client API (Chat Completions, Responses, Anthropic Messages) against every provider
family on the simulator, with text, parallel tool calls, a length cut and JSON output: the
final object a stream builds must be the one a non-streamed request gets, field for field
(less the ids each answer makes up, and what the SDKs themselves add to a streamed one).
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState

FAMILIES = ["test-chat", "test-claude", "test-gemini", "test-bedrock"]
CITY: Any = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
ZONE: Any = {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}
PERSON: Any = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
# (prompt, tools, output limit, JSON schema) per kind of answer.
SHAPES = {
    "text": ("plain words é 你好 🎉", False, None, False),
    "parallel tools": ("both tools in parallel please", True, None, False),
    "length": ("a long answer", False, 3, False),
    "json": ("a person as JSON", False, None, True),
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("model", FAMILIES)
def test_anthropic_stream_helper_builds_the_plain_message(
    claude: anthropic.Anthropic, model: str, shape: str
) -> None:
    prompt, tools, limit, schema = SHAPES[shape]
    kwargs: dict[str, Any] = {"max_tokens": limit or 200}
    if tools:
        kwargs["tools"] = [
            {"name": "get_weather", "input_schema": CITY},
            {"name": "get_time", "input_schema": ZONE},
        ]
    if schema:
        kwargs["output_config"] = {"format": {"type": "json_schema", "schema": PERSON}}
    messages: Any = [{"role": "user", "content": prompt}]
    plain = claude.messages.create(model=model, messages=messages, **kwargs)
    with claude.messages.stream(model=model, messages=messages, **kwargs) as stream:
        final = stream.get_final_message()

    def comparable(message: anthropic.types.Message) -> dict[str, Any]:
        shown = message.model_dump()
        del shown["id"]
        for block in shown["content"]:
            block.pop("id", None)  # each answer names its own tool calls
        return shown

    assert comparable(final) == comparable(plain)
    assert plain.usage.service_tier == final.usage.service_tier


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("model", FAMILIES)
def test_responses_stream_ends_with_the_plain_response(
    gpt: openai.OpenAI, model: str, shape: str
) -> None:
    prompt, tools, limit, schema = SHAPES[shape]
    kwargs: dict[str, Any] = {}
    if tools:
        kwargs["tools"] = [
            {"type": "function", "name": "get_weather", "parameters": CITY, "strict": False},
            {"type": "function", "name": "get_time", "parameters": ZONE, "strict": False},
        ]
    if limit:
        # The least the Responses API takes is 16: an answer longer than that is cut there.
        kwargs["max_output_tokens"] = max(limit, 16)
        kwargs["extra_headers"] = {"x-sim-output-tokens": "40"}
    if schema:
        kwargs["text"] = {"format": {"type": "json_schema", "name": "person", "schema": PERSON}}
    plain = gpt.responses.create(model=model, input=prompt, **kwargs)
    events = list(gpt.responses.create(model=model, input=prompt, stream=True, **kwargs))
    # Its last event carries the whole response (response.completed, or .incomplete).
    final = events[-1]
    assert final.type in ("response.completed", "response.incomplete")
    assert [event.sequence_number for event in events] == list(range(len(events)))

    def comparable(response: openai.types.responses.Response) -> dict[str, Any]:
        shown = response.model_dump()
        del shown["id"], shown["created_at"]
        for item in shown["output"]:
            del item["id"]
            item.pop("call_id", None)
        return shown

    assert comparable(final.response) == comparable(plain)  # type: ignore[union-attr]
    # The items streamed are the items of the final response, under the same ids.
    done = [event.item for event in events if event.type == "response.output_item.done"]
    assert done == final.response.output  # type: ignore[union-attr]


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("model", FAMILIES)
def test_chat_stream_state_builds_the_plain_completion(
    gpt: openai.OpenAI, model: str, shape: str
) -> None:
    prompt, tools, limit, schema = SHAPES[shape]
    kwargs: dict[str, Any] = {}
    if tools:
        kwargs["tools"] = [
            {"type": "function", "function": {"name": "get_weather", "parameters": CITY}},
            {"type": "function", "function": {"name": "get_time", "parameters": ZONE}},
        ]
    if limit:
        kwargs["max_tokens"] = limit
    if schema:
        schema_format = {"name": "person", "schema": PERSON, "strict": True}
        kwargs["response_format"] = {"type": "json_schema", "json_schema": schema_format}
    messages: Any = [{"role": "user", "content": prompt}]
    plain = gpt.chat.completions.create(model=model, messages=messages, **kwargs)
    state = ChatCompletionStreamState()
    for chunk in gpt.chat.completions.create(
        model=model,
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
        **kwargs,
    ):
        state.handle_chunk(chunk)
    final = state.current_completion_snapshot

    def comparable(completion: Any) -> dict[str, Any]:
        shown: dict[str, Any] = completion.model_dump()
        for name in ("id", "created", "system_fingerprint", "service_tier"):
            shown.pop(name, None)
        for choice in shown["choices"]:
            message = choice["message"]
            message.pop("parsed", None)  # what the SDK adds to a streamed answer
            message.pop("annotations", None)
            for call in message.get("tool_calls") or ():
                del call["id"]
                call.pop("index", None)
                call["function"].pop("parsed_arguments", None)
        return shown

    assert comparable(final) == comparable(plain)


UNINDEXED = {"x-sim-tool-calls": "unindexed"}
"""An OpenAI-format upstream whose tool-call deltas leave out their ``index`` (Gemini's
OpenAI-compatible API does): each SDK must still get two calls, not one merged."""
TWO_TOOLS_PROMPT = "both tools in parallel please"


def test_chat_stream_helper_tells_apart_calls_streamed_without_their_index(
    gpt: openai.OpenAI,
) -> None:
    tools: Any = [
        {"type": "function", "function": {"name": "get_weather", "parameters": CITY}},
        {"type": "function", "function": {"name": "get_time", "parameters": ZONE}},
    ]
    messages: Any = [{"role": "user", "content": TWO_TOOLS_PROMPT}]
    with gpt.chat.completions.stream(
        model="test-chat", messages=messages, tools=tools, extra_headers=UNINDEXED
    ) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [(c.function.name, c.function.arguments) for c in calls] == [
        ("get_weather", '{"city":"sample"}'),
        ("get_time", '{"zone":"sample"}'),
    ]
    assert calls[0].id != calls[1].id and final.choices[0].finish_reason == "tool_calls"


def test_anthropic_stream_helper_tells_apart_calls_streamed_without_their_index(
    claude: anthropic.Anthropic,
) -> None:
    with claude.messages.stream(
        model="test-chat",
        max_tokens=200,
        messages=[{"role": "user", "content": TWO_TOOLS_PROMPT}],
        tools=[
            {"name": "get_weather", "input_schema": CITY},
            {"name": "get_time", "input_schema": ZONE},
        ],
        extra_headers=UNINDEXED,
    ) as stream:
        final = stream.get_final_message()
    calls = [(b.name, b.input) for b in final.content if b.type == "tool_use"]
    assert calls == [("get_weather", {"city": "sample"}), ("get_time", {"zone": "sample"})]


def test_responses_stream_tells_apart_calls_streamed_without_their_index(
    gpt: openai.OpenAI,
) -> None:
    tools: Any = [
        {"type": "function", "name": "get_weather", "parameters": CITY, "strict": False},
        {"type": "function", "name": "get_time", "parameters": ZONE, "strict": False},
    ]
    with gpt.responses.stream(
        model="test-chat", input=TWO_TOOLS_PROMPT, tools=tools, extra_headers=UNINDEXED
    ) as stream:
        final = stream.get_final_response()
    calls = [(item.name, item.arguments) for item in final.output if item.type == "function_call"]
    assert calls == [("get_weather", '{"city":"sample"}'), ("get_time", '{"zone":"sample"}')]


@pytest.mark.parametrize("limit", [2, 5])  # the first call cut; the second one cut
@pytest.mark.parametrize("calls", ["in turn", "interleave"])
@pytest.mark.parametrize("model", ["test-chat", "test-mistral"])
def test_anthropic_stream_helper_builds_the_plain_message_of_calls_the_limit_cut(
    claude: anthropic.Anthropic, model: str, calls: str, limit: int
) -> None:
    # OpenAI ends a call max_tokens cuts with the arguments written so far, not yet JSON. The
    # SDK's stream reads their complete values (partial JSON), so the plain answer's cut call
    # must hold those same values, not nothing.
    kwargs: dict[str, Any] = {
        "model": model,
        "max_tokens": limit,
        "messages": [{"role": "user", "content": TWO_TOOLS_PROMPT}],
        "tools": [
            {"name": "get_weather", "input_schema": CITY},
            {"name": "get_time", "input_schema": ZONE},
        ],
    }
    if calls == "interleave":
        kwargs["extra_headers"] = {"x-sim-tool-calls": calls}
    plain = claude.messages.create(**kwargs)
    with claude.messages.stream(**kwargs) as stream:
        final = stream.get_final_message()
    assert plain.stop_reason == final.stop_reason == "max_tokens"
    shown = [(b.name, b.input) for b in plain.content if b.type == "tool_use"]
    assert shown == [(b.name, b.input) for b in final.content if b.type == "tool_use"]
    assert shown[-1][1] != {}  # the cut call's complete value
