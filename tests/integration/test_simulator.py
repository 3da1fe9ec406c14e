"""The simulated provider on a real socket, driven by the real openai and anthropic SDKs."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tollway.simulator import FILLER_WORDS, Simulator, SimulatorSettings

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"enum": ["c", "f"]},
                "days": {"type": "integer"},
                "hourly": {"type": "boolean"},
                "note": {"type": "string"},
            },
            "required": ["city", "unit", "days", "hourly"],
        },
    },
}
CLOCK: Any = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
WEATHER_ARGS = {"city": "sample", "unit": "c", "days": 1, "hourly": True}
HELLO: Any = [{"role": "user", "content": "hello there world"}]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator()
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def oai(sim: Simulator) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=sim.url + "/v1", api_key="sk-test", max_retries=0)
    yield client
    await client.close()


async def raw(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """One raw HTTP exchange: (status, body bytes, headers)."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=data, headers=headers) as response,
    ):
        return response.status, await response.read(), dict(response.headers)


def sse_data(payload: bytes) -> list[str]:
    """The data fields of an SSE body, in order."""
    return [line[6:] for line in payload.decode().split("\n") if line.startswith("data: ")]


def tool_calls(completion: Any) -> list[Any]:
    """The first choice's tool calls (typed loosely: the SDK's union has custom tools too)."""
    return list(completion.choices[0].message.tool_calls or [])


def block(message: Any, index: int = 0) -> Any:
    """One content block of an Anthropic message."""
    return message.content[index]


def text_of(message: Any) -> str:
    """The text of an Anthropic message's first block."""
    text = block(message).text
    assert isinstance(text, str)
    return text


def error_of(exc: Any) -> Any:
    """The ``error`` object of an SDK status error's body."""
    return exc.body["error"]


def expected_reply(echo: str, tokens: int = 16) -> str:
    words = ["Simulated", "reply", "to:", *echo.split()]
    words += [FILLER_WORDS[i % len(FILLER_WORDS)] for i in range(tokens)]
    return " ".join(words[:tokens])


# --- OpenAI chat ---------------------------------------------------------------------------


async def test_chat_reply_is_deterministic_with_consistent_usage(
    oai: openai.AsyncOpenAI,
) -> None:
    completion = await oai.chat.completions.create(
        model="any-model-name", messages=HELLO, seed=3, user="bob", extra_body={"frob": 1}
    )
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == "any-model-name"
    assert completion.system_fingerprint
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == expected_reply("hello there world")
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 16
    assert completion.usage.prompt_tokens == 3 + 3  # message overhead + words
    assert completion.usage.total_tokens == 22


async def test_a_complete_answer_may_come_without_usage(oai: openai.AsyncOpenAI) -> None:
    # As some OpenAI-compatible servers answer: the gateway must then estimate the cost.
    completion = await oai.chat.completions.create(
        model="m", messages=HELLO, extra_headers={"x-sim-usage": "omit"}
    )
    assert completion.usage is None
    assert completion.choices[0].message.content == expected_reply("hello there world")
    with pytest.raises(openai.BadRequestError, match="x-sim-usage"):
        await oai.chat.completions.create(
            model="m", messages=HELLO, extra_headers={"x-sim-usage": "sometimes"}
        )


async def test_stream_with_include_usage(oai: openai.AsyncOpenAI, sim: Simulator) -> None:
    stream = await oai.chat.completions.create(
        model="m", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    content = [c.choices[0].delta.content for c in chunks[1:] if c.choices]
    assert "".join(c or "" for c in content) == expected_reply("hello there world")
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-2].choices[0].delta.content is None
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == len([c for c in content if c]) == 16
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert len({c.id for c in chunks}) == 1


async def test_stream_wire_format(sim: Simulator) -> None:
    body = {"model": "m", "messages": HELLO, "stream": True}
    status, payload, headers = await raw("POST", sim.url + "/v1/chat/completions", body)
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    data = sse_data(payload)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all("usage" not in c and c["object"] == "chat.completion.chunk" for c in chunks)
    with_usage = {**body, "stream_options": {"include_usage": True}}
    _, payload, _ = await raw("POST", sim.url + "/v1/chat/completions", with_usage)
    chunks = [json.loads(d) for d in sse_data(payload)[:-1]]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 16


async def test_tool_call_from_schema(oai: openai.AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER, CLOCK]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = tool_calls(completion)
    assert len(calls) == 1
    assert calls[0].id.startswith("call_")
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == WEATHER_ARGS
    assert completion.usage is not None and completion.usage.completion_tokens > 0


async def test_tool_choice_named_none_and_parallel(oai: openai.AsyncOpenAI) -> None:
    ask: Any = [{"role": "user", "content": "do both in parallel please"}]
    both = await oai.chat.completions.create(model="m", messages=ask, tools=[WEATHER, CLOCK])
    names = [c.function.name for c in tool_calls(both)]
    assert names == ["get_weather", "get_time"]
    serial = await oai.chat.completions.create(
        model="m", messages=ask, tools=[WEATHER, CLOCK], parallel_tool_calls=False
    )
    assert len(serial.choices[0].message.tool_calls or []) == 1
    named = await oai.chat.completions.create(
        model="m",
        messages=ask,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    calls = tool_calls(named)
    assert [c.function.name for c in calls] == ["get_time"]
    # As OpenAI answers it: a call a named tool_choice forces ends with "stop".
    assert named.choices[0].finish_reason == "stop"
    assert both.choices[0].finish_reason == "tool_calls"
    none = await oai.chat.completions.create(
        model="m", messages=ask, tools=[WEATHER], tool_choice="none"
    )
    assert none.choices[0].finish_reason == "stop" and none.choices[0].message.tool_calls is None


async def test_tool_result_is_mentioned(oai: openai.AsyncOpenAI) -> None:
    first = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER]
    )
    call = (first.choices[0].message.tool_calls or [])[0]
    messages: list[Any] = [
        {"role": "user", "content": "weather?"},
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny and 21C"},
    ]
    second = await oai.chat.completions.create(model="m", messages=messages, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    content = second.choices[0].message.content or ""
    assert content.startswith("Simulated reply to tool result: sunny and 21C")


async def test_streamed_parallel_tool_calls_assemble(oai: openai.AsyncOpenAI) -> None:
    async with oai.chat.completions.stream(
        model="m",
        messages=[{"role": "user", "content": "parallel"}],
        tools=[WEATHER, CLOCK],
    ) as stream:
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].function.arguments) == WEATHER_ARGS
    assert json.loads(calls[1].function.arguments) == {}
    assert final.choices[0].finish_reason == "tool_calls"


async def test_streamed_tool_arguments_come_in_fragments(sim: Simulator) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [WEATHER]}
    _, payload, _ = await raw("POST", sim.url + "/v1/chat/completions", {**body, "stream": True})
    deltas = [json.loads(d)["choices"][0]["delta"] for d in sse_data(payload)[:-1]]
    calls = [d["tool_calls"][0] for d in deltas if d.get("tool_calls")]
    assert len(calls) > 2
    assert calls[0]["id"].startswith("call_") and calls[0]["type"] == "function"
    assert calls[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert all(set(c) == {"index", "function"} for c in calls[1:])
    arguments = "".join(c["function"]["arguments"] for c in calls)
    assert json.loads(arguments) == WEATHER_ARGS


async def test_the_output_limit_cuts_a_tool_call_mid_way(oai: openai.AsyncOpenAI) -> None:
    # As OpenAI ends a call max_tokens stops: its arguments so far, which are not yet JSON.
    ask: Any = [{"role": "user", "content": "both in parallel"}]
    cut = await oai.chat.completions.create(
        model="m", messages=ask, tools=[WEATHER, CLOCK], max_tokens=2
    )
    calls = tool_calls(cut)
    assert cut.choices[0].finish_reason == "length"
    assert [c.function.name for c in calls] == ["get_weather"]
    whole = json.dumps(WEATHER_ARGS, separators=(",", ":"))
    assert calls[0].function.arguments == whole[:16]
    assert cut.usage is not None and cut.usage.completion_tokens == 2
    async with oai.chat.completions.stream(
        model="m", messages=ask, tools=[WEATHER, CLOCK], max_tokens=2
    ) as stream:
        async for _ in stream:
            pass
    streamed = stream.current_completion_snapshot
    assert streamed.choices[0].finish_reason == "length"
    assert [c.function.arguments for c in tool_calls(streamed)] == [whole[:16]]


async def test_interleave_knob_streams_parallel_tool_calls_in_turn(
    sim: Simulator, oai: openai.AsyncOpenAI
) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "parallel"}], "stream": True}
    body["tools"] = [WEATHER, {**CLOCK, "function": {**CLOCK["function"], "name": "get_zone"}}]
    headers = {"x-sim-tool-calls": "interleave"}
    _, payload, _ = await raw("POST", sim.url + "/v1/chat/completions", body, headers)
    deltas = [json.loads(d)["choices"][0]["delta"] for d in sse_data(payload)[:-1]]
    order = [d["tool_calls"][0]["index"] for d in deltas if d.get("tool_calls")]
    assert order[:4] == [0, 1, 0, 1]  # both headers, then a fragment of each in turn
    assert deltas[0]["role"] == "assistant" and deltas[1]["tool_calls"][0]["id"]
    # The SDK, which assembles by index, gets the same calls as from a sequential stream.
    async with oai.chat.completions.stream(
        model="m", messages=body["messages"], tools=body["tools"], extra_headers=headers
    ) as stream:
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_zone"]
    assert json.loads(calls[0].function.arguments) == WEATHER_ARGS
    with pytest.raises(openai.BadRequestError, match="x-sim-tool-calls"):
        await oai.chat.completions.create(
            model="m", messages=HELLO, extra_headers={"x-sim-tool-calls": "sometimes"}
        )


async def test_unindexed_knob_streams_tool_call_deltas_without_their_index(
    sim: Simulator,
) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "parallel"}], "stream": True}
    body["tools"] = [WEATHER, {**CLOCK, "function": {**CLOCK["function"], "name": "get_zone"}}]
    headers = {"x-sim-tool-calls": "unindexed"}
    _, payload, _ = await raw("POST", sim.url + "/v1/chat/completions", body, headers)
    deltas = [json.loads(d)["choices"][0]["delta"] for d in sse_data(payload)[:-1]]
    calls = [call for d in deltas for call in d.get("tool_calls") or ()]
    assert calls and all("index" not in call for call in calls)
    # A new call is told by its id; the fragments after it are its arguments.
    starts = [k for k, call in enumerate(calls) if "id" in call]
    assert len(starts) == 2 and calls[starts[1]]["function"]["name"] == "get_zone"
    arguments = "".join(c["function"]["arguments"] for c in calls[: starts[1]])
    assert json.loads(arguments) == WEATHER_ARGS


async def test_json_response_formats(oai: openai.AsyncOpenAI) -> None:
    plain = await oai.chat.completions.create(
        model="m", messages=HELLO, response_format={"type": "json_object"}
    )
    answer = json.loads(plain.choices[0].message.content or "")
    assert answer["answer"].startswith("Simulated reply to: hello there world")
    schema: Any = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    shaped = await oai.chat.completions.create(
        model="m",
        messages=HELLO,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
    )
    assert json.loads(shaped.choices[0].message.content or "") == {"name": "sample", "age": 1}


async def test_strict_schemas_follow_openais_rules(oai: openai.AsyncOpenAI) -> None:
    # Strict mode needs every object closed and every property required (an optional one
    # is a union with null), for a response format and for a function's parameters alike.
    optional: Any = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name"],
        "additionalProperties": False,
    }
    strict_format: Any = {"name": "p", "schema": optional, "strict": True}
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(
            model="m",
            messages=HELLO,
            response_format={"type": "json_schema", "json_schema": strict_format},
        )
    assert caught.value.param == "response_format"
    assert "Missing 'age'" in caught.value.message
    tool: Any = {"type": "function", "function": {"name": "f", "parameters": optional}}
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(
            model="m",
            messages=HELLO,
            tools=[{**tool, "function": {**tool["function"], "strict": True}}],
        )
    assert caught.value.param == "tools[0].function.parameters"
    assert caught.value.code == "invalid_function_parameters"
    opened: Any = {"type": "object", "properties": {"nested": {**optional, "required": []}}}
    opened["required"] = ["nested"]
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(
            model="m",
            messages=HELLO,
            response_format={
                "type": "json_schema",
                "json_schema": {**strict_format, "schema": opened},
            },
        )
    assert "'additionalProperties' is required to be supplied and to be false" in (
        caught.value.message
    )
    # Not strict, the same schemas are taken.
    await oai.chat.completions.create(
        model="m",
        messages=HELLO,
        tools=[tool],
        response_format={"type": "json_schema", "json_schema": {**strict_format, "strict": False}},
    )


async def test_n_choices_differ(oai: openai.AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(model="m", messages=HELLO, n=2)
    assert [c.index for c in completion.choices] == [0, 1]
    first, second = (c.message.content or "" for c in completion.choices)
    assert first != second and second.startswith("Simulated reply #2 to:")
    assert completion.usage is not None and completion.usage.completion_tokens == 32
    stream = await oai.chat.completions.create(model="m", messages=HELLO, n=2, stream=True)
    texts = ["", ""]
    async for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == [first, second]


async def test_stop_and_max_tokens(oai: openai.AsyncOpenAI) -> None:
    stopped = await oai.chat.completions.create(model="m", messages=HELLO, stop=["delta", "zzz"])
    assert stopped.choices[0].finish_reason == "stop"
    assert (
        stopped.choices[0].message.content
        == "Simulated reply to: hello there world alpha bravo charlie"
    )
    assert stopped.usage is not None and stopped.usage.completion_tokens == 9
    caps: list[dict[str, Any]] = [{"max_tokens": 5}, {"max_completion_tokens": 5}]
    for cap in caps:
        capped = await oai.chat.completions.create(model="m", messages=HELLO, **cap)
        assert capped.choices[0].finish_reason == "length"
        assert capped.choices[0].message.content == "Simulated reply to: hello there"
        assert capped.usage is not None and capped.usage.completion_tokens == 5
    roomy = await oai.chat.completions.create(model="m", messages=HELLO, max_tokens=100)
    assert roomy.choices[0].finish_reason == "stop"


async def test_bad_requests(oai: openai.AsyncOpenAI, sim: Simulator) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(model="m", messages=[])
    assert caught.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(model="", messages=HELLO)
    assert caught.value.param == "model"
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(
            model="m", messages=HELLO, stream_options={"include_usage": True}
        )
    assert caught.value.param == "stream_options"
    # A file's data without its filename: OpenAI's 400 names the file id it then looks for.
    pdf: Any = {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}}
    unnamed: Any = [{"role": "user", "content": [{"type": "text", "text": "read"}, pdf]}]
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(model="m", messages=unnamed)
    assert caught.value.param == "messages[0].content[1].file.file_id"
    assert caught.value.code == "missing_required_parameter"
    pdf["file"]["filename"] = "tolls.pdf"
    await oai.chat.completions.create(model="m", messages=unnamed)
    status, payload, _ = await raw("POST", sim.url + "/v1/chat/completions", b"{nope")
    assert status == 400
    error = json.loads(payload)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"


async def test_tool_messages_must_answer_every_call_before_them(oai: openai.AsyncOpenAI) -> None:
    """A call left unanswered, and a tool message for no call, are OpenAI's 400s."""
    calls: Any = [
        {"id": f"call_{n}", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
        for n in (1, 2)
    ]
    turn: Any = [*HELLO, {"role": "assistant", "content": None, "tool_calls": calls}]
    first: Any = {"role": "tool", "tool_call_id": "call_1", "content": "noon"}
    later: Any = {"role": "user", "content": "and?"}
    for messages in ([*turn, first], [*turn, first, later]):
        with pytest.raises(openai.BadRequestError) as caught:
            await oai.chat.completions.create(model="m", messages=messages, tools=[CLOCK])
        assert caught.value.param == "messages.[1].role"
        assert caught.value.message.endswith("did not have response messages: call_2")
    stray: Any = {"role": "tool", "tool_call_id": "call_9", "content": "noon"}
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(model="m", messages=[*turn, first, stray], tools=[CLOCK])
    assert caught.value.param == "messages.[3].role"
    second: Any = {"role": "tool", "tool_call_id": "call_2", "content": "one"}
    answer = await oai.chat.completions.create(
        model="m", messages=[*turn, second, first, later], tools=[CLOCK]
    )
    assert answer.choices[0].finish_reason in ("stop", "length", "tool_calls")


# --- embeddings and models -----------------------------------------------------------------


async def test_embeddings_base64_default_and_float(oai: openai.AsyncOpenAI, sim: Simulator) -> None:
    default = await oai.embeddings.create(model="sim-embed", input=["one", "two words"])
    assert sim.requests[-1].json["encoding_format"] == "base64"
    vectors = [item.embedding for item in default.data]
    assert [len(v) for v in vectors] == [1536, 1536]
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-4) for v in vectors)
    assert vectors[0] != vectors[1]
    assert default.usage.prompt_tokens == default.usage.total_tokens == 3
    floats = await oai.embeddings.create(model="sim-embed", input="one", encoding_format="float")
    assert floats.data[0].embedding == vectors[0]
    short = await oai.embeddings.create(model="sim-embed", input=[[1, 2, 3]], dimensions=64)
    assert len(short.data[0].embedding) == 64
    assert short.usage.prompt_tokens == 3
    with pytest.raises(openai.BadRequestError):
        await oai.embeddings.create(model="sim-embed", input="", encoding_format="float")


async def test_models_list(oai: openai.AsyncOpenAI, sim: Simulator) -> None:
    names = [model.id async for model in oai.models.list()]
    assert {"sim-chat", "sim-chat-large", "sim-embed"} <= set(names)
    claude = anthropic.AsyncAnthropic(base_url=sim.url, api_key="k", max_retries=0)
    assert {m.id async for m in claude.models.list()} == {"sim-chat", "sim-chat-large"}
    await claude.close()


# --- Azure ---------------------------------------------------------------------------------


async def test_azure_chat_stream_and_embeddings(sim: Simulator) -> None:
    sim.configure(api_key="azure-key")
    azure = openai.AsyncAzureOpenAI(
        azure_endpoint=sim.url, api_key="azure-key", api_version="2024-10-21", max_retries=0
    )
    completion = await azure.chat.completions.create(model="my-deploy", messages=HELLO)
    assert completion.model == "my-deploy"
    assert completion.choices[0].message.content == expected_reply("hello there world")
    recorded = sim.requests[-1]
    assert recorded.path == "/openai/deployments/my-deploy/chat/completions"
    assert recorded.query == {"api-version": "2024-10-21"}
    assert recorded.headers["api-key"] == "azure-key"
    stream = await azure.chat.completions.create(model="my-deploy", messages=HELLO, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == expected_reply("hello there world")
    embedding = await azure.embeddings.create(model="my-embed", input="x")
    assert len(embedding.data[0].embedding) == 1536
    await azure.close()
    url = sim.url + "/openai/deployments/d/chat/completions"
    status, _, _ = await raw("POST", url, {"messages": HELLO}, {"api-key": "azure-key"})
    assert status == 404  # real Azure: missing api-version is "Resource not found"
    status, payload, _ = await raw("POST", url + "?api-version=1", {"messages": HELLO})
    assert status == 401 and json.loads(payload)["error"]["code"] == "401"


async def test_mistral_refuses_what_its_schema_lacks_and_streams_usage_unasked(
    sim: Simulator,
) -> None:
    url = sim.url + "/mistral/v1/chat/completions"
    messages = [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": "hi", "name": "alice"},
    ]
    body = {"model": "m", "messages": messages, "max_completion_tokens": 5, "seed": 1}
    status, payload, _ = await raw("POST", url, body)
    refusal = json.loads(payload)
    assert status == 422 and refusal["object"] == "error"
    locations = [detail["loc"] for detail in refusal["message"]["detail"]]
    assert locations == [
        ["body", "max_completion_tokens"],
        ["body", "seed"],
        ["body", "messages", 0],
        ["body", "messages", 1, "user", "name"],
    ]
    mistral = openai.AsyncOpenAI(base_url=sim.url + "/mistral/v1", api_key="k", max_retries=0)
    stream = await mistral.chat.completions.create(
        model="m", messages=HELLO, stream=True, max_tokens=3, extra_body={"random_seed": 1}
    )
    chunks = [chunk async for chunk in stream]
    await mistral.close()
    assert chunks[-1].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert all(chunk.usage is None for chunk in chunks[:-1])


# --- Anthropic -----------------------------------------------------------------------------


@pytest.fixture
async def claude(sim: Simulator) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=sim.url, api_key="sk-ant", max_retries=0)
    yield client
    await client.close()


async def test_anthropic_message(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(
        model="claude-sim",
        max_tokens=100,
        system=[{"type": "text", "text": "be brief"}],
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": "iVBORw0KGgo=",
                        },
                    },
                    {"type": "text", "text": "hello there world"},
                ],
            }
        ],
    )
    assert message.id.startswith("msg_") and message.type == "message"
    assert message.model == "claude-sim" and message.role == "assistant"
    assert message.content[0].type == "text"
    assert text_of(message) == expected_reply("hello there world")
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.output_tokens == 16
    assert message.usage.input_tokens == (3 + 2) + (3 + 3 + 85)
    assert message.usage.cache_read_input_tokens == 0
    counted = await claude.messages.count_tokens(
        model="claude-sim",
        system="be brief",
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": "iVBORw0KGgo=",
                        },
                    },
                    {"type": "text", "text": "hello there world"},
                ],
            }
        ],
    )
    assert counted.input_tokens == message.usage.input_tokens


async def test_anthropic_stop_sequence_and_max_tokens(claude: anthropic.AsyncAnthropic) -> None:
    ask: Any = [{"role": "user", "content": "hello there world"}]
    stopped = await claude.messages.create(
        model="c",
        max_tokens=100,
        messages=ask,
        stop_sequences=["charlie"],
    )
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "charlie"
    assert text_of(stopped) == "Simulated reply to: hello there world alpha bravo"
    capped = await claude.messages.create(model="c", max_tokens=4, messages=ask)
    assert capped.stop_reason == "max_tokens" and capped.usage.output_tokens == 4


async def test_anthropic_stream_text(claude: anthropic.AsyncAnthropic) -> None:
    async with claude.messages.stream(
        model="c", max_tokens=50, messages=[{"role": "user", "content": "hello there world"}]
    ) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(pieces) == expected_reply("hello there world")
    assert len(pieces) == final.usage.output_tokens == 16
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == 6


REFUSAL = "I can't help with that."


async def test_refusal_knob_declines_as_each_api_does(
    oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic
) -> None:
    knob = {"x-sim-refusal": REFUSAL}
    message = (
        (await oai.chat.completions.create(model="m", messages=HELLO, extra_headers=knob))
        .choices[0]
        .message
    )
    assert (message.content, message.refusal) == (None, REFUSAL)
    stream = await oai.chat.completions.create(
        model="m", messages=HELLO, stream=True, extra_headers=knob
    )
    deltas: list[Any] = [chunk.choices[0].delta async for chunk in stream if chunk.choices]
    assert "".join(d.refusal or "" for d in deltas) == REFUSAL
    assert all(d.content is None for d in deltas)
    refused = await claude.messages.create(
        model="c", max_tokens=50, messages=HELLO, extra_headers=knob
    )
    assert refused.stop_reason == "refusal" and text_of(refused) == REFUSAL
    async with claude.messages.stream(
        model="c", max_tokens=50, messages=HELLO, extra_headers=knob
    ) as events:
        final = await events.get_final_message()
    assert final.stop_reason == "refusal" and text_of(final) == REFUSAL


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_reasoning_knob_reasons_first_as_compatible_servers_do(
    sim: Simulator, field: str
) -> None:
    body = {"model": "m", "messages": HELLO}
    headers = {"x-sim-reasoning": field}
    status, payload, _ = await raw("POST", sim.url + "/v1/chat/completions", body, headers)
    answer = json.loads(payload)
    message = answer["choices"][0]["message"]
    assert status == 200 and message[field].startswith("Simulated reasoning about: hello")
    assert message["content"] == expected_reply("hello there world")
    usage = answer["usage"]
    assert usage["completion_tokens"] == 32
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 16
    streamed = {**body, "stream": True}
    _, payload, _ = await raw("POST", sim.url + "/v1/chat/completions", streamed, headers)
    deltas = [json.loads(d)["choices"][0]["delta"] for d in sse_data(payload)[:-1]]
    assert deltas[0]["role"] == "assistant"
    reasoning = [d[field] for d in deltas if d.get(field)]
    text = [d["content"] for d in deltas if d.get("content")]
    assert "".join(reasoning) == message[field] and len(reasoning) == 16
    assert "".join(text) == message["content"]
    first_text = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert all(not d.get(field) for d in deltas[first_text:])


async def test_anthropic_stream_event_order(sim: Simulator) -> None:
    body = {"model": "c", "max_tokens": 9, "stream": True, "messages": HELLO}
    headers = {"anthropic-version": "2023-06-01"}
    status, payload, _ = await raw("POST", sim.url + "/v1/messages", body, headers)
    assert status == 200
    lines = payload.decode().split("\n")
    names = [line[7:] for line in lines if line.startswith("event: ")]
    assert names == [
        "message_start", "content_block_start", "ping", *["content_block_delta"] * 9,
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    events = [json.loads(d) for d in sse_data(payload)]
    assert [e["type"] for e in events] == names
    start = events[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["output_tokens"] == 1
    assert events[-2]["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert events[-2]["usage"]["output_tokens"] == 9


async def test_anthropic_tools_stream_and_result(claude: anthropic.AsyncAnthropic) -> None:
    tools: Any = [
        {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    ask: Any = [{"role": "user", "content": "both in parallel"}]
    async with claude.messages.stream(model="c", max_tokens=99, messages=ask, tools=tools) as s:
        final = await s.get_final_message()
    assert final.stop_reason == "tool_use"
    blocks = [b for b in final.content if b.type == "tool_use"]
    assert [b.name for b in blocks] == ["get_weather", "get_time"]
    assert blocks[0].input == WEATHER_ARGS and blocks[0].id.startswith("toolu_")
    single = await claude.messages.create(
        model="c",
        max_tokens=99,
        messages=ask,
        tools=tools,
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    assert [b.type for b in single.content] == ["tool_use"]
    follow: Any = [
        *ask,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in single.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": block(single).id, "content": "rainy 12C"}
            ],
        },
    ]
    answer = await claude.messages.create(model="c", max_tokens=99, messages=follow, tools=tools)
    assert answer.stop_reason == "end_turn"
    assert text_of(answer).startswith("Simulated reply to tool result: rainy 12C")


async def test_anthropic_protocol_errors(sim: Simulator, claude: anthropic.AsyncAnthropic) -> None:
    status, payload, _ = await raw(
        "POST", sim.url + "/v1/messages", {"model": "c", "messages": HELLO, "max_tokens": 5}
    )
    assert status == 400
    body = json.loads(payload)
    assert body["type"] == "error"
    assert body["error"] == {
        "type": "invalid_request_error",
        "message": "anthropic-version: header is required",
    }
    with pytest.raises(anthropic.BadRequestError) as caught:
        await claude.messages.create(model="c", messages=HELLO, max_tokens=-1)
    assert error_of(caught.value)["type"] == "invalid_request_error"
    headers = {"anthropic-version": "2023-06-01"}
    status, payload, _ = await raw("POST", sim.url + "/v1/messages", b"{bad", headers)
    assert status == 400 and json.loads(payload)["error"]["type"] == "invalid_request_error"


async def test_anthropic_reads_a_pdf_by_url_and_refuses_a_url_it_cannot_fetch(
    claude: anthropic.AsyncAnthropic,
) -> None:
    def turn(source: Any) -> Any:
        document = {"type": "document", "source": source}
        return [{"role": "user", "content": [{"type": "text", "text": "read"}, document]}]

    fetched = {"type": "url", "url": "https://example.com/tolls.pdf"}
    answer = await claude.messages.create(model="c", messages=turn(fetched), max_tokens=5)
    assert answer.usage.input_tokens > 0
    for source, words in [
        ({"type": "url"}, "messages.0.content.1.document.source.url.url: Field required"),
        ({"type": "url", "url": "ftp://example.com/t.pdf"}, "must be an http or https URL"),
        ({"type": "web", "url": "https://example.com/t.pdf"}, "does not match any of"),
    ]:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await claude.messages.create(model="c", messages=turn(source), max_tokens=5)
        assert words in error_of(caught.value)["message"]


async def test_anthropic_tool_results_must_answer_the_calls_before_them(
    claude: anthropic.AsyncAnthropic,
) -> None:
    """A result for an unknown call, and a call left unanswered, are Claude's 400s."""
    use: Any = {"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {}}
    result: Any = {"type": "tool_result", "tool_use_id": "toolu_2", "content": "noon"}
    asked: Any = {"role": "user", "content": "time?"}
    stray: Any = [
        asked,
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [result]},
    ]
    with pytest.raises(anthropic.BadRequestError) as caught:
        await claude.messages.create(model="c", max_tokens=9, messages=stray)
    message = error_of(caught.value)["message"]
    assert message.startswith("messages.1: `tool_use` ids were found without `tool_result`")
    assert "toolu_1" in message
    both: Any = [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "noon"}, result]
    stray[2] = {"role": "user", "content": both}
    with pytest.raises(anthropic.BadRequestError) as caught:
        await claude.messages.create(model="c", max_tokens=9, messages=stray)
    message = error_of(caught.value)["message"]
    assert message.startswith("messages.2.content.1: unexpected `tool_use_id` found in")
    assert "toolu_2" in message
    with pytest.raises(anthropic.BadRequestError):
        await claude.messages.create(model="c", max_tokens=9, messages=[stray[2]])
    stray[2]["content"] = both[:1]
    answer = await claude.messages.create(model="c", max_tokens=9, messages=stray)
    assert text_of(answer).startswith("Simulated reply to tool result: noon")


# --- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (500, openai.InternalServerError),
        (502, openai.InternalServerError),
        (503, openai.InternalServerError),
        (429, openai.RateLimitError),
        (404, openai.NotFoundError),
    ],
)
async def test_openai_status_faults(
    oai: openai.AsyncOpenAI, status: int, error_class: type[openai.APIStatusError]
) -> None:
    with pytest.raises(error_class) as caught:
        await oai.chat.completions.create(
            model="m", messages=HELLO, extra_headers={"x-sim-fault": f"status:{status}"}
        )
    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict) and caught.value.body["message"]
    assert caught.value.response.headers["x-request-id"].startswith("req_")
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "1"


async def test_retry_after_override(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await oai.embeddings.create(
            model="e",
            input="x",
            extra_headers={"x-sim-fault": "status:429", "x-sim-retry-after": "7"},
        )
    assert caught.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize(
    ("status", "error_class", "kind"),
    [
        (529, anthropic.OverloadedError, "overloaded_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
    ],
)
async def test_anthropic_status_faults(
    claude: anthropic.AsyncAnthropic,
    status: int,
    error_class: type[anthropic.APIStatusError],
    kind: str,
) -> None:
    with pytest.raises(error_class) as caught:
        await claude.messages.create(
            model="c",
            max_tokens=5,
            messages=HELLO,
            extra_headers={"x-sim-fault": f"status:{status}"},
        )
    assert caught.value.status_code == status
    assert error_of(caught.value)["type"] == kind
    assert caught.value.request_id is not None


async def test_reset_is_a_connection_error(
    oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic
) -> None:
    reset = {"x-sim-fault": "reset"}
    with pytest.raises(openai.APIConnectionError):
        await oai.chat.completions.create(model="m", messages=HELLO, extra_headers=reset)
    with pytest.raises(anthropic.APIConnectionError):
        await claude.messages.create(
            model="c",
            max_tokens=5,
            messages=HELLO,
            extra_headers=reset,
        )
    after = await oai.chat.completions.create(model="m", messages=HELLO)
    assert after.choices[0].finish_reason == "stop"


async def test_stop_after_cuts_the_stream(
    oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic
) -> None:
    stream = await oai.chat.completions.create(
        model="m", messages=HELLO, stream=True, extra_headers={"x-sim-fault": "stop-after:3"}
    )
    received: list[str] = []
    finishes: list[str | None] = []
    with pytest.raises(openai.APIConnectionError) as caught:
        async for chunk in stream:
            received.extend(c.delta.content or "" for c in chunk.choices)
            finishes.extend(c.finish_reason for c in chunk.choices)
    assert "incomplete chunked read" in str(caught.value.__cause__)
    assert [r for r in received if r] == ["Simulated", " reply", " to:"]
    assert not any(finishes)
    texts: list[str] = []
    with pytest.raises(Exception, match="incomplete chunked read"):  # the SDK re-raises httpx's
        async with claude.messages.stream(
            model="c",
            max_tokens=50,
            messages=HELLO,
            extra_headers={"x-sim-fault": "stop-after:2"},
        ) as cut:
            async for text in cut.text_stream:
                texts.append(text)
    assert texts == ["Simulated", " reply"]
    assert cut.current_message_snapshot.stop_reason is None
    with pytest.raises(openai.APIConnectionError):  # non-streaming stop-after is a reset
        await oai.chat.completions.create(
            model="m", messages=HELLO, extra_headers={"x-sim-fault": "stop-after:3"}
        )


async def test_hang_times_out_and_does_not_block_stop() -> None:
    simulator = Simulator()
    url = await simulator.start()
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="k", max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(
            model="m", messages=HELLO, extra_headers={"x-sim-fault": "hang"}
        )
    simulator.configure(fault="hang")
    pending = asyncio.ensure_future(
        client.chat.completions.create(model="m", messages=HELLO, timeout=30)
    )
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await simulator.stop()
    assert time.monotonic() - started < 1.5
    with pytest.raises(openai.APIConnectionError):
        await pending
    await client.close()


async def test_error_after_ends_an_openai_stream_with_the_overload_or_the_event_asked_for(
    oai: openai.AsyncOpenAI,
) -> None:
    async def failure(headers: dict[str, str]) -> tuple[list[str], openai.APIError]:
        stream = await oai.chat.completions.create(
            model="m", messages=HELLO, stream=True, extra_headers=headers
        )
        received: list[str] = []
        with pytest.raises(openai.APIError) as caught:
            async for chunk in stream:
                received.extend(c.delta.content or "" for c in chunk.choices)
        return [r for r in received if r], caught.value

    received, overloaded = await failure({"x-sim-fault": "error-after:2"})
    assert received == ["Simulated", " reply"]
    assert (overloaded.type, overloaded.code) == (
        "service_unavailable_error",
        "server_is_overloaded",
    )
    vllm = {"error": {"message": "engine dead", "type": "InternalServerError", "code": 500}}
    own = {"x-sim-fault": "error-after:1", "x-sim-stream-error": json.dumps(vllm)}
    received, failed = await failure(own)
    assert received == ["Simulated"] and failed.body == vllm["error"]
    assert failed.message == "engine dead"
    with pytest.raises(openai.BadRequestError, match="x-sim-stream-error"):
        await oai.chat.completions.create(
            model="m", messages=HELLO, stream=True,
            extra_headers={"x-sim-fault": "error-after:1", "x-sim-stream-error": "[1]"},
        )  # fmt: skip


async def test_hang_after_falls_silent_mid_stream_until_the_caller_leaves(
    sim: Simulator,
) -> None:
    client = openai.AsyncOpenAI(base_url=sim.url + "/v1", api_key="k", max_retries=0, timeout=1)
    stream = await client.chat.completions.create(
        model="m", messages=HELLO, stream=True, extra_headers={"x-sim-fault": "hang-after:2"}
    )
    received: list[str] = []
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        async for chunk in stream:
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert [r for r in received if r] == ["Simulated", " reply"]
    assert 0.8 < time.monotonic() - started < 3
    await client.close()
    await asyncio.sleep(0.1)
    departures = json.loads((await raw("GET", sim.url + "/_sim/departures"))[1])
    assert [d["path"] for d in departures] == ["/v1/chat/completions"]


async def test_server_wide_fault_and_rate(oai: openai.AsyncOpenAI, sim: Simulator) -> None:
    sim.configure(fault="status:503")
    with pytest.raises(openai.InternalServerError):
        await oai.chat.completions.create(model="m", messages=HELLO)
    exempt = {"x-sim-fault": "none"}
    assert await oai.chat.completions.create(model="m", messages=HELLO, extra_headers=exempt)
    sim.configure(fault=None)
    await oai.chat.completions.create(model="m", messages=HELLO)

    async def outcomes() -> list[bool]:
        sim.configure(fault="status:500", fault_rate=0.5, seed=42)
        results = []
        for _ in range(20):
            try:
                await oai.chat.completions.create(model="m", messages=HELLO)
                results.append(True)
            except openai.InternalServerError:
                results.append(False)
        return results

    first = await outcomes()
    assert 0 < sum(first) < 20
    assert await outcomes() == first
    with pytest.raises(ValueError):
        sim.configure(fault="explode")


# --- auth, latency and control endpoints ---------------------------------------------------


async def test_api_key_enforced_in_each_dialect(sim: Simulator) -> None:
    sim.configure(api_key="right")
    wrong = openai.AsyncOpenAI(base_url=sim.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        await wrong.chat.completions.create(model="m", messages=HELLO)
    assert caught.value.code == "invalid_api_key"
    right = openai.AsyncOpenAI(base_url=sim.url + "/v1", api_key="right", max_retries=0)
    assert (await right.chat.completions.create(model="m", messages=HELLO)).choices
    bad_claude = anthropic.AsyncAnthropic(base_url=sim.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as denied:
        await bad_claude.messages.create(model="c", max_tokens=5, messages=HELLO)
    assert error_of(denied.value)["type"] == "authentication_error"
    good_claude = anthropic.AsyncAnthropic(base_url=sim.url, api_key="right", max_retries=0)
    assert (await good_claude.messages.create(model="c", max_tokens=5, messages=HELLO)).content
    for client in (wrong, right, bad_claude, good_claude):
        await client.close()


async def test_latency_knobs(oai: openai.AsyncOpenAI, sim: Simulator) -> None:
    started = time.monotonic()
    await oai.chat.completions.create(
        model="m", messages=HELLO, extra_headers={"x-sim-ttft-ms": "200"}
    )
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    stream = await oai.chat.completions.create(
        model="m",
        messages=HELLO,
        stream=True,
        extra_headers={"x-sim-tpot-ms": "50", "x-sim-output-tokens": "5"},
    )
    tokens = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            tokens += 1
    assert tokens == 5
    # Measured from the request, not between chunk arrivals: a busy client may read the
    # first chunks late and together, which shortens their spacing but never the whole.
    assert time.monotonic() - started >= 4 * 0.05 * 0.9
    sim.configure(output_tokens=4)
    short = await oai.chat.completions.create(model="m", messages=HELLO)
    assert short.usage is not None and short.usage.completion_tokens == 4
    with pytest.raises(openai.BadRequestError):
        await oai.chat.completions.create(
            model="m", messages=HELLO, extra_headers={"x-sim-ttft-ms": "soon"}
        )


async def test_control_endpoints(oai: openai.AsyncOpenAI, sim: Simulator) -> None:
    await oai.chat.completions.create(model="m", messages=HELLO, extra_headers={"x-trace": "t1"})
    status, payload, _ = await raw("GET", sim.url + "/_sim/requests")
    recorded = json.loads(payload)
    assert status == 200 and len(recorded) == 1
    assert recorded[0]["method"] == "POST" and recorded[0]["path"] == "/v1/chat/completions"
    assert recorded[0]["headers"]["x-trace"] == "t1"
    assert recorded[0]["headers"]["authorization"] == "Bearer sk-test"
    assert recorded[0]["json"]["messages"] == HELLO
    assert sim.requests[0].json == recorded[0]["json"]
    status, payload, _ = await raw("DELETE", sim.url + "/_sim/requests")
    assert json.loads(payload) == {"deleted": 1} and sim.requests == []
    status, payload, _ = await raw("POST", sim.url + "/_sim/config", {"output_tokens": 3})
    assert status == 200 and json.loads(payload)["output_tokens"] == 3
    assert sim.settings.output_tokens == 3
    status, payload, _ = await raw("GET", sim.url + "/_sim/config")
    assert json.loads(payload) == sim.settings.model_dump()
    reply = await oai.chat.completions.create(model="m", messages=HELLO)
    assert reply.choices[0].message.content == "Simulated reply to:"
    status, _, _ = await raw("POST", sim.url + "/_sim/config", {"no_such_knob": 1})
    assert status == 400
    status, _, _ = await raw("POST", sim.url + "/_sim/config", {"fault": "status:99"})
    assert status == 400


async def test_request_log_keeps_the_last_200(sim: Simulator) -> None:
    async with aiohttp.ClientSession() as session:
        for i in range(205):
            async with session.get(sim.url + f"/v1/models?i={i}") as response:
                assert response.status == 200
    assert len(sim.requests) == 200
    assert sim.requests[0].query == {"i": "5"} and sim.requests[-1].json is None


async def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        SimulatorSettings.model_validate({"unknown": 1})
    with pytest.raises(ValueError):
        SimulatorSettings(fault_rate=2)
    assert SimulatorSettings(fault="stop-after:2").fault == "stop-after:2"


async def test_echo_fault_quotes_the_credentials_it_was_sent(sim: Simulator) -> None:
    headers = {"Authorization": "Bearer sk-echo-me-123456", "x-goog-api-key": "AIza-echo-me",
               "x-sim-fault": "echo:401"}  # fmt: skip
    body = {"model": "m", "messages": HELLO}
    status, payload, _ = await raw("POST", sim.url + "/v1/chat/completions?key=k1", body, headers)
    assert status == 401
    message = json.loads(payload)["error"]["message"]
    assert "Authorization: Bearer sk-echo-me-123456" in message
    assert "x-goog-api-key: AIza-echo-me" in message and "query: key=k1" in message
    streamed = {**headers, "x-sim-fault": "echo-after:1"}
    status, payload, _ = await raw(
        "POST", sim.url + "/v1/chat/completions", {**body, "stream": True}, streamed
    )
    assert status == 200
    last = payload.decode().strip().split("\n\n")[-1]
    assert "Bearer sk-echo-me-123456" in json.loads(last.removeprefix("data: "))["error"]["message"]
