"""A Responses conversation that changes family (the real ``openai`` SDK on a gateway process
and the simulator): the ``reasoning`` items the gateway sealed for Claude's signed thinking or
Gemini's thought signatures are not sent to OpenAI's Responses API, which cannot read them
(its 400 ``invalid_encrypted_content``, as the simulator answers), when the client switches
to an OpenAI model or the gateway falls over to one; the rest of the history goes as the
client sent it. OpenAI's own encrypted reasoning sent on to Claude or Gemini is left out. So
are the reasoning items the gateway made up without a seal (a Gemini thought summary,
Magistral's thinking, an OpenAI-compatible server's ``reasoning_content``): OpenAI would look
their ids up among the items it stored, and answer 400 "Item with id ... not found" (as the
simulator does)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_responses_upstream import FAULT, WEATHER_TOOL
from tests.support import CLIENT_KEY, running_gateway
from tollway.wire.responses_reasoning import PREFIX as CLAUDES
from tollway.wire.responses_response import GATEWAY_REASONING
from tollway.wire.responses_thought_signatures import PREFIX as GEMINIS

TOOL: Any = WEATHER_TOOL
ASK: Any = {"tools": [TOOL], "reasoning": {"effort": "low"}, "store": False}
SUMMARY: Any = {"reasoning": {"summary": "auto"}, "store": False}
DEEPSEEK = {"x-sim-reasoning": "reasoning_content"}
"""An OpenAI-compatible server (DeepSeek, vLLM) saying its reasoning as ``reasoning_content``."""


def config(simulator_url: str) -> dict[str, Any]:
    key = "env:TEST_UPSTREAM_KEY"
    native = {
        "provider": "openai", "model": "o4-mini", "api_base": f"{simulator_url}/v1",
        "api_key": key, "responses_api": True,
    }  # fmt: skip
    claude = {"provider": "anthropic", "model": "sim-chat", "api_base": simulator_url}
    gemini = {"provider": "gemini", "model": "gemini-3-flash-preview", "api_base": simulator_url}
    magistral = {
        "provider": "mistral", "model": "magistral-medium-latest",
        "api_base": f"{simulator_url}/mistral/v1",
    }  # fmt: skip
    compatible = {"provider": "openai", "model": "sim-chat", "api_base": f"{simulator_url}/v1"}
    return {
        "upstream": {
            "timeouts": {"connect": "2s", "first_byte": "5s", "total": "20s"},
            "forward_headers": ["x-sim-*"],
        },
        "routing": {"rate_limit_cooldown": "1ms", "retry_after_max": "1ms"},
        "models": [
            {"name": "claude", "deployments": [{**claude, "api_key": key}]},
            {"name": "gemini", "deployments": [{**gemini, "api_key": key}]},
            {"name": "magistral", "deployments": [{**magistral, "api_key": key}]},
            {"name": "compatible", "deployments": [
                {**compatible, "api_key": key, "headers": DEEPSEEK}]},
            {"name": "native-o4", "deployments": [{**native, "id": "o4"}]},
            {"name": "claude-to-native", "deployments": [
                {**claude, "api_key": key, "id": "broken-claude", "headers": FAULT},
                {**native, "id": "fallback-o4"}]},
        ],
    }  # fmt: skip


@pytest.fixture(scope="module")
def gpt(log_dir: Path, simulator_url: str) -> Iterator[openai.OpenAI]:
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    with (
        running_gateway(log_dir, config(simulator_url), env) as (url, _),
        openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0) as client,
    ):
        yield client


def respond(gpt: openai.OpenAI, stream: bool, **ask: Any) -> Any:
    if not stream:
        return gpt.responses.create(**ask)
    with gpt.responses.stream(**ask) as events:
        return events.get_final_response()


def received(simulator_url: str, marker: str) -> list[dict[str, Any]]:
    """The requests the simulator received that mention ``marker``, oldest first."""
    requests = httpx.get(simulator_url + "/_sim/requests").json()
    return [r for r in requests if marker in json.dumps(r["json"])]


def sealed(item: Any) -> bool:
    """Whether ``item`` is a reasoning item the gateway sealed."""
    value = item.get("encrypted_content") if isinstance(item, dict) else None
    return isinstance(value, str) and value.startswith((CLAUDES, GEMINIS))


def begun_on(gpt: openai.OpenAI, model: str, marker: str) -> list[Any]:
    """A conversation's first turn on ``model``, a call and its result, as the next input."""
    question = f"weather in Oslo? {marker}"
    first = gpt.responses.create(model=model, input=question, **ASK)
    reasoning = first.output[0]
    assert reasoning.type == "reasoning" and sealed(reasoning.model_dump())
    (call,) = [item for item in first.output if item.type == "function_call"]
    return [
        {"role": "user", "content": question},
        *(item.model_dump(exclude_none=True) for item in first.output),
        {"type": "function_call_output", "call_id": call.call_id, "output": f"sleet {marker}"},
    ]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("begun", ["claude", "gemini"])
def test_a_conversation_begun_on_another_family_goes_on_at_openai_without_its_seals(
    gpt: openai.OpenAI, simulator_url: str, begun: str, stream: bool
) -> None:
    marker = f"switch from {begun}, stream={stream}"
    history = begun_on(gpt, begun, marker)
    second = respond(gpt, stream, model="native-o4", input=history, **ASK)
    assert second.status == "completed" and f"sleet {marker}" in second.output_text
    sent = received(simulator_url, marker)[-1]
    assert sent["path"] == "/v1/responses"
    # The seals are left out; every other item goes as the client sent it.
    assert sent["json"]["input"] == [item for item in history if not sealed(item)]
    assert CLAUDES not in json.dumps(sent["json"]) and GEMINIS not in json.dumps(sent["json"])


@pytest.mark.parametrize("stream", [False, True])
def test_a_fallback_from_claude_to_openai_sends_openai_no_seal(
    gpt: openai.OpenAI, simulator_url: str, stream: bool
) -> None:
    marker = f"fall back from claude, stream={stream}"
    history = begun_on(gpt, "claude", marker)
    second = respond(gpt, stream, model="claude-to-native", input=history, **ASK)
    assert second.status == "completed" and second.model == "o4-mini"
    claude_try, openai_try = received(simulator_url, marker)[-2:]
    assert claude_try["path"] == "/v1/messages"  # Claude was sent its thinking back
    assert CLAUDES not in json.dumps(openai_try["json"])
    assert openai_try["path"] == "/v1/responses"
    assert openai_try["json"]["input"] == [item for item in history if not sealed(item)]


@pytest.mark.parametrize("model", ["claude", "gemini"])
def test_openais_encrypted_reasoning_is_not_sent_to_another_family(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    marker = f"switch to {model}"
    question = f"weather in Oslo? {marker}"
    first = gpt.responses.create(
        model="native-o4", input=question, include=["reasoning.encrypted_content"], **ASK
    )
    reasoning = first.output[0]
    assert reasoning.type == "reasoning" and reasoning.encrypted_content
    (call,) = [item for item in first.output if item.type == "function_call"]
    history: list[Any] = [
        {"role": "user", "content": question},
        *(item.model_dump(exclude_none=True) for item in first.output),
        {"type": "function_call_output", "call_id": call.call_id, "output": f"sleet {marker}"},
    ]
    second = gpt.responses.create(model=model, input=history, **ASK)
    assert second.status == "completed"
    sent = received(simulator_url, f"sleet {marker}")[-1]
    assert reasoning.encrypted_content not in json.dumps(sent["json"])


def unsealed(item: Any) -> bool:
    """Whether ``item`` is a reasoning item with no encrypted content: one OpenAI looks up."""
    return item.get("type") == "reasoning" and not item.get("encrypted_content")


@pytest.mark.parametrize("begun", ["gemini", "magistral", "compatible"])
def test_reasoning_the_gateway_made_up_is_not_sent_to_openai(
    gpt: openai.OpenAI, simulator_url: str, begun: str
) -> None:
    marker = f"unsealed from {begun}"
    question = f"tell me about Oslo {marker}"
    with gpt.responses.stream(model=begun, input=question, **SUMMARY) as events:
        first = events.get_final_response()
    assert first.status == "completed" and first.output_text
    history: list[Any] = [
        {"role": "user", "content": question},
        *(item.model_dump(exclude_none=True) for item in first.output),
        {"role": "user", "content": f"and tomorrow? {marker}"},
    ]
    made_up = [item for item in history if unsealed(item)]
    assert made_up
    for stream in (False, True):
        second = respond(gpt, stream, model="native-o4", input=history, **SUMMARY)
        assert second.status == "completed" and second.output_text
        sent = received(simulator_url, f"and tomorrow? {marker}")[-1]
        assert sent["path"] == "/v1/responses"
        kept = [item for item in history if not (sealed(item) or unsealed(item))]
        assert sent["json"]["input"] == kept
        assert GATEWAY_REASONING not in json.dumps(sent["json"])
    # Told apart by their ids: OpenAI's are hexadecimal after ``rs_``.
    assert all(item["id"].startswith(GATEWAY_REASONING) for item in made_up)


def test_openais_own_reasoning_sent_back_by_id_goes_to_openai(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    """A stored answer's reasoning item, sent back without encrypted content, is OpenAI's
    own: it goes on (the simulator looks it up)."""
    marker = "openai stored reasoning"
    question = f"tell me about Oslo {marker}"
    first = gpt.responses.create(model="native-o4", input=question, store=True)
    reasoning = first.output[0]
    assert reasoning.type == "reasoning" and not reasoning.encrypted_content
    history: list[Any] = [
        {"role": "user", "content": question},
        *(item.model_dump(exclude_none=True) for item in first.output),
        {"role": "user", "content": f"and tomorrow? {marker}"},
    ]
    second = gpt.responses.create(model="native-o4", input=history, store=True)
    assert second.status == "completed"
    sent = received(simulator_url, f"and tomorrow? {marker}")[-1]
    assert sent["json"]["input"] == history
