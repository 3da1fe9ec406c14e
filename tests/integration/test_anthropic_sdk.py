"""The real ``anthropic`` SDK against a gateway process, served by Anthropic and OpenAI upstreams.

Every Anthropic-SDK behaviour runs against ``test-claude`` (an Anthropic deployment on the
simulator) and ``test-chat`` (an OpenAI deployment); the reverse, the ``openai`` SDK against
``test-claude``, is at the end.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY, gateway_config
from tests.integration.sdk import OPEN_SCHEMA, user
from tests.support import CLIENT_KEY, running_gateway
from tollway.core.types import ChatRequest, Message
from tollway.pricing.tokens import TokenCounter
from tollway.simulator.bedrock_api import thinking_signature

BOTH = pytest.mark.parametrize("model", ["test-claude", "test-chat"])
PROVIDER = {"test-claude": "anthropic", "test-chat": "openai"}
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"],
    },
}
TIME_TOOL: dict[str, Any] = {
    "name": "get_time",
    "input_schema": {
        "type": "object",
        "properties": {"zone": {"type": "string"}},
        "required": ["zone"],
    },
}


def text_of(message: anthropic.types.Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def recorded_request(simulator_url: str, marker: str) -> dict[str, Any]:
    """The last request the simulator received with a message mentioning ``marker``."""
    recorded = httpx.get(simulator_url + "/_sim/requests").json()
    for request in reversed(recorded):
        for message in (request["json"] or {}).get("messages") or ():
            if marker in json.dumps(message.get("content")):
                return dict(request)
    raise AssertionError(f"the simulator received no request mentioning {marker!r}")


@pytest.fixture(scope="module")
def claude(gateway_url: str) -> Iterator[anthropic.Anthropic]:
    """A sync Anthropic SDK client whose only change is the base URL."""
    with anthropic.Anthropic(base_url=gateway_url, api_key=CLIENT_KEY, max_retries=0) as c:
        yield c


@pytest.fixture
async def async_claude(gateway_url: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """An async Anthropic SDK client whose only change is the base URL."""
    client = anthropic.AsyncAnthropic(base_url=gateway_url, api_key=CLIENT_KEY, max_retries=0)
    yield client
    await client.close()


@pytest.fixture(scope="module")
def gpt(gateway_url: str) -> Iterator[openai.OpenAI]:
    """A sync OpenAI SDK client, for Anthropic deployments served to OpenAI clients."""
    with openai.OpenAI(base_url=gateway_url + "/v1", api_key=CLIENT_KEY, max_retries=0) as c:
        yield c


@BOTH
def test_message_has_text_stop_reason_usage_and_routing_headers(
    claude: anthropic.Anthropic, model: str
) -> None:
    raw = claude.messages.with_raw_response.create(
        model=model, max_tokens=100, messages=user("hello there gateway")
    )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "sim-chat"
    assert "hello there gateway" in text_of(message)
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.usage.cache_read_input_tokens == 0
    assert raw.headers["x-tollway-provider"] == PROVIDER[model]
    assert raw.headers["request-id"] == raw.headers["x-request-id"]


def test_a_plain_request_reaches_an_anthropic_deployment_as_the_client_wrote_it(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    # A plain body (a string system, text turns, numbers of their usual types) goes upstream
    # as it came with the deployment's model, streamed or not; its fields are checked as any.
    body: dict[str, Any] = {
        "max_tokens": 50,
        "system": "be brief",
        "messages": [
            *user("plain anthropic body"),
            {"role": "assistant", "content": "noted"},
            *user("go on"),
        ],
    }
    more = {"temperature": 0.5, "service_tier": "auto"}
    claude.messages.create(model="test-claude", **body, extra_body=more)
    sent = recorded_request(simulator_url, "plain anthropic body")["json"]
    assert sent == {**body, **more, "model": "sim-chat"}
    with claude.messages.stream(model="test-claude", **body, extra_body=more) as stream:
        assert stream.get_final_message().stop_reason == "end_turn"
    streamed = recorded_request(simulator_url, "plain anthropic body")["json"]
    assert streamed == {**body, **more, "model": "sim-chat", "stream": True}
    too_warm = {**more, "temperature": 1.5}
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(model="test-claude", **body, extra_body=too_warm)
    assert refused.value.status_code == 400
    assert "temperature" in refused.value.message


@BOTH
def test_stream_helper_assembles_text_and_usage(claude: anthropic.Anthropic, model: str) -> None:
    plain = claude.messages.create(model=model, max_tokens=100, messages=user("stream me"))
    with claude.messages.stream(model=model, max_tokens=100, messages=user("stream me")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == text_of(final) == text_of(plain)
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == plain.usage.input_tokens
    assert final.usage.output_tokens == plain.usage.output_tokens


def test_usage_an_openai_upstream_left_out_is_the_gateways_own_count(
    claude: anthropic.Anthropic,
) -> None:
    # Some OpenAI-compatible servers send no usage; Anthropic's answers always state it.
    silent = {"x-sim-usage": "omit"}
    plain = claude.messages.create(
        model="test-chat", max_tokens=100, messages=user("count for me"), extra_headers=silent
    )
    assert plain.usage.input_tokens > 0 and plain.usage.output_tokens > 0
    with claude.messages.stream(
        model="test-chat", max_tokens=100, messages=user("count for me"), extra_headers=silent
    ) as stream:
        final = stream.get_final_message()
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0


@BOTH
def test_raw_stream_follows_anthropics_event_sequence(
    claude: anthropic.Anthropic, model: str
) -> None:
    events = list(
        claude.messages.create(model=model, max_tokens=100, messages=user("raw"), stream=True)
    )
    kinds = [event.type for event in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    delta = events[-2]
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == len(kinds) - 5
    assert (delta.usage.input_tokens or 0) > 0


@BOTH
def test_tool_use_round_trip(claude: anthropic.Anthropic, model: str) -> None:
    question = user("weather in Paris?")
    first = claude.messages.create(
        model=model, max_tokens=200, messages=question, tools=[WEATHER_TOOL]
    )
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather"
    assert isinstance(call.input, dict) and set(call.input) >= {"city", "unit"}
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21C"}
    second = claude.messages.create(
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
    assert "sunny, 21C" in text_of(second)


@pytest.mark.parametrize("model", ["test-claude", "test-chat", "test-gemini", "test-bedrock"])
def test_a_call_the_tool_choice_forced_ends_the_turn_in_tool_use(
    claude: anthropic.Anthropic, model: str
) -> None:
    # OpenAI ends a call that a named tool_choice forced with finish_reason "stop"; an
    # Anthropic client still reads tool_use, as Anthropic answers it, streamed or not.
    forced: Any = {"type": "tool", "name": "get_time"}
    asked: dict[str, Any] = {
        "model": model,
        "max_tokens": 200,
        "messages": user("what time is it?"),
        "tools": [WEATHER_TOOL, TIME_TOOL],
        "tool_choice": forced,
    }
    plain = claude.messages.create(**asked)
    with claude.messages.stream(**asked) as stream:
        final = stream.get_final_message()
    for message in (plain, final):
        assert [block.type for block in message.content] == ["tool_use"]
        assert message.stop_reason == "tool_use"


@BOTH
def test_streamed_parallel_tool_calls_assemble(claude: anthropic.Anthropic, model: str) -> None:
    with claude.messages.stream(
        model=model,
        max_tokens=200,
        messages=user("call both in parallel"),
        tools=[WEATHER_TOOL, TIME_TOOL],
    ) as stream:
        final = stream.get_final_message()
    calls = [block for block in final.content if block.type == "tool_use"]
    assert [call.name for call in calls] == ["get_weather", "get_time"]
    assert all(isinstance(call.input, dict) and call.input for call in calls)
    assert final.stop_reason == "tool_use"


def next_call_id(call_id: str) -> str:
    """The id the simulator gives the call after ``call_id`` (its ids count up in hex)."""
    return f"{call_id[:-12]}{int(call_id[-12:], 16) + 1:012x}"


def assert_weather_then_time(calls: list[Any]) -> None:
    """The two parallel calls the simulator answers with, in order, whole and with their ids."""
    assert [(call.name, call.input) for call in calls] == [
        ("get_weather", {"city": "sample", "unit": "c"}),
        ("get_time", {"zone": "sample"}),
    ]
    assert calls[0].id.startswith("call_") and calls[1].id == next_call_id(calls[0].id)


INTERLEAVED = {"x-sim-tool-calls": "interleave"}
"""An OpenAI-format upstream that streams parallel tool calls' fragments in turn."""


def test_interleaved_parallel_tool_calls_reach_the_stream_helper_whole(
    claude: anthropic.Anthropic,
) -> None:
    with claude.messages.stream(
        model="test-chat",
        max_tokens=200,
        messages=user("call both in parallel"),
        tools=[WEATHER_TOOL, TIME_TOOL],
        extra_headers=INTERLEAVED,
    ) as stream:
        final = stream.get_final_message()
    assert_weather_then_time([block for block in final.content if block.type == "tool_use"])
    assert final.stop_reason == "tool_use"


def test_interleaved_parallel_tool_calls_come_as_one_block_after_another(
    claude: anthropic.Anthropic,
) -> None:
    events = list(
        claude.messages.create(
            model="test-chat",
            max_tokens=200,
            messages=user("call both in parallel"),
            tools=[WEATHER_TOOL, TIME_TOOL],
            extra_headers=INTERLEAVED,
            stream=True,
        )
    )
    blocks: list[Any] = []
    arguments: list[str] = []
    open_index: int | None = None
    for event in events:  # start, deltas, stop of one block before the next starts
        if event.type == "content_block_start":
            assert open_index is None and event.index == len(blocks)
            open_index = event.index
            blocks.append(event.content_block)
            arguments.append("")
        elif event.type == "content_block_delta":
            assert event.index == open_index and event.delta.type == "input_json_delta"
            arguments[event.index] += event.delta.partial_json
        elif event.type == "content_block_stop":
            assert event.index == open_index
            open_index = None
    assert open_index is None and [event.type for event in events][-2:] == [
        "message_delta",
        "message_stop",
    ]
    for block, text in zip(blocks, arguments, strict=True):
        block.input = json.loads(text)
    assert_weather_then_time(blocks)


@BOTH
def test_system_prompt_reaches_the_upstream(
    claude: anthropic.Anthropic, simulator_url: str, model: str
) -> None:
    marker = f"system check {model}"
    claude.messages.create(
        model=model, max_tokens=50, system="You are terse.", messages=user(marker)
    )
    body = recorded_request(simulator_url, marker)["json"]
    if model == "test-claude":
        assert body["system"] == "You are terse."
        assert body["max_tokens"] == 50
    else:
        assert body["messages"][0] == {"role": "system", "content": "You are terse."}
        assert body["max_tokens"] == 50


@BOTH
def test_stop_sequences(claude: anthropic.Anthropic, simulator_url: str, model: str) -> None:
    marker = f"stop here {model}"
    message = claude.messages.create(
        model=model, max_tokens=100, messages=user(marker), stop_sequences=[" bravo"]
    )
    assert text_of(message).endswith(" alpha")
    if model == "test-claude":
        assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", " bravo")
    else:  # OpenAI does not say which stop sequence ended the answer
        assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
        assert recorded_request(simulator_url, marker)["json"]["stop"] == [" bravo"]


@BOTH
def test_max_tokens_ends_with_stop_reason_max_tokens(
    claude: anthropic.Anthropic, model: str
) -> None:
    message = claude.messages.create(model=model, max_tokens=3, messages=user("long answer"))
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_call_the_output_limit_cut_ends_max_tokens(
    claude: anthropic.Anthropic, stream: bool
) -> None:
    # OpenAI ends a call max_tokens stops mid-way with arguments that are not yet JSON; as
    # Claude answers it, that is a max_tokens answer keeping the cut tool_use, never a 502.
    kwargs: dict[str, Any] = {
        "model": "test-chat",
        "max_tokens": 2,
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "any"},
        "messages": user("weather cut short"),
    }
    if stream:
        with claude.messages.stream(**kwargs) as events:
            message = events.get_final_message()
    else:
        message = claude.messages.create(**kwargs)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 2
    [block] = message.content
    assert block.type == "tool_use" and block.name == "get_weather"
    # The values written whole (not "unit", never begun), as the SDK reads the streamed ones.
    assert block.input == {"city": "sample"}


def test_max_tokens_0_warms_the_prompt_cache_of_anthropic_deployments(
    claude: anthropic.Anthropic,
) -> None:
    # Anthropic's documented pre-warm: the prompt is cached, nothing is generated.
    warm: dict[str, Any] = {
        "model": "test-claude",
        "max_tokens": 0,
        "system": "Rules. " * 1500,
        "messages": user("warm up"),
        "cache_control": {"type": "ephemeral"},
    }
    warmed = claude.messages.create(**warm)
    assert (warmed.content, warmed.stop_reason, warmed.usage.output_tokens) == ([], "max_tokens", 0)
    assert warmed.usage.cache_creation_input_tokens
    with claude.messages.stream(**warm) as stream:
        streamed = stream.get_final_message()
    assert (streamed.content, streamed.stop_reason, streamed.usage.output_tokens) == (
        [],
        "max_tokens",
        0,
    )
    assert streamed.usage.cache_creation_input_tokens
    # Other families have no such call: refused by name rather than sent to fail there.
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        claude.messages.create(model="test-chat", max_tokens=0, messages=user("warm up"))
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        claude.messages.create(model="test-claude", max_tokens=-1, messages=user("warm up"))


@BOTH
def test_count_tokens_forwards_to_anthropic_or_estimates(
    claude: anthropic.Anthropic, model: str
) -> None:
    question = "how many tokens is this question?"
    kwargs: dict[str, Any] = {"system": "be brief", "messages": user(question)}
    raw = claude.messages.with_raw_response.count_tokens(model=model, **kwargs)
    count = raw.parse().input_tokens
    if model == "test-claude":
        assert "x-tollway-token-count" not in raw.headers
        used = claude.messages.create(model=model, max_tokens=5, **kwargs).usage.input_tokens
        assert count == used
    else:
        # An OpenAI-format deployment: counted by the gateway's own tokenizer.
        assert raw.headers["x-tollway-token-count"] == "local"
        request = ChatRequest(
            model="sim-chat",
            messages=[Message("system", "be brief"), Message("user", question)],
        )
        assert count == TokenCounter().chat(request, "openai", "sim-chat")


TEXT_DOCUMENT: dict[str, Any] = {
    "type": "document",
    "title": "Toll schedule",
    "source": {"type": "text", "media_type": "text/plain", "data": "Cars pay 3 euros. " * 40},
}
PDF_DOCUMENT: dict[str, Any] = {
    "type": "document",
    "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"},
}
URL_DOCUMENT: dict[str, Any] = {
    "type": "document",
    "source": {"type": "url", "url": "https://example.com/tolls.pdf"},
}
# What Anthropic clients may send that the other families cannot take: a 400 naming it.
UNTRANSLATABLE: dict[str, dict[str, Any]] = {
    "unknown field": {"extra_body": {"no_such_field": True}},
    "server tool": {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
    # (A PDF or text document crosses; citations of it, or one by URL, cannot.)
    "cited document": {
        "messages": [
            {"role": "user", "content": [{**TEXT_DOCUMENT, "citations": {"enabled": True}}]}
        ]
    },
    "document by url": {"messages": [{"role": "user", "content": [URL_DOCUMENT]}]},
}
PREFILL = {"messages": [*user("Answer in JSON."), {"role": "assistant", "content": "{"}]}
TOP_K = {"extra_body": {"top_k": 5}}  # Chat Completions has none; Claude on Bedrock takes it
TOO_WARM = {"extra_body": {"temperature": 1.5}}  # beyond Claude's 0 to 1


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        *(pytest.param("test-chat", f, id=f"openai-{name}") for name, f in UNTRANSLATABLE.items()),
        pytest.param("test-chat", PREFILL, id="openai-prefill"),
        pytest.param("test-chat", TOP_K, id="openai-top_k"),
        *(
            pytest.param("test-bedrock", f, id=f"bedrock-{n}")
            for n, f in UNTRANSLATABLE.items()
            if n != "cited document"  # Converse cites documents too (test_bedrock)
        ),
        pytest.param("test-bedrock", TOO_WARM, id="bedrock-temperature"),
    ],
)
def test_count_tokens_refuses_what_messages_refuses_on_a_locally_counted_deployment(
    claude: anthropic.Anthropic, model: str, fields: dict[str, Any]
) -> None:
    kwargs = {"messages": user("count me"), **fields}
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(model=model, max_tokens=2000, **kwargs)
    with pytest.raises(anthropic.BadRequestError) as counted:
        claude.messages.count_tokens(model=model, **kwargs)
    assert counted.value.status_code == refused.value.status_code == 400
    body = counted.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"] == refused.value.body["error"]  # type: ignore[index]
    assert body["error"]["type"] == "invalid_request_error"


def test_count_tokens_of_documents_on_an_anthropic_deployment_is_the_upstreams(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    content: list[Any] = [TEXT_DOCUMENT, PDF_DOCUMENT, {"type": "text", "text": "doc-count-marker"}]
    raw = claude.messages.with_raw_response.count_tokens(
        model="test-claude", messages=[{"role": "user", "content": content}]
    )
    assert "x-tollway-token-count" not in raw.headers
    forwarded = recorded_request(simulator_url, "doc-count-marker")
    assert forwarded["path"] == "/v1/messages/count_tokens"
    assert forwarded["json"]["messages"][0]["content"] == content
    used = claude.messages.create(
        model="test-claude", max_tokens=5, messages=[{"role": "user", "content": content}]
    )
    assert raw.parse().input_tokens == used.usage.input_tokens


def test_unknown_model_is_404_in_anthropic_shape(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.messages.create(model="nope", max_tokens=5, messages=user("x"))
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "not_found_error"
    assert "nope" in body["error"]["message"]
    assert body["request_id"] == caught.value.response.headers["request-id"]


@BOTH
def test_bad_request_is_400_in_anthropic_shape(claude: anthropic.Anthropic, model: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model=model, max_tokens=5, messages=[])
    body = caught.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error"
    assert "messages" in body["error"]["message"]


@BOTH
@pytest.mark.parametrize(
    ("tool_choice", "tools"),
    [
        ({"type": "any"}, None),
        ({"type": "tool", "name": "get_weather"}, None),
        ({"type": "tool", "name": "get_wether"}, [WEATHER_TOOL, TIME_TOOL]),
    ],
)
def test_a_tool_choice_no_tool_offered_can_meet_is_a_400_on_every_route(
    claude: anthropic.Anthropic,
    model: str,
    tool_choice: dict[str, Any],
    tools: list[dict[str, Any]] | None,
) -> None:
    # Silently not met otherwise: a family answers in text when the tool is not offered.
    extra: dict[str, Any] = {} if tools is None else {"tools": tools}
    with pytest.raises(anthropic.BadRequestError) as created:
        claude.messages.create(
            model=model, max_tokens=5, messages=user("x"), tool_choice=tool_choice, **extra
        )
    with pytest.raises(anthropic.BadRequestError) as counted:
        claude.messages.count_tokens(
            model=model, messages=user("x"), tool_choice=tool_choice, **extra
        )
    for caught in (created, counted):
        body = caught.value.body
        assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error"
        assert "tool_choice" in body["error"]["message"]


@pytest.mark.parametrize("model", ["test-chat", "test-azure", "test-mistral"])
def test_an_empty_tool_list_reaches_openai_format_deployments_as_no_tools(
    claude: anthropic.Anthropic, simulator_url: str, model: str
) -> None:
    # Agents send their tool list (empty now and then) and their choice with every turn;
    # Anthropic takes that, where OpenAI refuses parallel_tool_calls (or a tool_choice)
    # without tools and compatible servers an empty "tools" array.
    marker = f"no tools offered {model}"
    choice: Any = {"type": "auto", "disable_parallel_tool_use": True}
    answer = claude.messages.create(
        model=model, max_tokens=5, messages=user(marker), tools=[], tool_choice=choice
    )
    assert answer.stop_reason == "max_tokens"
    sent = recorded_request(simulator_url, marker)["json"]
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(sent)


@BOTH
def test_upstream_rate_limit_keeps_retry_after(claude: anthropic.Anthropic, model: str) -> None:
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.messages.create(
            model=model,
            max_tokens=5,
            messages=user("x"),
            extra_headers={"x-sim-fault": "status:429", "x-sim-retry-after": "7"},
        )
    assert caught.value.response.headers["retry-after"] == "7"
    body = caught.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "rate_limit_error"


@BOTH
def test_upstream_server_error_becomes_502(claude: anthropic.Anthropic, model: str) -> None:
    with pytest.raises(anthropic.InternalServerError) as caught:
        claude.messages.create(
            model=model,
            max_tokens=5,
            messages=user("x"),
            extra_headers={"x-sim-fault": "status:500"},
        )
    assert caught.value.status_code == 502
    body = caught.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "api_error"


@BOTH
def test_stream_cut_by_the_upstream_ends_with_an_error_event(
    claude: anthropic.Anthropic, model: str
) -> None:
    stream = claude.messages.create(
        model=model,
        max_tokens=50,
        messages=user("cut me off"),
        stream=True,
        extra_headers={"x-sim-fault": "stop-after:2"},
    )
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        for event in stream:
            seen.append(event.type)
    assert seen[0] == "message_start" and "message_stop" not in seen
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"


def test_an_upstream_refusing_the_gateways_key_is_a_502_not_the_clients_auth_error(
    claude: anthropic.Anthropic,
) -> None:
    # The provider refused the deployment's (wrong) key; the client's own key is fine.
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude.messages.create(model="test-claude-badkey", max_tokens=5, messages=user("x"))
    assert not isinstance(caught.value, anthropic.AuthenticationError)
    assert caught.value.status_code == 502
    body = caught.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "api_error"
    assert "'test-claude-badkey#0'" in body["error"]["message"]
    assert "refused the gateway's credential" in body["error"]["message"]
    assert "sk-wrong-key-for-test-9876" not in caught.value.response.text


@BOTH
@pytest.mark.parametrize("status", [401, 403])
def test_an_upstream_401_or_403_is_a_502_for_anthropic_clients(
    claude: anthropic.Anthropic, model: str, status: int
) -> None:
    with pytest.raises(anthropic.InternalServerError) as caught:
        claude.messages.create(
            model=model,
            max_tokens=5,
            messages=user("x"),
            extra_headers={"x-sim-fault": f"status:{status}"},
        )
    assert caught.value.status_code == 502
    body = caught.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "api_error"
    assert f"upstream {status}" in body["error"]["message"]


def test_the_clients_key_never_reaches_the_upstream(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    claude.messages.create(
        model="test-claude",
        max_tokens=5,
        messages=user("whose key is this"),
        extra_headers={"x-api-key": CLIENT_KEY},
    )
    recorded = recorded_request(simulator_url, "whose key is this")
    assert recorded["path"] == "/v1/messages"
    headers = recorded["headers"]
    assert headers["x-api-key"] == UPSTREAM_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers
    assert CLIENT_KEY not in json.dumps(recorded)


def test_anthropic_only_features_are_refused_by_name_on_openai_deployments(
    claude: anthropic.Anthropic,
) -> None:
    # (``thinking`` is not among them: the client is shown the reasoning the model does,
    # test_reasoning.)
    with pytest.raises(anthropic.BadRequestError, match="top_k"):
        claude.messages.create(
            model="test-chat", max_tokens=2000, messages=user("think"), extra_body={"top_k": 5}
        )


def test_what_openai_deployments_cannot_take_is_refused_or_said_in_words(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    with pytest.raises(anthropic.BadRequestError, match="prefilled answer"):
        claude.messages.create(
            model="test-chat",
            max_tokens=50,
            messages=[*user("Answer in JSON."), {"role": "assistant", "content": "{"}],
        )
    turns: list[Any] = [
        *user("look up tolls-failed"),
        {"role": "assistant",
         "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": "timeout", "is_error": True}]},
    ]  # fmt: skip
    tools: list[Any] = [{"name": "lookup", "input_schema": {"type": "object"}}]
    claude.messages.create(model="test-chat", max_tokens=50, messages=turns, tools=tools)
    sent = recorded_request(simulator_url, "tolls-failed")["json"]["messages"]
    assert sent[-1] == {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: timeout"}


@anthropic.beta_tool
def lookup_toll(road: str) -> str:
    """The toll on a road.

    Args:
        road: the road's name
    """
    return f"3 EUR on {road}"


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("model", ["test-chat", "test-gemini", "test-bedrock"])
def test_the_tool_runner_runs_on_deployments_that_hold_no_thread(
    claude: anthropic.Anthropic, model: str, stream: bool
) -> None:
    """The SDK's tool runner asks the server to hold the conversation (``thread``); a
    deployment whose provider holds none is refused in the words the SDK reads as "send the
    whole conversation without it" (``thread_unsupported_request``), and the loop runs."""
    runner = claude.beta.messages.tool_runner(
        model=model,
        max_tokens=256,
        tools=[lookup_toll],
        messages=user("toll on the A1"),
        stream=stream,
        max_iterations=3,
    )
    last = runner.until_done()
    assert "Simulated reply to tool result" in text_of(last)  # type: ignore[arg-type]
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.beta.messages.create(
            model=model, max_tokens=50, messages=user("hold this"), thread={"type": "create"}
        )
    assert refused.value.body["error"]["details"] == {"error_code": "thread_unsupported_request"}  # type: ignore[index]


def test_anthropic_fields_pass_through_to_anthropic_deployments(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    claude.messages.create(
        model="test-claude",
        max_tokens=2000,
        system=[{"type": "text", "text": "cached", "cache_control": {"type": "ephemeral"}}],
        messages=user("pass it all through"),
        extra_body={"top_k": 5, "service_tier": "auto"},
        metadata={"user_id": "user-42"},
    )
    body = recorded_request(simulator_url, "pass it all through")["json"]
    assert body["system"] == [
        {"type": "text", "text": "cached", "cache_control": {"type": "ephemeral"}}
    ]
    assert (body["top_k"], body["service_tier"]) == (5, "auto")
    assert body["metadata"] == {"user_id": "user-42"}


def test_toolsets_that_name_no_tool_reach_anthropic_deployments(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    # A toolset entry (the computer and browser toolsets, the MCP connector's mcp_toolset)
    # declares a family of tools and carries no "name" of its own.
    toolsets: list[Any] = [
        {"type": "computer_toolset_20260801"},
        {"type": "browser_toolset_20260801"},
        {"type": "mcp_toolset", "mcp_server_name": "tolls"},
    ]
    tools = [*toolsets, WEATHER_TOOL]
    claude.messages.create(
        model="test-claude", max_tokens=100, messages=user("toolsets go through"), tools=tools
    )
    assert recorded_request(simulator_url, "toolsets go through")["json"]["tools"] == tools
    # A choice may name one of a toolset's tools, which the request does not list.
    choice: Any = {"type": "tool", "name": "lookup_toll"}
    counted = claude.messages.count_tokens(
        model="test-claude", messages=user("toolset choice"), tools=tools, tool_choice=choice
    )
    assert counted.input_tokens > 0
    sent = recorded_request(simulator_url, "toolset choice")
    assert sent["path"] == "/v1/messages/count_tokens" and sent["json"]["tool_choice"] == choice


def test_a_cited_answer_streams_into_the_message_a_plain_request_gets(
    claude: anthropic.Anthropic,
) -> None:
    # Anthropic answers with citations in separate text blocks around each quote; streamed,
    # every block (and its citations_delta) must stay its own for the stream helper.
    document = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green."},
        "title": "Facts",
        "citations": {"enabled": True},
    }
    messages: Any = [
        {"role": "user", "content": [document, {"type": "text", "text": "What colour?"}]}
    ]
    plain = claude.messages.create(model="test-claude", max_tokens=100, messages=messages)
    with claude.messages.stream(model="test-claude", max_tokens=100, messages=messages) as s:
        final = s.get_final_message()
    assert len(plain.content) == 3
    cited = plain.content[1]
    assert cited.type == "text" and cited.citations is not None
    assert cited.citations[0].cited_text == "The grass is green."
    assert [b.to_dict() for b in final.content] == [b.to_dict() for b in plain.content]


def test_an_assistant_turn_reaches_anthropic_deployments_in_the_clients_block_order(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    turn: list[Any] = [
        {"type": "thinking", "thinking": "look it up first",
         "signature": thinking_signature("look it up first")},  # Claude checks it
        {"type": "tool_use", "id": "toolu_7", "name": "get_weather",
         "input": {"city": "Oslo", "unit": "c"}},
        {"type": "text", "text": "Checking the weather."},
    ]  # fmt: skip
    messages: list[Any] = [
        *user("weather in block-order-town?"),
        {"role": "assistant", "content": turn},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_7",
                                      "content": "cold"}]},
    ]  # fmt: skip
    claude.messages.count_tokens(model="test-claude", messages=messages, tools=[WEATHER_TOOL])
    counted = recorded_request(simulator_url, "block-order-town")
    assert counted["path"] == "/v1/messages/count_tokens"
    assert counted["json"]["messages"][1]["content"] == turn
    claude.messages.create(
        model="test-claude", max_tokens=50, messages=messages, tools=[WEATHER_TOOL]
    )
    sent = recorded_request(simulator_url, "block-order-town")
    assert sent["path"] == "/v1/messages"
    assert sent["json"]["messages"][1]["content"] == turn


async def test_async_message_stream_and_errors(async_claude: anthropic.AsyncAnthropic) -> None:
    message = await async_claude.messages.create(
        model="test-claude", max_tokens=100, messages=user("async hello")
    )
    assert "async hello" in text_of(message)
    async with async_claude.messages.stream(
        model="test-chat", max_tokens=100, messages=user("async stream")
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
    assert "async stream" in text
    with pytest.raises(anthropic.NotFoundError):
        await async_claude.messages.create(model="missing", max_tokens=5, messages=user("x"))
    count = await async_claude.messages.count_tokens(model="test-claude", messages=user("x"))
    assert count.input_tokens > 0


def test_openai_sdk_chat_on_an_anthropic_deployment(gpt: openai.OpenAI, simulator_url: str) -> None:
    raw = gpt.chat.completions.with_raw_response.create(
        model="test-claude",
        messages=[
            {"role": "system", "content": "be kind"},
            {"role": "user", "content": "openai to claude"},
        ],
        user="alice",
    )
    completion = raw.parse()
    assert raw.headers["x-tollway-provider"] == "anthropic"
    assert "openai to claude" in (completion.choices[0].message.content or "")
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    body = recorded_request(simulator_url, "openai to claude")["json"]
    assert body["max_tokens"] == 4096  # Anthropic requires one; the client set none
    assert body["system"] == "be kind"
    assert body["metadata"] == {"user_id": "alice"}


def test_openai_sdk_stream_on_an_anthropic_deployment(gpt: openai.OpenAI) -> None:
    chunks = list(
        gpt.chat.completions.create(
            model="test-claude",
            messages=[{"role": "user", "content": "stream to me"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "stream to me" in text
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(
        [c for c in chunks if c.choices and c.choices[0].delta.content]
    )


def test_openai_sdk_tool_round_trip_on_an_anthropic_deployment(gpt: openai.OpenAI) -> None:
    tool: Any = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": WEATHER_TOOL["input_schema"]},
    }
    messages: list[Any] = [{"role": "user", "content": "weather in Oslo?"}]
    first = gpt.chat.completions.create(model="test-claude", messages=messages, tools=[tool])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call: Any = (choice.message.tool_calls or [])[0]
    assert call.function.name == "get_weather"
    assert set(json.loads(call.function.arguments)) >= {"city", "unit"}
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "snowing, -3C"})
    second = gpt.chat.completions.create(model="test-claude", messages=messages, tools=[tool])
    assert second.choices[0].finish_reason == "stop"
    assert "snowing, -3C" in (second.choices[0].message.content or "")


def test_openai_sdk_streamed_tool_calls_on_an_anthropic_deployment(gpt: openai.OpenAI) -> None:
    tools: Any = [
        {"type": "function", "function": {"name": t["name"], "parameters": t["input_schema"]}}
        for t in (WEATHER_TOOL, TIME_TOOL)
    ]
    with gpt.chat.completions.stream(
        model="test-claude",
        messages=[{"role": "user", "content": "call both in parallel"}],
        tools=tools,
    ) as stream:
        final = stream.get_final_completion()
    calls: Any = final.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert all(json.loads(c.function.arguments) for c in calls)
    assert final.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("stream", [False, True])
def test_openai_sdk_call_without_arguments_on_an_anthropic_deployment_has_an_empty_object(
    gpt: openai.OpenAI, stream: bool
) -> None:
    # Anthropic streams a call without arguments as ``input: {}`` and one empty
    # partial_json: OpenAI's clients still get the JSON object ``{}`` they parse.
    clock: Any = {"type": "function", "function": {"name": "get_time", "parameters": {}}}
    ask: Any = {"model": "test-claude", "messages": user("what time is it"), "tools": [clock]}
    if stream:
        with gpt.chat.completions.stream(**ask, tool_choice="required") as events:
            answer = events.get_final_completion()
    else:
        answer = gpt.chat.completions.create(**ask, tool_choice="required")
    calls: Any = answer.choices[0].message.tool_calls
    assert calls[0].function.name == "get_time"
    assert json.loads(calls[0].function.arguments) == {}
    assert answer.choices[0].finish_reason == "tool_calls"


def test_the_anthropic_sdk_gets_an_empty_input_for_a_streamed_call_without_arguments(
    claude: anthropic.Anthropic,
) -> None:
    clock: Any = {"name": "get_time", "input_schema": {"type": "object"}}
    with claude.messages.stream(
        model="test-claude",
        max_tokens=100,
        messages=[{"role": "user", "content": "what time is it"}],
        tools=[clock],
        tool_choice={"type": "any"},
    ) as events:
        message = events.get_final_message()
    assert [(b.type, getattr(b, "input", None)) for b in message.content] == [("tool_use", {})]


def test_openai_sdk_tool_schema_without_a_type_reaches_an_anthropic_deployment_as_an_object(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    # OpenAI takes a function's parameters without "type" (``{}`` is a function without
    # arguments); Anthropic refuses an input_schema without ``type: "object"``.
    tools: Any = [
        {"type": "function", "function": {"name": "get_time", "parameters": {}}},
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"properties": {"city": {"type": "string"}}},
            },
        },
    ]
    asked = "untyped tool schemas for claude"
    answer = gpt.chat.completions.create(model="test-claude", messages=user(asked), tools=tools)
    assert answer.choices[0].finish_reason == "tool_calls"
    sent = recorded_request(simulator_url, asked)["json"]["tools"]
    assert [tool["input_schema"] for tool in sent] == [
        {"type": "object", "properties": {}},
        {"type": "object", "properties": {"city": {"type": "string"}}},
    ]


def test_openai_sdk_json_output_on_an_anthropic_deployment(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    structured = gpt.chat.completions.create(
        model="test-claude",
        messages=[{"role": "user", "content": "structured please"}],
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    assert set(json.loads(structured.choices[0].message.content or "")) == {"city"}
    gpt.chat.completions.create(
        model="test-claude",
        messages=[{"role": "user", "content": "any json please"}],
        response_format={"type": "json_object"},
    )
    body = recorded_request(simulator_url, "any json please")["json"]
    assert "JSON object" in body["system"][-1]["text"]


def test_an_openai_clients_open_json_schema_reaches_an_anthropic_deployment_closed(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    # OpenAI takes a schema that leaves additionalProperties unsaid (strict off); Anthropic's
    # structured output refuses every object without "additionalProperties": false.
    schema = copy.deepcopy(OPEN_SCHEMA)
    asked = "open schema for claude"
    answer = gpt.chat.completions.create(
        model="test-claude",
        messages=user(asked),
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    assert "city" in json.loads(answer.choices[0].message.content or "")
    sent = recorded_request(simulator_url, asked)["json"]["output_config"]["format"]["schema"]
    assert sent["additionalProperties"] is False
    assert sent["properties"]["homes"]["items"]["additionalProperties"] is False
    assert schema == OPEN_SCHEMA  # the client's own left as it was


@pytest.mark.parametrize(("extra", "param"), [({"n": 2}, "n"), ({"logprobs": True}, "logprobs")])
def test_openai_features_anthropic_lacks_are_400s(
    gpt: openai.OpenAI, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.create(
            model="test-claude", messages=[{"role": "user", "content": "x"}], **extra
        )
    assert caught.value.param == param


# --- an upstream's error in the other family's words ------------------------------------------


@pytest.mark.parametrize(
    ("status", "sent", "error_type", "code"),
    [
        (400, 400, "invalid_request_error", None),
        (404, 404, "invalid_request_error", None),
        (413, 413, "invalid_request_error", None),
        (429, 429, "rate_limit_error", "rate_limit_exceeded"),
        (500, 502, "upstream_error", None),
        # Anthropic's overload is OpenAI's own: 503 server_is_overloaded (no 529 in OpenAI).
        (529, 503, "service_unavailable_error", "server_is_overloaded"),
    ],
)
def test_an_anthropic_deployments_error_reaches_openai_clients_in_openais_words(
    gpt: openai.OpenAI, status: int, sent: int, error_type: str, code: str | None
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        gpt.chat.completions.create(
            model="test-claude",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-sim-fault": f"status:{status}"},
        )
    assert caught.value.status_code == sent
    body = caught.value.body
    # Anthropic's own type names (rate_limit_error, overloaded_error, ...) are not OpenAI codes.
    assert isinstance(body, dict) and (body["type"], body["code"]) == (error_type, code)
    assert body["param"] is None


def test_an_openai_deployments_code_and_param_reach_openai_clients(gpt: openai.OpenAI) -> None:
    tool: Any = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.create(  # the upstream refuses a forced tool it was not given
            model="test-chat",
            messages=[{"role": "user", "content": "x"}],
            tools=[tool],
            tool_choice={"type": "function", "function": {"name": "get_time"}},
        )
    assert caught.value.param == "tool_choice"
    assert "get_time" in caught.value.message
    with pytest.raises(openai.RateLimitError) as limited:
        gpt.chat.completions.create(
            model="test-chat",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-sim-fault": "status:429"},
        )
    assert limited.value.code == "rate_limit_exceeded"  # the upstream's own


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, "invalid_request_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (503, "overloaded_error"),
    ],
)
def test_an_openai_deployments_error_reaches_anthropic_clients_in_anthropics_words(
    claude: anthropic.Anthropic, status: int, error_type: str
) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude.messages.create(
            model="test-chat",
            max_tokens=5,
            messages=user("x"),
            extra_headers={"x-sim-fault": f"status:{status}"},
        )
    # An overload (503) is Anthropic's own: 529 overloaded_error, the SDK's OverloadedError.
    assert caught.value.status_code == {500: 502, 503: 529}.get(status, status)
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == error_type  # never OpenAI's (e.g. the simulator's "requests")


def test_the_anthropic_sdk_lists_models_in_anthropics_shape(
    claude: anthropic.Anthropic, gpt: openai.OpenAI
) -> None:
    listed = list(claude.models.list())
    names = [model.id for model in listed]
    assert "test-claude" in names and "test-chat" in names
    assert "test-embed" not in names  # no Anthropic route serves an embedding model
    for model in listed:
        assert (model.type, model.display_name, model.lifecycle) == ("model", model.id, "active")
        assert isinstance(model.created_at, datetime)
    # Paged as Anthropic pages: ``limit``, then the SDK asks for what follows ``last_id``.
    first = claude.models.list(limit=2)
    assert [model.id for model in first.data] == names[:2] and first.has_more
    assert (first.first_id, first.last_id) == (names[0], names[1])
    assert [model.id for model in first.get_next_page().data] == names[2:4]
    before = claude.models.list(limit=2, before_id=names[3])
    assert [model.id for model in before.data] == names[1:3]
    assert [model.id for model in claude.models.list(limit=1000).data] == names
    with pytest.raises(anthropic.BadRequestError):
        claude.models.list(limit=0)
    one = claude.models.retrieve("test-claude")
    assert (one.id, one.type, one.display_name) == ("test-claude", "model", "test-claude")
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.models.retrieve("no-such-model")
    body = caught.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "not_found_error"
    # The OpenAI SDK (no ``anthropic-version``) still gets OpenAI's list.
    assert {model.id for model in gpt.models.list()} >= {*names, "test-embed"}


def test_demo_claude_works_with_no_keys(log_dir: Path) -> None:
    with running_gateway(log_dir, None) as (url, _):
        client = anthropic.Anthropic(base_url=url, api_key=CLIENT_KEY, max_retries=0)
        message = client.messages.create(model="demo-claude", max_tokens=20, messages=user("hi"))
        client.close()
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert "hi" in text_of(message)


def test_beta_and_version_headers_reach_the_upstream_as_configured(
    claude: anthropic.Anthropic, log_dir: Path, simulator_url: str
) -> None:
    # The shared gateway forwards only x-sim-*: the client's beta stays with the gateway.
    claude.beta.messages.create(
        model="test-claude", max_tokens=5, messages=user("betas unforwarded"), betas=["b-1"]
    )
    assert "anthropic-beta" not in recorded_request(simulator_url, "betas unforwarded")["headers"]
    # The client's anthropic-beta goes on only when upstream.forward_headers names it; a
    # deployment's own headers win, in whatever case they are written, but for its betas:
    # added to the client's, each once, in order.
    config = gateway_config(simulator_url, forward_headers=["anthropic-beta", "x-sim-*"])
    pinned = {
        "Anthropic-Version": "2023-01-01",
        "Anthropic-Beta": "pinned-2025-01-01, client-beta-2025-01-01",
    }
    deployment = {"provider": "anthropic", "model": "sim-chat", "api_base": simulator_url,
                  "api_key": "env:TEST_UPSTREAM_KEY"}  # fmt: skip
    config["models"] += [
        {"name": "claude-plain", "deployments": [deployment]},
        {"name": "claude-pinned", "deployments": [{**deployment, "headers": pinned}]},
    ]
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    with running_gateway(log_dir, config, env) as (url, _):
        client = anthropic.Anthropic(base_url=url, api_key=CLIENT_KEY, max_retries=0)
        for model in ("claude-plain", "claude-pinned"):
            client.beta.messages.create(
                model=model,
                max_tokens=5,
                messages=user(f"betas for {model}"),
                betas=["client-beta-2025-01-01"],
            )
        client.close()
    plain = recorded_request(simulator_url, "betas for claude-plain")["headers"]
    assert plain["anthropic-beta"] == "client-beta-2025-01-01"
    assert plain["anthropic-version"] == "2023-06-01"
    headers = recorded_request(simulator_url, "betas for claude-pinned")["headers"]
    assert headers["anthropic-version"] == "2023-01-01"
    assert headers["anthropic-beta"] == "client-beta-2025-01-01,pinned-2025-01-01"
