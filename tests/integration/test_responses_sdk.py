"""The real ``openai`` SDK's Responses API, sync and async, against a gateway and the simulator."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support import CLIENT_KEY

WEATHER_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
    "strict": True,
}
TIME_TOOL: Any = {
    "type": "function",
    "name": "get_time",
    "parameters": {
        "type": "object",
        "properties": {"zone": {"type": "string"}},
        "required": ["zone"],
    },
    "strict": False,
}


def upstream_body(simulator_url: str, last_content: Any) -> dict[str, Any]:
    """The chat body the simulator last received whose last message has this content."""
    for request in reversed(httpx.get(simulator_url + "/_sim/requests").json()):
        messages = (request["json"] or {}).get("messages") or [{}]
        if messages[-1].get("content") == last_content:
            return dict(request["json"])
    raise AssertionError(f"the simulator received no request ending in {last_content!r}")


# One model group per provider family: the Responses API works whoever serves it.
FAMILIES = ["test-chat", "test-claude", "test-gemini", "test-bedrock"]


@pytest.fixture(scope="module")
def client(gateway_url: str) -> Iterator[openai.OpenAI]:
    """A sync SDK client whose only change is the base URL."""
    with openai.OpenAI(base_url=gateway_url + "/v1", api_key=CLIENT_KEY, max_retries=0) as c:
        yield c


def test_create_answers_text_with_usage(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(model="test-chat", input="hello responses api")
    response = raw.parse()
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status == "completed" and response.error is None
    assert "hello responses api" in response.output_text
    assert response.output[0].type == "message" and response.output[0].role == "assistant"
    usage = response.usage
    assert usage is not None and usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert raw.headers["x-tollway-deployment"] == "test-chat#0"
    assert raw.headers["x-request-id"].startswith("req_")


def test_instructions_lead_as_a_system_message(client: openai.OpenAI, simulator_url: str) -> None:
    response = client.responses.create(
        model="test-chat", instructions="Answer in one word.", input="instructed prompt"
    )
    assert response.instructions == "Answer in one word."
    assert "instructed prompt" in response.output_text
    body = upstream_body(simulator_url, "instructed prompt")
    assert body["messages"][0] == {"role": "system", "content": "Answer in one word."}


@pytest.mark.parametrize("model", ["test-chat", "test-azure"])
def test_parallel_tool_calls_without_tools_is_not_sent_to_chat_completions(
    client: openai.OpenAI, simulator_url: str, model: str
) -> None:
    # The Responses API takes it without tools; Chat Completions refuses it ("only allowed
    # when 'tools' are specified"), and without tools it says nothing.
    marker = f"no tools, serially {model}"
    response = client.responses.create(model=model, input=marker, parallel_tool_calls=False)
    assert marker in response.output_text and response.parallel_tool_calls is False
    assert "parallel_tool_calls" not in upstream_body(simulator_url, marker)
    with_tools = client.responses.create(
        model=model, input=f"weather, {marker}", tools=[WEATHER_TOOL], parallel_tool_calls=False
    )
    assert with_tools.parallel_tool_calls is False
    assert upstream_body(simulator_url, f"weather, {marker}")["parallel_tool_calls"] is False


def test_multi_turn_input_list(client: openai.OpenAI, simulator_url: str) -> None:
    response = client.responses.create(
        model="test-chat",
        input=[
            {"role": "developer", "content": "be nice"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": [{"type": "input_text", "text": "second question"}]},
        ],
    )
    assert "second question" in response.output_text
    messages = upstream_body(simulator_url, [{"type": "text", "text": "second question"}])[
        "messages"
    ]
    assert [m["role"] for m in messages] == ["developer", "user", "assistant", "user"]
    assert messages[2]["content"] == "first answer"


@pytest.mark.parametrize("model", FAMILIES)
def test_small_max_output_tokens_is_incomplete(client: openai.OpenAI, model: str) -> None:
    # 16: the least OpenAI's Responses API takes; the simulator's answer runs longer.
    response = client.responses.create(
        model=model,
        input="a long answer please",
        max_output_tokens=16,
        extra_headers={"x-sim-output-tokens": "40"},
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.max_output_tokens == 16
    assert response.usage is not None and response.usage.output_tokens == 16


@pytest.mark.parametrize("model", FAMILIES)
def test_json_schema_text_format_gives_parseable_json(client: openai.OpenAI, model: str) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    response = client.responses.create(
        model=model,
        input="describe a person",
        text={"format": {"type": "json_schema", "name": "person", "schema": schema}},
    )
    assert set(json.loads(response.output_text)) == {"name", "age"}
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"


@pytest.mark.parametrize("model", FAMILIES)
def test_function_tool_round_trip(client: openai.OpenAI, model: str) -> None:
    first = client.responses.create(model=model, input="weather in Paris?", tools=[WEATHER_TOOL])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert set(json.loads(calls[0].arguments)) == {"city", "unit"}
    assert first.tools[0].type == "function" and first.status == "completed"
    follow_up: list[Any] = [{"role": "user", "content": "weather in Paris?"}]
    follow_up += [item.model_dump(exclude_none=True) for item in first.output]
    follow_up.append(
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21C"}
    )
    second = client.responses.create(model=model, input=follow_up, tools=[WEATHER_TOOL])
    assert "sunny, 21C" in second.output_text
    assert all(item.type == "message" for item in second.output)


@pytest.mark.parametrize("model", FAMILIES)
def test_allowed_function_tools_are_the_only_ones_offered(
    client: openai.OpenAI, model: str, simulator_url: str
) -> None:
    # The simulator calls the first tool it is offered: only get_time may be.
    question = f"weather or time? ({model})"
    allowed: Any = {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "get_time"}],
    }
    response = client.responses.create(
        model=model, input=question, tools=[WEATHER_TOOL, TIME_TOOL], tool_choice=allowed
    )
    calls = [item for item in response.output if item.type == "function_call"]
    assert [call.name for call in calls] == ["get_time"]
    # The Response repeats the request's tools and choice as sent.
    assert [tool.name for tool in response.tools if tool.type == "function"] == [
        "get_weather",
        "get_time",
    ]
    assert response.tool_choice.type == "allowed_tools"
    if model == "test-chat":
        sent = upstream_body(simulator_url, question)
        assert [tool["function"]["name"] for tool in sent["tools"]] == ["get_time"]
        assert sent["tool_choice"] == "required"


def test_allowed_tools_naming_an_unoffered_function_is_refused(client: openai.OpenAI) -> None:
    allowed: Any = {
        "type": "allowed_tools",
        "mode": "auto",
        "tools": [{"type": "function", "name": "get_news"}],
    }
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="test-chat", input="x", tools=[WEATHER_TOOL], tool_choice=allowed
        )
    assert caught.value.param == "tool_choice.tools[0].name"
    assert "get_news" in caught.value.message


@pytest.mark.parametrize("model", FAMILIES)
def test_stream_helper_assembles_text(client: openai.OpenAI, model: str) -> None:
    deltas: list[str] = []
    with client.responses.stream(model=model, input="stream this to me") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert "stream this to me" in "".join(deltas)
    assert final.output_text == "".join(deltas)
    assert final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens == len(deltas)


@pytest.mark.parametrize("model", FAMILIES)
def test_raw_stream_events_are_ordered(client: openai.OpenAI, model: str) -> None:
    events = list(client.responses.create(model=model, input="raw events", stream=True))
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[1] == "response.in_progress"
    assert kinds[-1] == "response.completed"
    numbers = [event.sequence_number for event in events]
    assert numbers == sorted(set(numbers)) and numbers[0] == 0
    assert kinds.index("response.output_item.added") < kinds.index("response.output_text.delta")
    assert kinds.index("response.output_text.done") < kinds.index("response.output_item.done")
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.id == events[0].response.id  # type: ignore[union-attr]
    assert "raw events" in completed.response.output_text


@pytest.mark.parametrize("model", FAMILIES)
def test_streamed_function_calls_assemble(client: openai.OpenAI, model: str) -> None:
    with client.responses.stream(
        model=model, input="call both in parallel", tools=[WEATHER_TOOL, TIME_TOOL]
    ) as stream:
        argument_deltas = [
            event for event in stream if event.type == "response.function_call_arguments.delta"
        ]
        final = stream.get_final_response()
    calls = [item for item in final.output if item.type == "function_call"]
    assert [call.name for call in calls] == ["get_weather", "get_time"]
    assert set(json.loads(calls[0].arguments)) == {"city", "unit"}
    assert json.loads(calls[1].arguments) == {"zone": "sample"}
    # Gemini sends each call's arguments whole; the others stream them in fragments.
    assert len(argument_deltas) >= 2 if model == "test-gemini" else len(argument_deltas) > 2


INTERLEAVED = {"x-sim-tool-calls": "interleave"}
"""An OpenAI-format upstream that streams parallel tool calls' fragments in turn."""


def assert_weather_then_time(calls: list[Any]) -> None:
    """The two parallel calls the simulator answers with, in order, whole and with their ids
    (the simulator's ids count up in hex)."""
    assert [(call.name, json.loads(call.arguments)) for call in calls] == [
        ("get_weather", {"city": "sample", "unit": "c"}),
        ("get_time", {"zone": "sample"}),
    ]
    first, second = calls[0].call_id, calls[1].call_id
    assert first.startswith("call_") and second == f"{first[:-12]}{int(first[-12:], 16) + 1:012x}"


def test_interleaved_parallel_function_calls_reach_the_stream_helper_whole(
    client: openai.OpenAI,
) -> None:
    with client.responses.stream(
        model="test-chat",
        input="call both in parallel",
        tools=[WEATHER_TOOL, TIME_TOOL],
        extra_headers=INTERLEAVED,
    ) as stream:
        final = stream.get_final_response()
    assert final.status == "completed"
    assert_weather_then_time([item for item in final.output if item.type == "function_call"])


def test_interleaved_parallel_function_calls_come_as_one_item_after_another(
    client: openai.OpenAI,
) -> None:
    events = list(
        client.responses.create(
            model="test-chat",
            input="call both in parallel",
            tools=[WEATHER_TOOL, TIME_TOOL],
            extra_headers=INTERLEAVED,
            stream=True,
        )
    )
    assert [event.sequence_number for event in events] == list(range(len(events)))
    items: list[Any] = []
    arguments: list[str] = []
    open_item: Any = None
    for event in events:  # added, argument deltas, done of one item before the next is added
        if event.type == "response.output_item.added":
            assert open_item is None and event.output_index == len(items)
            open_item = event.item
            items.append(event.item)
            arguments.append("")
        elif event.type == "response.function_call_arguments.delta":
            assert (event.item_id, event.output_index) == (open_item.id, len(items) - 1)
            arguments[-1] += event.delta
        elif event.type == "response.function_call_arguments.done":
            assert (event.item_id, event.arguments) == (open_item.id, arguments[-1])
        elif event.type == "response.output_item.done":
            assert (event.item.id, event.output_index) == (open_item.id, len(items) - 1)
            assert event.item.arguments == arguments[-1]  # type: ignore[union-attr]
            open_item = None
    completed = events[-1]
    assert completed.type == "response.completed" and open_item is None
    assert [item.id for item in completed.response.output] == [item.id for item in items]
    for item, text in zip(items, arguments, strict=True):
        item.arguments = text
    assert_weather_then_time(items)


def test_usage_an_upstream_left_out_is_the_gateways_own_count(client: openai.OpenAI) -> None:
    # Some OpenAI-compatible servers send no usage; a Response always states it.
    silent = {"x-sim-usage": "omit"}
    plain = client.responses.create(model="test-chat", input="count for me", extra_headers=silent)
    assert plain.usage is not None
    assert plain.usage.input_tokens > 0 and plain.usage.output_tokens > 0
    with client.responses.stream(
        model="test-chat", input="count for me", extra_headers=silent
    ) as stream:
        final = stream.get_final_response()
    assert final.usage is not None
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0


def test_stream_cut_by_max_output_tokens_ends_incomplete(client: openai.OpenAI) -> None:
    events = list(
        client.responses.create(
            model="test-chat",
            input="long stream",
            max_output_tokens=16,
            stream=True,
            extra_headers={"x-sim-output-tokens": "40"},
        )
    )
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"


def test_failure_after_the_first_byte_is_an_error_event(client: openai.OpenAI) -> None:
    events = list(
        client.responses.create(
            model="test-chat",
            input="cut me off",
            stream=True,
            extra_headers={"x-sim-fault": "stop-after:3"},
        )
    )
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and "response.output_text.delta" in kinds
    assert kinds[-2:] == ["error", "response.failed"] and "response.completed" not in kinds
    error, failed = events[-2], events[-1]
    assert error.type == "error" and error.message
    assert error.sequence_number == events[-3].sequence_number + 1
    assert failed.type == "response.failed" and failed.sequence_number == error.sequence_number + 1
    assert failed.response.status == "failed"
    assert failed.response.error is not None and failed.response.error.message == error.message


def test_a_long_run_of_function_calls_is_parsed_in_linear_time(gateway_url: str) -> None:
    # Each call joined the assistant turn by copying its list of calls: 100,000 calls (a
    # 6 MB body, well under max_body_size) held the event loop for half a minute, every
    # other request with it. (Sent with httpx: the SDK takes longer than that to encode them.)
    calls: list[Any] = [
        {"type": "function_call", "call_id": f"call_{i}", "name": "get_time", "arguments": "{}"}
        for i in range(100_000)
    ]
    output = {"type": "function_call_output", "call_id": "call_0", "output": "noon"}
    body = {"model": "test-chat", "input": [{"role": "user", "content": "x"}, *calls, output]}
    started = time.monotonic()
    answer = httpx.post(
        gateway_url + "/v1/responses",
        json=body,
        headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        timeout=60,
    )
    assert time.monotonic() - started < 10
    # Far beyond the context window: refused, once parsed.
    assert answer.status_code == 400 and "context window" in answer.json()["error"]["message"]


def test_previous_response_id_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="test-chat", input="x", previous_response_id="resp_123")
    assert caught.value.param == "previous_response_id"
    assert "no response state" in caught.value.message


def test_errors_name_fields_as_the_responses_client_sent_them(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:  # no budget for it on Claude
        client.responses.create(model="test-claude", input="x", reasoning={"effort": "xhigh"})
    assert caught.value.param == "reasoning.effort"
    assert "'reasoning.effort'" in caught.value.message
    assert "reasoning_effort" not in caught.value.message


@pytest.mark.parametrize("model", FAMILIES)
def test_what_no_family_could_meet_is_refused_before_the_upstream(
    client: openai.OpenAI, model: str
) -> None:
    # Without this, a required tool with none offered came back as plain text (a choice
    # silently not met) and a zero limit was the upstream's error, in its own field names.
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=model, input="x", tool_choice="required")
    assert caught.value.param == "tool_choice" and "no 'tools'" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=model, input="x", max_output_tokens=0)
    assert caught.value.param == "max_output_tokens"
    assert "Expected a value >= 16, but got 0 instead." in caught.value.message


@pytest.mark.parametrize("model", ["test-chat", "test-gemini"])  # Gemini: responseLogprobs
def test_log_probabilities_come_from_a_chat_deployment(client: openai.OpenAI, model: str) -> None:
    asked: Any = {"include": ["message.output_text.logprobs"], "top_logprobs": 2}
    response = client.responses.create(model=model, input="score me", **asked)
    part = response.output[0].content[0]  # type: ignore[union-attr]
    assert part.type == "output_text" and part.logprobs
    assert "".join(token.token for token in part.logprobs) == part.text
    assert all(len(token.top_logprobs) == 2 for token in part.logprobs)
    assert all(token.bytes == list(token.token.encode()) for token in part.logprobs)
    # Streamed: each delta's tokens, all of them in the done events and the final response.
    streamed: list[Any] = []
    with client.responses.stream(model=model, input="score me", **asked) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                assert "".join(token.token for token in event.logprobs) == event.delta
                streamed += [token.model_dump() for token in event.logprobs]
            elif event.type == "response.output_text.done":
                assert [token.model_dump() for token in event.logprobs] == streamed
        final = stream.get_final_response()
    final_part = final.output[0].content[0]  # type: ignore[union-attr]
    assert final_part.type == "output_text" and final_part.logprobs
    assert [token.model_dump() for token in final_part.logprobs] == streamed
    assert "".join(token["token"] for token in streamed) == final.output_text
    # Without include, none.
    plain = client.responses.create(model=model, input="score me")
    assert plain.output[0].content[0].logprobs == []  # type: ignore[union-attr]


@pytest.mark.parametrize("model", ["test-claude", "test-bedrock"])
def test_log_probabilities_a_family_cannot_give_are_refused(
    client: openai.OpenAI, model: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=model, input="x", include=["message.output_text.logprobs"])
    assert caught.value.param == "include" and "'include'" in caught.value.message
    # What asks for none passes (top_logprobs alone: OpenAI answers it with no logprobs).
    response = client.responses.create(
        model=model, input="x", include=["reasoning.encrypted_content"], top_logprobs=3
    )
    assert response.status == "completed"


def test_builtin_tools_are_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="test-chat", input="x", tools=[{"type": "web_search"}])
    assert caught.value.param == "tools[0].type" and "web_search" in caught.value.message


def test_stored_responses_cannot_be_retrieved_or_deleted(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.retrieve("resp_123")
    assert "does not store responses" in caught.value.message
    with pytest.raises(openai.NotFoundError):
        client.responses.delete("resp_123")
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.cancel("resp_123")
    assert caught.value.code == "response_not_stored"
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.input_items.list("resp_123")
    assert caught.value.code == "response_not_stored"


@pytest.mark.parametrize("route", ["compact", "input_tokens"])
def test_a_post_route_read_with_get_is_a_405_not_a_response_id(
    gateway_url: str, route: str
) -> None:
    answer = httpx.get(
        f"{gateway_url}/v1/responses/{route}", headers={"Authorization": f"Bearer {CLIENT_KEY}"}
    )
    assert answer.status_code == 405 and answer.headers["Allow"] == "POST"
    assert answer.json()["error"]["type"] == "invalid_request_error"


def test_input_tokens_are_counted(client: openai.OpenAI) -> None:
    # The SDK's responses.input_tokens.count was a 405 that said GET and DELETE were allowed
    # (the path read as a response id).
    asked: Any = {"input": "count my words", "instructions": "be brief", "tools": [TIME_TOOL]}
    counted = client.responses.input_tokens.with_raw_response.count(model="test-claude", **asked)
    assert counted.parse().object == "response.input_tokens"
    answered = client.responses.create(model="test-claude", tool_choice="none", **asked)
    assert answered.usage is not None
    assert counted.parse().input_tokens == answered.usage.input_tokens  # Claude's own count
    local = client.responses.input_tokens.with_raw_response.count(model="test-chat", **asked)
    assert local.parse().input_tokens > 0 and local.headers["x-tollway-token-count"] == "local"
    with pytest.raises(openai.BadRequestError) as caught:  # stored upstream: not countable here
        client.responses.input_tokens.count(model="test-chat", input="x", previous_response_id="r")
    assert caught.value.param == "previous_response_id"
    assert "cannot count" in caught.value.message
    with pytest.raises(openai.NotFoundError):
        client.responses.input_tokens.count(model="no-such-model", input="x")


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="no-such-model", input="x")
    assert caught.value.code == "model_not_found"


def test_upstream_fault_is_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.responses.create(
            model="test-chat", input="x", extra_headers={"x-sim-fault": "status:500"}
        )
    assert caught.value.status_code == 502


async def test_async_create_and_stream(gateway_url: str) -> None:
    async with openai.AsyncOpenAI(
        base_url=gateway_url + "/v1", api_key=CLIENT_KEY, max_retries=0
    ) as client:
        response = await client.responses.create(model="test-chat", input="async responses")
        assert "async responses" in response.output_text
        async with client.responses.stream(model="test-chat", input="async stream") as stream:
            final = await stream.get_final_response()
        assert "async stream" in final.output_text
        with pytest.raises(openai.BadRequestError):
            await client.responses.create(model="test-chat", input="x", conversation="conv_1")
