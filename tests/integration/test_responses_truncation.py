"""A Responses client's ``truncation`` through the real ``openai`` SDK, a gateway process and the
simulator: a conversation over every candidate's context window is a 400
``context_length_exceeded`` by default (``disabled``), and with ``auto`` the gateway drops its
oldest turns until it fits (the instructions and the latest turn kept, a function call with its
output), for the deployments it translates to; a deployment that speaks the Responses API
itself is sent the conversation whole with ``truncation`` as the client sent it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, running_gateway

WINDOW = 1_000  # tokens: the conversation below is some 3,500
WEATHER_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def gateway(log_dir: Path, simulator_url: str) -> Iterator[str]:
    base, key = f"{simulator_url}/v1", "env:TEST_UPSTREAM_KEY"
    small = {"api_key": key, "context_window": WINDOW}
    claude = {"provider": "anthropic", "model": "sim-chat", "api_base": simulator_url}
    config = {
        "upstream": {"timeouts": {"connect": "2s", "first_byte": "5s", "total": "20s"}},
        "models": [
            {"name": "small-chat", "deployments": [
                {**small, "provider": "openai", "model": "sim-chat", "api_base": base}]},
            {"name": "small-claude", "deployments": [
                {**small, **claude}]},
            {"name": "small-native", "deployments": [
                {**small, "provider": "openai", "model": "gpt-4o", "api_base": base,
                 "responses_api": True}]},
        ],
    }  # fmt: skip
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, _):
        yield url


@pytest.fixture(scope="module")
def client(gateway: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0) as c:
        yield c


def _words(label: str, count: int = 40) -> str:
    return " ".join(f"{label}-{i}" for i in range(count))


def conversation(latest: str) -> list[Any]:
    """Ten earlier turns (a function call and its output among them), then ``latest``."""
    items: list[Any] = [{"role": "developer", "content": "Answer briefly."}]
    for turn in range(10):
        items.append({"role": "user", "content": _words(f"question{turn}")})
        if turn == 5:
            items.append({"type": "function_call", "call_id": "call_5", "name": "get_weather",
                          "arguments": '{"city": "Paris"}'})  # fmt: skip
            items.append({"type": "function_call_output", "call_id": "call_5",
                          "output": _words("sunny")})  # fmt: skip
        items.append({"role": "assistant", "content": _words(f"answer{turn}")})
    items.append({"role": "user", "content": latest})
    return items


def received(simulator_url: str, latest: str) -> dict[str, Any]:
    """The body the simulator last received whose input ends with ``latest``."""
    for request in reversed(httpx.get(simulator_url + "/_sim/requests").json()):
        body = request["json"] or {}
        turns = body.get("messages") or body.get("input")
        if isinstance(turns, list) and turns and _text(turns[-1]) == latest:
            return dict(body)
    raise AssertionError(f"the simulator received no request ending in {latest!r}")


def _text(turn: dict[str, Any]) -> str:
    content = turn.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content)
    return str(content)


def test_disabled_is_a_400_over_the_context_window(client: openai.OpenAI) -> None:
    for truncation in ("disabled", None):
        extra = {} if truncation is None else {"truncation": truncation}
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(
                model="small-chat", input=conversation("too long"), max_output_tokens=50,
                tools=[WEATHER_TOOL], **extra,
            )  # fmt: skip
        assert caught.value.code == "context_length_exceeded"
        assert caught.value.param == "input"


@pytest.mark.parametrize("model", ["small-chat", "small-claude"])
def test_auto_drops_the_oldest_turns_until_it_fits(
    client: openai.OpenAI, simulator_url: str, model: str
) -> None:
    latest = f"the latest question for {model}"
    response = client.responses.create(
        model=model, input=conversation(latest), max_output_tokens=50, tools=[WEATHER_TOOL],
        truncation="auto",
    )  # fmt: skip
    assert response.status == "completed" and response.truncation == "auto"
    assert response.output  # a call of the tool offered, as the simulator answers a user turn
    body = received(simulator_url, latest)
    if model == "small-claude":
        assert body["system"] == "Answer briefly."
        turns = body["messages"]
    else:
        assert body["messages"][0] == {"role": "developer", "content": "Answer briefly."}
        turns = body["messages"][1:]
    # Fewer turns than the 23 sent, opening with the user's, the latest kept; what is left
    # fits the window (the simulator counts a word a token, 3 a message).
    assert 1 < len(turns) < 23
    assert turns[0]["role"] == "user" and _text(turns[-1]) == latest
    assert "question0-0" not in str(turns)
    assert response.usage is not None and response.usage.input_tokens + 50 <= WINDOW
    # The function call and its output are both kept or both dropped.
    assert ("call_5" in str(turns)) == ("sunny-0" in str(turns))


def test_auto_keeps_a_function_call_with_its_output(
    client: openai.OpenAI, simulator_url: str
) -> None:
    # The call's output is longer than the window: it goes, and its call with it (a tool
    # result without its call is a 400 at every family).
    items = conversation("after the weather")
    latest = "what now, after the weather?"
    tail = [
        {"role": "user", "content": "and the weather?"},
        {"type": "function_call", "call_id": "call_late", "name": "get_weather",
         "arguments": '{"city": "Oslo"}'},
        {"type": "function_call_output", "call_id": "call_late", "output": _words("rain", 500)},
        {"role": "user", "content": latest},
    ]  # fmt: skip
    response = client.responses.create(
        model="small-chat", input=[*items[:-1], *tail], max_output_tokens=20,
        tools=[WEATHER_TOOL], truncation="auto",
    )  # fmt: skip
    assert response.status == "completed"
    turns = received(simulator_url, latest)["messages"]
    assert [m["role"] for m in turns] == ["developer", "user"]
    assert "call_late" not in str(turns) and "rain-0" not in str(turns)


def test_auto_streams_too(client: openai.OpenAI, simulator_url: str) -> None:
    latest = "the latest question, streamed"
    with client.responses.stream(
        model="small-chat", input=conversation(latest), max_output_tokens=50, truncation="auto"
    ) as stream:
        response = stream.get_final_response()
    assert response.status == "completed" and latest in response.output_text
    assert len(received(simulator_url, latest)["messages"]) < 24


def test_auto_is_a_400_when_the_latest_turn_alone_is_too_long(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="small-chat", input=conversation(_words("huge", 500)), max_output_tokens=50,
            truncation="auto",
        )  # fmt: skip
    assert caught.value.code == "context_length_exceeded"
    assert "latest turn" in str(caught.value.message)


def test_a_responses_upstream_is_sent_the_whole_input_with_truncation_as_sent(
    client: openai.OpenAI, simulator_url: str
) -> None:
    latest = "the latest question for the native upstream"
    sent = conversation(latest)
    response = client.responses.create(
        model="small-native", input=sent, max_output_tokens=50, truncation="auto"
    )
    assert response.status == "completed" and response.truncation == "auto"
    body = received(simulator_url, latest)
    assert body["truncation"] == "auto" and body["input"] == sent


def test_an_unknown_truncation_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="small-chat",
            input="hello",
            truncation="middle",  # type: ignore[arg-type]
        )
    assert caught.value.param == "truncation"
    assert caught.value.code == "invalid_value"


def test_an_upstream_400_names_the_clients_item_after_turns_were_dropped(
    client: openai.OpenAI,
) -> None:
    # A call whose output does not follow its turn at once: OpenAI's 400 names the call's
    # message by its index in the shortened conversation (``messages.[N].role``), the client
    # is told its own item's (the call, three from the end).
    items = conversation("latest, then an output after text")
    items.append(
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"}
    )
    items.append({"role": "assistant", "content": "between the call and its output"})
    items.append({"type": "function_call_output", "call_id": "c1", "output": "boo"})
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="small-chat", input=items, max_output_tokens=50, truncation="auto",
            tools=[WEATHER_TOOL],
        )  # fmt: skip
    assert caught.value.param == f"input[{len(items) - 3}]"
