"""A Responses upstream's answer that a stage changed (as an output guardrail redacts), through
the real ``openai`` SDK against a gateway on a real port and the simulator's Responses API: the
client gets the upstream's own ``Response`` with the stage's text, its built-in tool items
(``web_search_call``) and ids kept. The gateway runs in this process (``create_app``) so a
stage can be added to its pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.integration.in_process import gateway_in_process
from tests.integration.test_responses_upstream import question, received
from tests.support import CLIENT_KEY
from tollway.core.context import RequestContext
from tollway.core.pipeline import Stage
from tollway.core.types import ChatChunk, ChatResponse, TextPart

SEARCH: Any = [{"type": "web_search"}]


class Redaction(Stage):
    """Replaces the word 'Simulated' in every answer's text, as an output guardrail would."""

    name = "redaction"

    def on_response(self, ctx: RequestContext, response: ChatResponse) -> None:
        for choice in response.choices:
            content = choice.message.content
            if isinstance(content, list):
                choice.message.content = [
                    TextPart(p.text.replace("Simulated", "[redacted]"))
                    if isinstance(p, TextPart)
                    else p
                    for p in content
                ]
        response.raw = None  # changed: the client must not be sent the upstream's bytes

    def on_chunk(self, ctx: RequestContext, chunk: ChatChunk) -> ChatChunk:
        for choice in chunk.choices:
            if choice.content and "Simulated" in choice.content:
                choice.content = choice.content.replace("Simulated", "[redacted]")
                chunk.raw = None  # changed: written from the chunk, not sent as it came
        return chunk


@pytest.fixture
async def client(tmp_path: Path, simulator_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    native = {
        "provider": "openai", "model": "gpt-4o", "api_base": f"{simulator_url}/v1",
        "api_key": "env:TEST_UPSTREAM_KEY", "responses_api": True,
    }  # fmt: skip
    config = {
        "models": [{"name": "native", "deployments": [native]}],
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}"},
        "server": {"reload_interval": None},
    }
    async with gateway_in_process(config, Redaction()) as (base, _):
        url = base + "/v1"
        async with openai.AsyncOpenAI(base_url=url, api_key=CLIENT_KEY, max_retries=0) as c:
            yield c


async def test_a_changed_answer_keeps_the_upstreams_built_in_tool_items(
    client: openai.AsyncOpenAI, simulator_url: str
) -> None:
    asked = question("search and redact")
    response = await client.responses.create(
        model="native", input=asked, tools=SEARCH, metadata={"ticket": "7"}
    )
    search, message = response.output
    assert search.type == "web_search_call" and search.status == "completed"
    assert search.id.startswith("ws_")  # the upstream's item, not one made up
    assert message.type == "message"
    assert response.output_text.startswith(f"[redacted] reply to: {asked}")
    assert "Simulated" not in response.model_dump_json()
    # The upstream's Response otherwise: its id, usage (the search's tokens in it), metadata.
    assert response.id.startswith("resp_") and response.metadata == {"ticket": "7"}
    assert response.usage is not None and response.usage.input_tokens > 200
    (call,) = received(simulator_url, asked)
    assert call["json"]["tools"] == SEARCH


async def test_a_changed_answer_keeps_its_function_calls(client: openai.AsyncOpenAI) -> None:
    tool: Any = {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": False,
    }
    response = await client.responses.create(
        model="native", input=question("weather in Oslo?"), tools=[tool]
    )
    (call,) = [item for item in response.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id and call.arguments


async def test_a_changed_streams_closing_events_say_what_its_deltas_said(
    client: openai.AsyncOpenAI,
) -> None:
    # The client's SDK builds its answer from the deltas; a client reading the closing events
    # (output_text.done, content_part.done, output_item.done, response.completed) must read
    # the same text, not the upstream's.
    asked = question("stream and redact")
    stream = await client.responses.create(model="native", input=asked, stream=True)
    events = [event async for event in stream]
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas.startswith(f"[redacted] reply to: {asked}")
    (text_done,) = [e for e in events if e.type == "response.output_text.done"]
    assert text_done.text == deltas
    (part_done,) = [e for e in events if e.type == "response.content_part.done"]
    assert part_done.part.type == "output_text" and part_done.part.text == deltas
    (item_done,) = [e for e in events if e.type == "response.output_item.done"]
    assert item_done.item.type == "message"
    assert [c.text for c in item_done.item.content if c.type == "output_text"] == [deltas]
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == deltas
    assert "Simulated" not in completed.response.model_dump_json()
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
