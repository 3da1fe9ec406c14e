"""OpenAI clients' requests to an Anthropic deployment of a current Claude model
(``claude-sonnet-4-5`` on the simulator, which refuses what Claude refuses: ``temperature``
and ``top_p`` together from 4.1 on, stop sequences of nothing but whitespace, empty text
blocks)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.conftest import gateway_config
from tests.integration.in_process import gateway_in_process
from tests.integration.sdk import sent_upstream
from tests.support import CLIENT_KEY


@pytest.fixture(scope="module")
async def gpt(simulator_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    """An OpenAI client of a gateway whose ``claude`` group is Claude Sonnet 4.5."""
    config = gateway_config(simulator_url)
    deployment = {"provider": "anthropic", "model": "claude-sonnet-4-5",
                  "api_base": simulator_url, "api_key": "env:TEST_UPSTREAM_KEY"}  # fmt: skip
    config["models"].append({"name": "claude", "deployments": [deployment]})
    async with gateway_in_process(config) as (url, _):
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=CLIENT_KEY, max_retries=0)
        yield client
        await client.close()


async def test_a_top_p_of_one_beside_a_temperature_is_not_sent(
    gpt: openai.AsyncOpenAI, simulator_url: str
) -> None:
    # OpenAI's default top_p, which many clients send with every request, asks for nothing.
    completion = await gpt.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "sampling top_p one"}],
        temperature=0.7,
        top_p=1,
    )
    assert completion.choices[0].message.content
    body = sent_upstream(simulator_url, "sampling top_p one")
    assert body["temperature"] == 0.7 and "top_p" not in body
    response = await gpt.responses.create(
        model="claude", input="sampling responses top_p one", temperature=0.2, top_p=1.0
    )
    assert response.output_text
    body = sent_upstream(simulator_url, "sampling responses top_p one")
    assert body["temperature"] == 0.2 and "top_p" not in body


async def test_a_top_p_below_one_still_reaches_claude(
    gpt: openai.AsyncOpenAI, simulator_url: str
) -> None:
    await gpt.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "sampling top_p alone"}], top_p=0.9
    )
    assert sent_upstream(simulator_url, "sampling top_p alone")["top_p"] == 0.9
    # With a temperature too, the model's own 400 says why, in its words.
    with pytest.raises(openai.BadRequestError) as caught:
        await gpt.chat.completions.create(
            model="claude",
            messages=[{"role": "user", "content": "sampling both"}],
            temperature=0.5,
            top_p=0.9,
        )
    assert "cannot both be specified" in caught.value.message


@pytest.mark.parametrize(
    ("stop", "param"), [("\n", "stop"), (["END", " \n\t"], "stop[1]")]
)  # An empty one stops at nothing, as OpenAI takes it, and is not sent (test_empty_stop).
async def test_a_whitespace_stop_sequence_is_a_400_naming_stop(
    gpt: openai.AsyncOpenAI, stop: Any, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await gpt.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "sampling stop"}], stop=stop
        )
    error: Any = caught.value.body
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert "whitespace" in error["message"]


async def test_stop_sequences_with_text_reach_claude(
    gpt: openai.AsyncOpenAI, simulator_url: str
) -> None:
    await gpt.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "sampling stop kept"}],
        stop=["\nEND", "###"],
    )
    assert sent_upstream(simulator_url, "sampling stop kept")["stop_sequences"] == ["\nEND", "###"]


PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwAD"
    "hgGAWjR9awAAAABJRU5ErkJggg=="
)
CALL: Any = {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{}"}}
LOOK: Any = {"type": "function", "function": {"name": "look", "parameters": {}}}


async def test_empty_text_parts_beside_others_are_not_sent(
    gpt: openai.AsyncOpenAI, simulator_url: str
) -> None:
    # An image without a caption, a tool-call turn whose text is empty, a system prompt
    # with an empty part: each empty part asks for nothing, and Claude refuses empty blocks.
    messages: Any = [
        {"role": "system", "content": [{"type": "text", "text": ""},
                                       {"type": "text", "text": "empty parts system"}]},
        {"role": "user", "content": [{"type": "text", "text": ""},
                                     {"type": "image_url", "image_url": {"url": PIXEL}}]},
        {"role": "assistant", "content": [{"type": "text", "text": ""}], "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1",
         "content": [{"type": "text", "text": ""}, {"type": "text", "text": "a cat"}]},
    ]  # fmt: skip
    completion = await gpt.chat.completions.create(model="claude", messages=messages, tools=[LOOK])
    assert completion.choices[0].message.content
    body = sent_upstream(simulator_url, "empty parts system")
    assert body["system"] == [{"type": "text", "text": "empty parts system"}]
    user, assistant, results = body["messages"]
    assert [block["type"] for block in user["content"]] == ["image"]
    assert assistant["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "look", "input": {}}
    ]
    assert results["content"][0]["content"] == [{"type": "text", "text": "a cat"}]
