"""The openai SDK against a mistral deployment on the simulator, as strict as Mistral's API.

The simulator's ``/mistral/v1`` refuses every field Mistral's schema lacks with Mistral's 422
(``extra_forbidden``), so each test passes only if the gateway sent what Mistral takes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.integration.test_openai_sdk import WEATHER_TOOL
from tests.support import CLIENT_KEY

MODEL = "test-mistral"


@pytest.fixture(scope="module")
def client(gateway_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway_url + "/v1", api_key=CLIENT_KEY, max_retries=0) as c:
        yield c


def sent(simulator_url: str, marker: str) -> dict[str, Any] | None:
    """The JSON body of the last upstream request that mentions ``marker``, if any."""
    for request in reversed(httpx.get(simulator_url + "/_sim/requests").json()):
        if marker in str(request["json"]):
            return dict(request["json"])
    return None


def test_max_completion_tokens_reaches_mistral_as_max_tokens(
    client: openai.OpenAI, simulator_url: str
) -> None:
    marker = uuid.uuid4().hex
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"cap {marker}"}],
        max_completion_tokens=3,
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    body = sent(simulator_url, marker)
    assert body is not None and body["max_tokens"] == 3 and "max_completion_tokens" not in body


def test_seed_is_renamed_and_storage_and_monitoring_fields_left_out(
    client: openai.OpenAI, simulator_url: str
) -> None:
    marker = uuid.uuid4().hex
    client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"fields {marker}"}],
        seed=7,
        user="alice",
        store=True,
        service_tier="auto",
        metadata={"team": "a"},
        extra_body={"safety_identifier": "hashed-alice", "prompt_cache_key": "k"},
    )
    body = sent(simulator_url, marker)
    assert body is not None
    assert body["random_seed"] == 7 and "seed" not in body
    assert body["metadata"] == {"team": "a"} and body["prompt_cache_key"] == "k"
    assert not {"user", "store", "service_tier", "safety_identifier"} & set(body)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"logprobs": True, "top_logprobs": 2}, "logprobs"),
        ({"extra_body": {"verbosity": "low"}}, "verbosity"),
        (
            {"extra_body": {"web_search_options": {"search_context_size": "low"}}},
            "web_search_options",
        ),
        # An empty object is how OpenAI's search models are asked to search: not a default.
        ({"web_search_options": {}}, "web_search_options"),
        ({"modalities": ["text", "audio"]}, "modalities"),
    ],
)
def test_fields_mistral_lacks_are_400s_naming_them_before_any_call(
    client: openai.OpenAI, simulator_url: str, extra: dict[str, Any], param: str
) -> None:
    marker = uuid.uuid4().hex
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": marker}], **extra
        )
    assert caught.value.status_code == 400 and caught.value.param == param
    assert "mistral" in caught.value.message
    assert sent(simulator_url, marker) is None


def test_fields_at_their_defaults_ask_nothing_and_are_left_out(
    client: openai.OpenAI, simulator_url: str
) -> None:
    marker = uuid.uuid4().hex
    client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"defaults {marker}"}],
        logprobs=False,
        logit_bias={},
        modalities=["text"],
    )
    body = sent(simulator_url, marker)
    assert body is not None and not {"logprobs", "logit_bias", "modalities"} & set(body)


def test_developer_messages_reach_mistral_as_system_messages(
    client: openai.OpenAI, simulator_url: str
) -> None:
    marker = uuid.uuid4().hex
    client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "developer", "content": "answer briefly"},
            {"role": "user", "content": f"hello {marker}", "name": "alice"},
        ],
    )
    body = sent(simulator_url, marker)
    assert body is not None
    assert body["messages"] == [
        {"role": "system", "content": "answer briefly"},
        {"role": "user", "content": f"hello {marker}"},
    ]


def test_an_echoed_answer_goes_back_to_mistral_without_its_empty_openai_fields(
    client: openai.OpenAI, simulator_url: str
) -> None:
    # The SDK's message object carries refusal, annotations, audio and function_call, all
    # empty; Mistral's assistant message has none of them.
    marker = uuid.uuid4().hex
    messages: list[Any] = [{"role": "user", "content": f"weather in Paris? {marker}"}]
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])  # type: ignore[list-item]
    echoed = first.choices[0].message.model_dump()
    assert {"refusal", "annotations", "audio", "function_call"} <= set(echoed)
    call = (first.choices[0].message.tool_calls or [])[0]
    messages += [echoed, {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    second = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])  # type: ignore[list-item]
    assert "sunny" in (second.choices[0].message.content or "")
    body = sent(simulator_url, "sunny")
    assert body is not None and set(body["messages"][1]) == {"role", "content", "tool_calls"}


def test_an_assistant_refusal_is_a_400_naming_the_message_field(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "user", "content": "something"},
                {"role": "assistant", "content": None, "refusal": "I can't help with that."},  # type: ignore[misc]
                {"role": "user", "content": "please"},
            ],
        )
    assert caught.value.param == "messages[1].refusal"


def test_a_stream_from_mistral_ends_with_the_usage_it_sends_unasked(
    client: openai.OpenAI, simulator_url: str
) -> None:
    marker = uuid.uuid4().hex
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"stream {marker}"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    body = sent(simulator_url, marker)
    assert body is not None and "stream_options" not in body


# Magistral, Mistral's reasoning model: its content is a list of thinking and text chunks.
MAGISTRAL = "test-magistral"


def test_a_magistral_answer_is_text_and_reasoning_for_openai_clients(
    client: openai.OpenAI,
) -> None:
    completion = client.chat.completions.create(
        model=MAGISTRAL, messages=[{"role": "user", "content": "magistral plain"}]
    )
    message = completion.choices[0].message
    assert (message.content or "").startswith("Simulated reply to: magistral plain")
    reasoning = (message.model_extra or {})["reasoning_content"]
    assert reasoning.startswith("Simulated reasoning about: magistral plain")
    assert completion.usage is not None
    details = completion.usage.completion_tokens_details
    assert details is not None and details.reasoning_tokens == len(reasoning.split())


def test_a_streamed_magistral_answer_is_text_and_reasoning_deltas(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MAGISTRAL,
        messages=[{"role": "user", "content": "magistral stream"}],
        stream=True,
    )
    text: list[str] = []
    reasoning: list[str] = []
    for chunk in stream:
        for choice in chunk.choices:
            assert choice.delta.content is None or isinstance(choice.delta.content, str)
            text.append(choice.delta.content or "")
            reasoning.append((choice.delta.model_extra or {}).get("reasoning_content") or "")
    assert "".join(text).startswith("Simulated reply to: magistral stream")
    assert "".join(reasoning).startswith("Simulated reasoning about: magistral stream")


@pytest.mark.parametrize("stream", [False, True])
def test_magistral_reasoning_reaches_anthropic_clients_as_thinking(
    claude: anthropic.Anthropic, stream: bool
) -> None:
    ask: Any = {
        "model": MAGISTRAL,
        "max_tokens": 4096,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [{"role": "user", "content": f"magistral thinks, stream={stream}"}],
    }
    if stream:
        with claude.messages.stream(**ask) as events:
            message = events.get_final_message()
    else:
        message = claude.messages.create(**ask)
    assert [block.type for block in message.content] == ["thinking", "text"]
    thought, answer = message.content
    assert thought.type == "thinking" and answer.type == "text"
    marker = f"magistral thinks, stream={stream}"
    assert thought.thinking.startswith(f"Simulated reasoning about: {marker}")
    assert thought.signature == ""  # no one signed it
    assert answer.text.startswith(f"Simulated reply to: magistral thinks, stream={stream}")


def test_a_magistral_answer_reaches_responses_clients_as_a_reasoning_item(
    client: openai.OpenAI,
) -> None:
    response = client.responses.create(model=MAGISTRAL, input="magistral responses")
    kinds = [item.type for item in response.output]
    assert kinds == ["reasoning", "message"]
    assert response.output_text.startswith("Simulated reply to: magistral responses")
