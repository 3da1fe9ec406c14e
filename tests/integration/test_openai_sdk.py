"""The real ``openai`` SDK, sync and async, against a gateway process in front of the simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.sdk import sent_upstream
from tests.support import CLIENT_KEY

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}},
            "required": ["zone"],
        },
    },
}


def recorded_request(simulator_url: str, content: str) -> dict[str, Any]:
    """The last request the simulator received whose first message has this content."""
    recorded = httpx.get(simulator_url + "/_sim/requests").json()
    for request in reversed(recorded):
        messages = (request["json"] or {}).get("messages") or [{}]
        if messages[0].get("content") == content:
            return dict(request)
    raise AssertionError(f"the simulator received no request with content {content!r}")


@pytest.fixture(scope="module")
def client(gateway_url: str) -> Iterator[openai.OpenAI]:
    """A sync SDK client whose only change is the base URL."""
    with openai.OpenAI(base_url=gateway_url + "/v1", api_key=CLIENT_KEY, max_retries=0) as c:
        yield c


@pytest.fixture
async def async_client(gateway_url: str) -> openai.AsyncOpenAI:
    """An async SDK client whose only change is the base URL."""
    return openai.AsyncOpenAI(base_url=gateway_url + "/v1", api_key=CLIENT_KEY, max_retries=0)


def test_chat_completion_returns_content_and_consistent_usage(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="test-chat", messages=[{"role": "user", "content": "hello there gateway"}]
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "sim-chat"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.role == "assistant"
    assert "hello there gateway" in (completion.choices[0].message.content or "")
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert raw.headers["x-tollway-provider"] == "openai"
    assert raw.headers["x-tollway-model"] == "sim-chat"
    assert raw.headers["x-tollway-deployment"] == "test-chat#0"
    assert raw.headers["x-request-id"].startswith("req_")


def test_client_request_id_is_honoured(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="test-chat",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-request-id": "my-trace-42"},
    )
    assert raw.headers["x-request-id"] == "my-trace-42"


def test_max_tokens_stop_n_and_seed(client: openai.OpenAI) -> None:
    capped = client.chat.completions.create(
        model="test-chat", messages=[{"role": "user", "content": "long"}], max_tokens=3
    )
    assert capped.choices[0].finish_reason == "length"
    assert capped.usage is not None and capped.usage.completion_tokens == 3
    several = client.chat.completions.create(
        model="test-chat",
        messages=[{"role": "user", "content": "two please"}],
        n=2,
        seed=7,
        user="alice",
    )
    assert [choice.index for choice in several.choices] == [0, 1]


def test_streaming_forwards_chunks_and_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="test-chat",
        messages=[{"role": "user", "content": "stream to me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "stream to me" in text
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(
        [c for c in chunks if c.choices and c.choices[0].delta.content]
    )


def test_a_stream_asking_for_usage_gets_the_gateways_count_when_the_upstream_gave_none(
    client: openai.OpenAI,
) -> None:
    # Some OpenAI-compatible servers ignore stream_options; a client that asked for usage
    # still gets its usage chunk (the gateway's own count, as the Responses and Anthropic
    # dialects state it), and one that did not ask gets none.
    silent = {"x-sim-usage": "omit"}
    messages: Any = [{"role": "user", "content": "count my stream"}]
    chunks = list(
        client.chat.completions.create(
            model="test-chat",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=silent,
        )
    )
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.prompt_tokens > 0 and last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert last.id == chunks[0].id and last.model == chunks[0].model
    assert [c for c in chunks if c.usage is not None] == [last]
    unasked = list(
        client.chat.completions.create(
            model="test-chat", messages=messages, stream=True, extra_headers=silent
        )
    )
    assert all(chunk.choices and chunk.usage is None for chunk in unasked)


def test_streaming_without_include_usage_sends_no_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="test-chat", messages=[{"role": "user", "content": "no usage"}], stream=True
        )
    )
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)


def test_streams_to_mistral_never_send_stream_options(
    client: openai.OpenAI, simulator_url: str
) -> None:
    # Mistral refuses the field (422 extra_forbidden) and ends every stream with its usage.
    stream = client.chat.completions.create(
        model="test-mistral",
        messages=[{"role": "user", "content": "stream from mistral"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "stream from mistral" in text
    body = recorded_request(simulator_url, "stream from mistral")["json"]
    assert body["stream"] is True and "stream_options" not in body
    # Every other OpenAI-format deployment is asked for usage, whatever the client asked.
    list(
        client.chat.completions.create(
            model="test-chat", messages=[{"role": "user", "content": "ask usage"}], stream=True
        )
    )
    asked = recorded_request(simulator_url, "ask usage")["json"]
    assert asked["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("model", ["test-chat", "test-azure", "test-mistral"])
def test_include_obfuscation_is_not_sent_where_streams_are_never_padded(
    client: openai.OpenAI, simulator_url: str, model: str
) -> None:
    # Only OpenAI's own API pads stream events (unit: test_openai_flavors); a compatible
    # server, Azure or Mistral has nothing to turn off, and a strict one would refuse it.
    marker = f"no padding {model}"
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": marker}],
        stream=True,
        stream_options={"include_usage": True, "include_obfuscation": False},
    )
    chunks = list(stream)
    assert marker in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None
    options = recorded_request(simulator_url, marker)["json"].get("stream_options", {})
    assert "include_obfuscation" not in options


def test_a_clients_own_stream_options_reach_a_server_that_takes_them(
    client: openai.OpenAI, simulator_url: str
) -> None:
    # vLLM's continuous_usage_stats (usage in every chunk) is no option the gateway reads.
    marker = "continuous usage please"
    stream = client.chat.completions.create(
        model="test-chat",
        messages=[{"role": "user", "content": marker}],
        stream=True,
        extra_body={"stream_options": {"continuous_usage_stats": True}},
    )
    assert marker in "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    options = recorded_request(simulator_url, marker)["json"]["stream_options"]
    assert options == {"continuous_usage_stats": True, "include_usage": True}


@pytest.mark.parametrize(
    "model", ["test-mistral", "test-azure-2024-06", "test-claude", "test-gemini", "test-bedrock"]
)
def test_a_clients_own_stream_option_is_a_400_where_it_cannot_go(
    client: openai.OpenAI, simulator_url: str, model: str
) -> None:
    # Mistral and Azure's older api-versions refuse stream_options; other families have none.
    messages: Any = [{"role": "user", "content": f"continuous usage {model}"}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True, "continuous_usage_stats": True},  # type: ignore[typeddict-unknown-key]
        )
    assert caught.value.param == "stream_options.continuous_usage_stats"
    assert "continuous_usage_stats" in caught.value.message
    # One that asks for nothing is left out.
    stream = client.chat.completions.create(
        model=model,
        messages=messages,
        stream=True,
        stream_options={"include_usage": True, "continuous_usage_stats": False},  # type: ignore[typeddict-unknown-key]
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None
    if model in ("test-mistral", "test-azure-2024-06"):
        assert (
            "stream_options" not in recorded_request(simulator_url, messages[0]["content"])["json"]
        )


def test_tool_call_round_trip(client: openai.OpenAI) -> None:
    messages: list[dict[str, object]] = [{"role": "user", "content": "weather in Paris?"}]
    first = client.chat.completions.create(
        model="test-chat",
        messages=messages,
        tools=[WEATHER_TOOL],
        tool_choice="auto",  # type: ignore[list-item]
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    arguments = json.loads(call.function.arguments)  # type: ignore[union-attr]
    assert set(arguments) >= {"city", "unit"}
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"})
    second = client.chat.completions.create(
        model="test-chat",
        messages=messages,
        tools=[WEATHER_TOOL],  # type: ignore[arg-type]
    )
    assert second.choices[0].finish_reason == "stop"
    assert "sunny, 21C" in (second.choices[0].message.content or "")


def test_streamed_parallel_tool_calls_assemble(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model="test-chat",
        messages=[{"role": "user", "content": "call both in parallel"}],
        tools=[WEATHER_TOOL, TIME_TOOL],  # type: ignore[list-item]
    ) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert all(json.loads(c.function.arguments) for c in calls)  # type: ignore[union-attr]
    assert final.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("model", ["test-claude", "test-gemini", "test-bedrock"])
def test_an_answer_that_reasoned_then_only_called_tools_has_no_content(
    client: openai.OpenAI, model: str
) -> None:
    """OpenAI's answer that only calls tools has ``content: null``; so does one whose model
    reasoned first (Claude's thinking, Gemini's thoughts), as its stream, assembled by the
    SDK's helper, says too."""
    request: Any = {
        "model": model,
        "messages": [{"role": "user", "content": "reason, then call a tool"}],
        "tools": [WEATHER_TOOL],
        "reasoning_effort": "low",
    }
    plain = client.chat.completions.create(**request).choices[0].message
    with client.chat.completions.stream(**request) as stream:
        streamed = stream.get_final_completion().choices[0].message
    assert plain.tool_calls and streamed.tool_calls
    assert plain.content is None and streamed.content is None


def test_json_response_format(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="test-chat",
        messages=[{"role": "user", "content": "json please"}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


def test_unknown_fields_reach_the_upstream(client: openai.OpenAI, simulator_url: str) -> None:
    client.chat.completions.create(
        model="test-chat",
        messages=[{"role": "user", "content": "extra fields"}],
        extra_body={"frobnicate": {"level": 3}},
        presence_penalty=0.5,
        extra_headers={"x-request-id": "extra-fields-check"},
    )
    body = recorded_request(simulator_url, "extra fields")["json"]
    assert body["frobnicate"] == {"level": 3}
    assert body["presence_penalty"] == 0.5
    assert body["model"] == "sim-chat"


def test_a_plain_request_reaches_an_openai_deployment_as_the_client_wrote_it(
    gateway_url: str, simulator_url: str
) -> None:
    # A plain body (text messages, fields of their usual types) goes upstream as it came,
    # with the deployment's model; one the gateway normalises goes as the canonical request
    # says it. Either way the upstream reads what the client asked.
    plain = {
        "model": "test-chat",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "plain body check"},
        ],
        "max_tokens": 9,
        "temperature": 0.5,
        "metadata": {"team": "a", "nested": [1, None, {"x": True}]},
        "service_tier": None,
    }
    normalised = {
        **plain,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "normal check"}]}],
        "stop": "END",
        "temperature": 1,
    }
    for body, marker in ((plain, "plain body check"), (normalised, "normal check")):
        answer = httpx.post(
            gateway_url + "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        sent = sent_upstream(simulator_url, marker)
        assert sent["model"] == "sim-chat"
        assert sent["metadata"] == plain["metadata"]
        assert (sent["max_tokens"], sent["temperature"]) == (9, body["temperature"])
    assert sent_upstream(simulator_url, "plain body check") == {**plain, "model": "sim-chat"}
    assert sent_upstream(simulator_url, "normal check")["stop"] == ["END"]


def test_custom_tools_and_allowed_tools_reach_openai_deployments_unchanged(
    client: openai.OpenAI, simulator_url: str
) -> None:
    custom = {"type": "custom", "custom": {"name": "sql", "description": "Run SQL"}}
    allowed = {
        "type": "allowed_tools",
        "allowed_tools": {"mode": "auto", "tools": [{"type": "custom", "custom": {"name": "sql"}}]},
    }
    history: list[Any] = [
        {"role": "user", "content": "custom tools"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "call_1", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "1"},
    ]
    answer = client.chat.completions.create(
        model="test-chat", messages=history, tools=[custom, WEATHER_TOOL], tool_choice=allowed
    )
    assert answer.choices[0].message.content
    body = recorded_request(simulator_url, "custom tools")["json"]
    assert body["tools"] == [custom, WEATHER_TOOL]
    assert body["tool_choice"] == allowed
    assert body["messages"][1]["tool_calls"] == history[1]["tool_calls"]
    # A named custom tool as the choice, with function tools only, is OpenAI's too.
    named = {"type": "custom", "custom": {"name": "sql"}}
    client.chat.completions.create(
        model="test-chat", messages=history[:1], tools=[WEATHER_TOOL], tool_choice=named
    )
    assert recorded_request(simulator_url, "custom tools")["json"]["tool_choice"] == named
    # Another family cannot take them: a 400 naming what it cannot, never a silent drop.
    refused = [
        ({"tools": [custom]}, "tools"),
        ({"tools": [WEATHER_TOOL], "tool_choice": named}, "tool_choice"),
        ({"messages": history}, "messages[1].tool_calls"),  # the message that holds them
    ]
    for fields, param in refused:
        request: dict[str, Any] = {"model": "test-claude", "messages": history[:1], **fields}
        with pytest.raises(openai.BadRequestError) as refusal:
            client.chat.completions.create(**request)
        assert refusal.value.param == param, refusal.value.message


def test_client_authorization_is_not_forwarded(client: openai.OpenAI, simulator_url: str) -> None:
    from tests.conftest import UPSTREAM_KEY

    client.chat.completions.create(
        model="test-chat", messages=[{"role": "user", "content": "whose key"}]
    )
    last = recorded_request(simulator_url, "whose key")
    headers = {k.lower(): v for k, v in last["headers"].items()}
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert CLIENT_KEY not in json.dumps(last)


def test_embeddings_float_and_base64(client: openai.OpenAI) -> None:
    default = client.embeddings.create(model="test-embed", input=["one", "two"])
    assert [item.index for item in default.data] == [0, 1]
    assert len(default.data[0].embedding) == 1536
    assert default.usage.prompt_tokens > 0
    floats = client.embeddings.create(
        model="test-embed", input="one", encoding_format="float", dimensions=64
    )
    vector = floats.data[0].embedding
    assert len(vector) == 64
    assert sum(x * x for x in vector) == pytest.approx(1.0, rel=1e-3)
    again = client.embeddings.create(
        model="test-embed", input="one", encoding_format="float", dimensions=64
    )
    assert again.data[0].embedding == vector


def test_models_lists_configured_names(client: openai.OpenAI) -> None:
    names = {model.id for model in client.models.list()}
    assert {"test-chat", "test-embed", "test-azure"} <= names
    assert client.models.retrieve("test-chat").id == "test-chat"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    # Named like every other answer, the client's own id honoured.
    listed = client.models.with_raw_response.list(extra_headers={"x-request-id": "req-models"})
    assert listed.headers["x-request-id"] == "req-models"
    one = client.models.with_raw_response.retrieve("test-chat")
    assert one.headers["x-request-id"].startswith("req_")


def test_a_model_named_with_a_slash_is_found_however_the_client_writes_its_path(
    client: openai.OpenAI, gateway_url: str
) -> None:
    # This SDK percent-encodes the slash; older ones, curl and other clients send it as is.
    assert client.models.retrieve("vendor/test-chat").id == "vendor/test-chat"
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    plain = httpx.get(gateway_url + "/v1/models/vendor/test-chat", headers=headers)
    assert plain.status_code == 200, plain.text
    assert plain.json()["id"] == "vendor/test-chat"
    missing = httpx.get(gateway_url + "/v1/models/vendor/no-such-model", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"


def test_azure_deployment_is_served(client: openai.OpenAI, simulator_url: str) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="test-azure", messages=[{"role": "user", "content": "via azure"}]
    )
    assert raw.headers["x-tollway-provider"] == "azure_openai"
    last = recorded_request(simulator_url, "via azure")
    assert last["path"] == "/openai/deployments/my-chat/chat/completions"
    assert last["query"] == {"api-version": "2024-10-21"}
    headers = {k.lower() for k in last["headers"]}
    assert "api-key" in headers and "authorization" not in headers


def test_azure_v1_api_is_served(client: openai.OpenAI, simulator_url: str) -> None:
    """``api_version: v1``: Azure's ``/openai/v1/`` paths, the deployment named in the body;
    the deployment's credential is a Microsoft Entra ID token (``azure_ad_token``), sent as
    ``Authorization: Bearer`` where a key goes as ``api-key``."""
    reply = client.chat.completions.create(
        model="test-azure-v1", messages=[{"role": "user", "content": "via azure v1"}]
    )
    assert "via azure v1" in (reply.choices[0].message.content or "")
    last = recorded_request(simulator_url, "via azure v1")
    assert last["path"] == "/openai/v1/chat/completions"
    assert last["query"] == {}
    assert last["json"]["model"] == "my-chat-v1"
    headers = {k.lower(): v for k, v in last["headers"].items()}
    assert "api-key" not in headers
    assert headers["authorization"] == "Bearer " + UPSTREAM_KEY
    stream = client.chat.completions.create(
        model="test-azure-v1", messages=[{"role": "user", "content": "streamed v1"}], stream=True
    )
    assert "streamed v1" in "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_streams_from_an_azure_api_version_without_stream_options_are_counted_by_the_gateway(
    client: openai.OpenAI, gateway_url: str, simulator_url: str
) -> None:
    # Azure before api-version 2024-08-01 refuses stream_options ("Unrecognized request
    # argument supplied"), so its streams carry no usage: the gateway counts it.
    stream = client.chat.completions.create(
        model="test-azure-2024-06",
        messages=[{"role": "user", "content": "old azure stream"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert "old azure stream" in "".join(
        c.choices[0].delta.content or "" for c in stream if c.choices
    )
    sent = recorded_request(simulator_url, "old azure stream")
    assert sent["query"] == {"api-version": "2024-06-01"}
    assert sent["json"]["stream"] is True and "stream_options" not in sent["json"]
    claude = anthropic.Anthropic(base_url=gateway_url, api_key=CLIENT_KEY, max_retries=0)
    with claude.messages.stream(
        model="test-azure-2024-06",
        max_tokens=100,
        messages=[{"role": "user", "content": "count old azure"}],
    ) as events:
        final = events.get_final_message()
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    # From 2024-08-01 on, Azure is asked for the usage like any OpenAI-format upstream.
    list(
        client.chat.completions.create(
            model="test-azure", messages=[{"role": "user", "content": "new azure"}], stream=True
        )
    )
    asked = recorded_request(simulator_url, "new azure")["json"]
    assert asked["stream_options"] == {"include_usage": True}


def test_a_clients_max_completion_tokens_reaches_an_azure_api_version_without_it(
    client: openai.OpenAI, simulator_url: str
) -> None:
    # Azure before api-version 2024-09-01 knows only max_tokens and refuses the newer name
    # ("Unrecognized request argument supplied: max_completion_tokens"), which the openai
    # SDK's users now write: the limit is sent by the name the deployment knows.
    for stream in (False, True):
        content = f"old azure limit {stream}"
        answer = client.chat.completions.create(
            model="test-azure-2024-06",
            messages=[{"role": "user", "content": content}],
            max_completion_tokens=20,
            stream=stream,
        )
        if stream:
            list(answer)  # type: ignore[call-overload]
        sent = recorded_request(simulator_url, content)["json"]
        assert sent["max_tokens"] == 20 and "max_completion_tokens" not in sent
    # From 2024-09-01 on the client's name is kept.
    client.chat.completions.create(
        model="test-azure",
        messages=[{"role": "user", "content": "new azure limit"}],
        max_completion_tokens=20,
    )
    sent = recorded_request(simulator_url, "new azure limit")["json"]
    assert sent["max_completion_tokens"] == 20 and "max_tokens" not in sent


def test_fallback_to_second_deployment_when_first_is_unreachable(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="test-fallback", messages=[{"role": "user", "content": "fall back"}]
    )
    assert raw.headers["x-tollway-deployment"] == "live-secondary"
    assert raw.headers["x-tollway-attempts"] == "2"


def test_unknown_model_is_404_in_openai_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "model_not_found"
    assert "nope" in caught.value.message


def test_invalid_request_is_400_naming_the_field(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="test-chat", messages=[])
    assert caught.value.param == "messages"


def test_an_upstream_refusing_the_gateways_key_is_a_502_not_the_clients_auth_error(
    client: openai.OpenAI,
) -> None:
    # The provider refused the deployment's (wrong) key; the client's own key is fine.
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="test-badkey", messages=[{"role": "user", "content": "x"}]
        )
    assert not isinstance(caught.value, openai.AuthenticationError)
    assert caught.value.status_code == 502
    assert caught.value.type == "upstream_error"
    assert caught.value.code == "upstream_authentication_failed"
    assert "deployment 'test-badkey#0' (model group 'test-badkey')" in caught.value.message
    assert "refused the gateway's credential" in caught.value.message
    assert "sk-wrong-key-for-test-9876" not in caught.value.response.text


def test_an_upstream_403_is_a_502_naming_the_refused_credential(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="test-chat",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-sim-fault": "status:403"},
        )
    assert not isinstance(caught.value, openai.PermissionDeniedError)
    assert caught.value.status_code == 502
    assert (caught.value.type, caught.value.code) == (
        "upstream_error",
        "upstream_permission_denied",
    )
    assert "refused the gateway's credential" in caught.value.message


def test_upstream_rate_limit_passes_through_with_retry_after(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model="test-chat",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-sim-fault": "status:429", "x-sim-retry-after": "7"},
        )
    assert caught.value.response.headers["retry-after"] == "7"


def test_azure_status_codes_are_not_openai_error_codes(client: openai.OpenAI) -> None:
    """Azure's gateway says ``"code": "429"``; OpenAI clients read OpenAI's code for it."""
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model="test-azure",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-sim-fault": "status:429"},
        )
    assert caught.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(
            model="test-azure",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-sim-fault": "status:404"},
        )
    assert missing.value.code is None
    assert missing.value.type == "invalid_request_error"


@pytest.mark.parametrize("stream", [False, True])
def test_azure_content_filter_refusals_keep_what_was_filtered(
    client: openai.OpenAI, stream: bool
) -> None:
    """Azure refuses a prompt its content filters catch with a 400 ``content_filter`` whose
    ``innererror`` says which category and severity: a client that tells its user why (or
    logs it) reads that as Azure sends it."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="test-azure",
            messages=[{"role": "user", "content": "something violent"}],
            stream=stream,
            extra_headers={"x-sim-content-filter": "prompt"},
        )
    error = caught.value
    assert error.code == "content_filter" and error.param == "prompt"
    body = error.body
    assert isinstance(body, dict)
    inner = body["innererror"]
    assert inner["code"] == "ResponsibleAIPolicyViolation"
    assert inner["content_filter_result"]["violence"] == {"filtered": True, "severity": "high"}


def test_upstream_server_error_becomes_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="test-chat",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-sim-fault": "status:500"},
        )
    assert caught.value.status_code == 502


async def test_async_chat_stream_and_embeddings(async_client: openai.AsyncOpenAI) -> None:
    completion = await async_client.chat.completions.create(
        model="test-chat", messages=[{"role": "user", "content": "async hello"}]
    )
    assert "async hello" in (completion.choices[0].message.content or "")
    stream = await async_client.chat.completions.create(
        model="test-chat", messages=[{"role": "user", "content": "async stream"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert "async stream" in text
    embedding = await async_client.embeddings.create(model="test-embed", input="async")
    assert len(embedding.data[0].embedding) == 1536
    await async_client.close()


async def test_async_errors(async_client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await async_client.chat.completions.create(
            model="missing", messages=[{"role": "user", "content": "x"}]
        )
    await async_client.close()


def test_a_base_url_without_v1_serves_models_as_it_serves_chat(gateway_url: str) -> None:
    with openai.OpenAI(base_url=gateway_url, api_key=CLIENT_KEY, max_retries=0) as bare:
        answer = bare.chat.completions.create(
            model="test-chat", messages=[{"role": "user", "content": "no v1"}]
        )
        assert answer.choices[0].message.content
        assert "test-chat" in {model.id for model in bare.models.list()}
        assert bare.models.retrieve("vendor/test-chat").id == "vendor/test-chat"
