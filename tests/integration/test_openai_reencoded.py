"""Chat Completions answers and streams the gateway writes itself (a stage changed them, or
the upstream's events are not OpenAI's as sent) say what the upstream's did: log
probabilities, a tool's own function fields, every choice of ``n``. Through the real ``openai``
SDK against a gateway on a real port (in this process, so a stage can be added) and the
simulator."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState

from tests.integration.in_process import gateway_in_process
from tests.integration.test_responses_upstream import question, received
from tests.support import CLIENT_KEY
from tollway.core.context import RequestContext
from tollway.core.pipeline import Stage
from tollway.core.types import ChatChunk, ChatResponse


class Rewritten(Stage):
    """Marks every answer and chunk changed, as a stage that rewrites them does: the client is
    sent what the gateway writes from the canonical values, not the upstream's bytes."""

    name = "rewritten"

    def on_response(self, ctx: RequestContext, response: ChatResponse) -> None:
        response.raw = None

    def on_chunk(self, ctx: RequestContext, chunk: ChatChunk) -> ChatChunk:
        chunk.raw = None
        return chunk


class Remembering(Stage):
    """Answers a question it has answered before from memory, as a cache does: a stream is
    then the remembered complete answer replayed (``Pipeline.response_as_chunks``)."""

    name = "remembering"

    def __init__(self) -> None:
        self.answers: dict[str, ChatResponse] = {}

    def on_request(self, ctx: RequestContext) -> Awaitable[ChatResponse] | None:
        assert ctx.chat is not None
        answer = self.answers.get(ctx.chat.messages[-1].text())
        return None if answer is None else _ready(copy.deepcopy(answer))

    def on_response(self, ctx: RequestContext, response: ChatResponse) -> None:
        assert ctx.chat is not None
        self.answers[ctx.chat.messages[-1].text()] = copy.deepcopy(response)


async def _ready(answer: ChatResponse) -> ChatResponse:
    return answer


@asynccontextmanager
async def in_process(
    tmp_path: Path, simulator_url: str, stage: Stage
) -> AsyncIterator[openai.AsyncOpenAI]:
    """The ``openai`` SDK on a gateway in this process whose pipelines end with ``stage``."""
    key = "env:TEST_UPSTREAM_KEY"
    gpt = {"provider": "openai", "model": "gpt-4o", "api_base": f"{simulator_url}/v1"}
    mistral = {
        "provider": "mistral", "model": "mistral-small", "api_base": f"{simulator_url}/mistral/v1"
    }  # fmt: skip
    config = {
        "models": [
            {"name": "gpt", "deployments": [{**gpt, "api_key": key}]},
            {"name": "mistral", "deployments": [{**mistral, "api_key": key}]},
        ],
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}"},
        "server": {"reload_interval": None},
        "upstream": {"forward_headers": ["x-sim-*"]},
    }
    async with gateway_in_process(config, stage) as (base, _):
        url = base + "/v1"
        async with openai.AsyncOpenAI(base_url=url, api_key=CLIENT_KEY, max_retries=0) as c:
            yield c


@pytest.fixture
async def client(tmp_path: Path, simulator_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with in_process(tmp_path, simulator_url, Rewritten()) as rewriting:
        yield rewriting


@pytest.fixture
async def remembering(tmp_path: Path, simulator_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with in_process(tmp_path, simulator_url, Remembering()) as remembered:
        yield remembered


async def test_a_rewritten_stream_keeps_each_tokens_logprobs(client: openai.AsyncOpenAI) -> None:
    messages: Any = [{"role": "user", "content": "score these words"}]
    plain = await client.chat.completions.create(
        model="gpt", messages=messages, logprobs=True, top_logprobs=2
    )
    (choice,) = plain.choices
    assert choice.logprobs is not None and choice.logprobs.content  # re-encoded, kept
    stream = await client.chat.completions.create(
        model="gpt", messages=messages, logprobs=True, top_logprobs=2, stream=True
    )
    streamed: list[Any] = []
    async for chunk in stream:
        for piece in chunk.choices:
            if piece.delta.content:
                assert piece.logprobs is not None and piece.logprobs.content
                streamed.extend(piece.logprobs.content)
    assert [e.model_dump() for e in streamed] == [e.model_dump() for e in choice.logprobs.content]
    assert len(streamed[0].top_logprobs) == 2


EXAMPLES: Any = [{"city": "Oslo"}]


def weather_tool(**function: Any) -> Any:
    """A function tool with the function object's own fields ``function`` beside its schema."""
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}}
    return {
        "type": "function",
        "function": {"name": "get_weather", "parameters": parameters, **function},
    }


def test_a_tools_own_function_fields_reach_an_openai_deployment(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    asked = question("weather with examples")
    tool = weather_tool(description="Weather now", examples=EXAMPLES)
    answer = gpt.chat.completions.create(
        model="test-chat", messages=[{"role": "user", "content": asked}], tools=[tool]
    )
    assert answer.choices[0].message.tool_calls
    (call,) = received(simulator_url, asked)
    assert call["json"]["tools"] == [tool]


@pytest.mark.parametrize("model", ["test-claude", "test-gemini", "test-bedrock", "test-mistral"])
def test_a_tools_own_function_field_is_a_400_where_it_cannot_go(
    gpt: openai.OpenAI, model: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "weather?"}],
            tools=[weather_tool(examples=EXAMPLES)],
        )
    assert caught.value.param == "tools[0].function.examples"
    # One that asks for nothing crosses as absent.
    answer = gpt.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "weather?"}],
        tools=[weather_tool(examples=None)],
    )
    assert answer.choices


def flat_weather_tool(**fields: Any) -> Any:
    """A Responses function tool (flat) with its own fields ``fields`` beside its schema."""
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}}
    return {"type": "function", "name": "get_weather", "parameters": parameters, **fields}


def test_a_responses_tools_own_fields_reach_a_chat_completions_deployment(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    asked = question("responses weather with examples")
    tool = flat_weather_tool(description="Weather now", examples=EXAMPLES)
    answer = gpt.responses.create(model="test-chat", input=asked, tools=[tool])
    assert answer.output
    (call,) = received(simulator_url, asked)
    assert call["json"]["tools"] == [
        weather_tool(description="Weather now", examples=EXAMPLES),
    ]


@pytest.mark.parametrize("model", ["test-claude", "test-gemini", "test-bedrock", "test-mistral"])
def test_a_responses_tools_own_field_is_a_400_where_it_cannot_go(
    gpt: openai.OpenAI, model: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.responses.create(
            model=model, input="weather?", tools=[flat_weather_tool(examples=EXAMPLES)]
        )
    assert caught.value.param == "tools[0].examples"
    # One that asks for nothing crosses as absent.
    answer = gpt.responses.create(
        model=model, input="weather?", tools=[flat_weather_tool(examples=None)]
    )
    assert answer.output


def comparable(completion: Any) -> dict[str, Any]:
    """A completion as a dict, less the ids each answer makes up and what the SDK adds to a
    streamed one."""
    shown: dict[str, Any] = completion.model_dump()
    del shown["id"], shown["created"]
    for choice in shown["choices"]:
        message = choice["message"]
        message.pop("parsed", None)
        message.pop("annotations", None)
    return shown


# (model, request fields, simulator headers) of answers whose streams the stage rewrites.
REWRITTEN: dict[str, tuple[str, dict[str, Any], dict[str, str]]] = {
    "n=2": ("gpt", {"n": 2}, {}),
    "n=2 mistral": ("mistral", {"n": 2}, {}),
    "n=2 logprobs": ("gpt", {"n": 2, "logprobs": True, "top_logprobs": 1}, {}),
    "refusal": ("gpt", {}, {"x-sim-refusal": "I cannot help with that"}),
    "reasoning": ("gpt", {"n": 2}, {"x-sim-reasoning": "reasoning_content"}),
}


@pytest.mark.parametrize("case", list(REWRITTEN))
async def test_a_rewritten_stream_builds_the_plain_answer(
    client: openai.AsyncOpenAI, case: str
) -> None:
    model, fields, headers = REWRITTEN[case]
    messages: Any = [{"role": "user", "content": f"rewritten {case}"}]
    plain = await client.chat.completions.create(
        model=model, messages=messages, extra_headers=headers, **fields
    )
    state = ChatCompletionStreamState()
    stream = await client.chat.completions.create(
        model=model,
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=headers,
        **fields,
    )
    async for chunk in stream:
        state.handle_chunk(chunk)
        if model == "gpt":  # the chunk's own fields, as the simulator sent them
            assert chunk.system_fingerprint == "fp_tollway_sim"
            assert chunk.service_tier == "default"
    final = state.current_completion_snapshot
    assert len(final.choices) == fields.get("n", 1)
    assert comparable(final) == comparable(plain)


@pytest.mark.parametrize("case", list(REWRITTEN))
async def test_a_remembered_answer_streamed_builds_the_plain_answer(
    remembering: openai.AsyncOpenAI, simulator_url: str, case: str
) -> None:
    # A stage's early answer (a cache's) replayed as a stream keeps what the answer said
    # beside its text: logprobs, a refusal, reasoning, the answer's own fields.
    model, fields, headers = REWRITTEN[case]
    asked = question(f"remembered {case}")
    messages: Any = [{"role": "user", "content": asked}]
    plain = await remembering.chat.completions.create(
        model=model, messages=messages, extra_headers=headers, **fields
    )
    state = ChatCompletionStreamState()
    stream = await remembering.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    async for chunk in stream:
        state.handle_chunk(chunk)
        if model == "gpt":
            assert chunk.system_fingerprint == "fp_tollway_sim"
    assert len(received(simulator_url, asked)) == 1  # the stream was the stage's
    final = state.current_completion_snapshot
    assert comparable(final) == comparable(plain)


@pytest.mark.parametrize("model", ["test-magistral", "test-mistral", "test-gemini"])
def test_a_stream_of_n_choices_builds_the_plain_answer(gpt: openai.OpenAI, model: str) -> None:
    messages: Any = [{"role": "user", "content": "two answers please"}]
    plain = gpt.chat.completions.create(model=model, messages=messages, n=2)
    state = ChatCompletionStreamState()
    for chunk in gpt.chat.completions.create(
        model=model, messages=messages, n=2, stream=True, stream_options={"include_usage": True}
    ):
        state.handle_chunk(chunk)
    final = state.current_completion_snapshot
    assert [c.index for c in final.choices] == [0, 1]
    assert comparable(final) == comparable(plain)


def test_a_tool_call_deltas_own_fields_survive_placing_its_index(gpt: openai.OpenAI) -> None:
    # Gemini's OpenAI-compatible API streams calls without their index and signs each in
    # extra_content; the signature must go back with the call in the next turn.
    tools: Any = [weather_tool(), {**weather_tool(), "function": {"name": "get_time"}}]
    messages: Any = [{"role": "user", "content": "both tools in parallel please"}]
    signed: dict[int, Any] = {}
    for chunk in gpt.chat.completions.create(
        model="test-chat",
        messages=messages,
        tools=tools,
        stream=True,
        extra_headers={"x-sim-tool-calls": "unindexed"},
    ):
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or ():
                if call.id is not None:
                    signed[call.index] = (call.model_extra or {}).get("extra_content")
    assert signed == {
        0: {"google": {"thought_signature": signed[0]["google"]["thought_signature"]}},
        1: {"google": {"thought_signature": signed[1]["google"]["thought_signature"]}},
    }
    assert signed[0]["google"]["thought_signature"].startswith("sig-call_")
