"""A Responses client served by OpenAI's own Responses API (``responses_api``), through the
real ``openai`` SDK against a gateway process and the simulator's ``POST /v1/responses``: the
upstream's answer and events reach the client as they came (its reasoning summary and
encrypted reasoning, which the canonical path cannot carry), usage is costed and logged, a
failing deployment falls over (to another Responses upstream or to another family), an
upstream 400 passes through, and an OpenAI-compatible server still gets Chat Completions."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, running_gateway

PRICE = {"input": 1000.0, "output": 4000.0}  # USD per 1M tokens: whole micro-dollars a token
FAULT = {"x-sim-fault": "status:503"}
WEATHER_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "strict": False,
}


def upstream_config(simulator_url: str) -> dict[str, Any]:
    base, key = f"{simulator_url}/v1", "env:TEST_UPSTREAM_KEY"
    native = {
        "provider": "openai", "api_base": base, "api_key": key, "price": PRICE,
        "responses_api": True,
    }  # fmt: skip
    claude = {"provider": "anthropic", "model": "sim-chat", "api_base": simulator_url}
    return {
        "upstream": {
            "timeouts": {"connect": "2s", "first_byte": "5s", "total": "20s"},
            "forward_headers": ["x-sim-*"],
        },
        "auth": {"reconcile_interval": "1h"},
        # A rate limit or overload the tests make rests the deployment no longer than this,
        # whatever wait it asks for (they follow each other within milliseconds).
        "routing": {"rate_limit_cooldown": "1ms", "retry_after_max": "1ms"},
        "models": [
            {"name": "native-o4", "deployments": [{**native, "model": "o4-mini", "id": "o4"}]},
            {"name": "native-4o", "deployments": [{**native, "model": "gpt-4o", "id": "4o"}]},
            {"name": "native-limited", "deployments": [{**native, "model": "gpt-4o"}]},
            {"name": "native-failover", "deployments": [
                {**native, "model": "o4-mini", "id": "broken", "headers": FAULT},
                {**native, "model": "o4-mini", "id": "healthy"}]},
            {"name": "native-to-claude", "deployments": [
                {**native, "model": "o4-mini", "id": "broken-too", "headers": FAULT},
                {**claude, "api_key": key, "id": "claude", "price": PRICE}]},
            {"name": "compatible", "deployments": [{
                "provider": "openai", "model": "o4-mini", "api_base": base, "api_key": key,
                "id": "compatible", "price": PRICE}]},
        ],
        "telemetry": {"request_log": {"flush_interval": "100ms"}},
    }  # fmt: skip


@pytest.fixture(scope="module")
def gateway(log_dir: Path, simulator_url: str) -> Iterator[str]:
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    with running_gateway(log_dir, upstream_config(simulator_url), env) as (url, _):
        yield url


@pytest.fixture(scope="module")
def client(gateway: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0) as c:
        yield c


def question(words: str) -> str:
    """A question no other test asks, to find its request in the simulator's log."""
    return f"{words} {uuid.uuid4().hex[:10]}"


def received(simulator_url: str, marker: str) -> list[dict[str, Any]]:
    """The requests the simulator received that mention ``marker``, oldest first."""
    requests = httpx.get(simulator_url + "/_sim/requests").json()
    return [r for r in requests if marker in str(r["json"])]


def logged(gateway: str, request_id: str, timeout: float = 15.0) -> dict[str, Any]:
    """The request log's record of ``request_id`` once it is written."""
    deadline = time.monotonic() + timeout
    while True:
        rows = httpx.get(
            gateway + "/admin/logs",
            params={"limit": "200", "since": "10m"},
            headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        ).json()["data"]
        for row in rows:
            if row["request_id"] == request_id:
                return dict(row)
        assert time.monotonic() < deadline, f"{request_id} was not logged"
        time.sleep(0.1)


def micros(cost: str) -> int:
    return round(float(cost) * 1_000_000)


def test_an_answer_comes_from_the_responses_api_as_it_came(
    client: openai.OpenAI, gateway: str, simulator_url: str
) -> None:
    asked = question("reason about the tides")
    raw = client.responses.with_raw_response.create(
        model="native-o4",
        input=asked,
        reasoning={"effort": "low", "summary": "auto"},
        include=["reasoning.encrypted_content"],
        metadata={"ticket": "42"},
    )
    response = raw.parse()
    (call,) = received(simulator_url, asked)
    assert call["method"] == "POST" and call["path"] == "/v1/responses"
    assert call["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"  # never the client's
    # The client's body, the model named as the deployment names it.
    assert call["json"] == {
        "model": "o4-mini",
        "input": asked,
        "reasoning": {"effort": "low", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "metadata": {"ticket": "42"},
    }
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and reasoning.encrypted_content  # only OpenAI's own
    assert "".join(p.text for p in reasoning.summary).startswith("Simulated reasoning about:")
    assert message.type == "message"
    assert response.output_text.startswith(f"Simulated reply to: {asked}")
    assert response.model == "o4-mini" and response.metadata == {"ticket": "42"}
    usage = response.usage
    assert usage is not None and usage.output_tokens_details.reasoning_tokens > 0
    cost = usage.input_tokens * 1000 + usage.output_tokens * 4000
    assert micros(raw.headers["x-tollway-cost-usd"]) == cost
    row = logged(gateway, raw.headers["x-request-id"])
    assert (row["deployment_id"], row["endpoint"], row["status"]) == ("o4", "responses", 200)
    assert (row["input_tokens"], row["output_tokens"]) == (usage.input_tokens, usage.output_tokens)
    assert row["cost_micros"] == cost and row["usage_estimated"] is False


def test_a_stream_comes_event_for_event_in_openais_order(
    client: openai.OpenAI, gateway: str
) -> None:
    asked = question("stream your reasoning")
    with client.responses.with_streaming_response.create(
        model="native-o4", input=asked, reasoning={"summary": "detailed"}, stream=True
    ) as raw:
        request_id = raw.headers["x-request-id"]
        lines = list(raw.iter_lines())
    cost_comment = [line for line in lines if line.startswith(": x-tollway-cost-usd=")]
    with client.responses.stream(
        model="native-o4", input=asked, reasoning={"summary": "detailed"}
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    summary_deltas = kinds.count("response.reasoning_summary_text.delta")
    text_deltas = kinds.count("response.output_text.delta")
    assert summary_deltas > 1 and text_deltas > 1
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        *["response.reasoning_summary_text.delta"] * summary_deltas,
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * text_deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0].response.id == final.id  # the upstream's own response, not the gateway's
    assert final.output_text.startswith(f"Simulated reply to: {asked}")
    usage = final.usage
    assert usage is not None and usage.output_tokens_details.reasoning_tokens > 0
    cost = usage.input_tokens * 1000 + usage.output_tokens * 4000
    (comment,) = cost_comment
    assert micros(comment.split("=", 1)[1]) == cost
    row = logged(gateway, request_id)
    assert (row["deployment_id"], row["stream"], row["cost_micros"]) == ("o4", True, cost)
    assert (row["input_tokens"], row["output_tokens"]) == (usage.input_tokens, usage.output_tokens)
    assert row["ttft_ms"] is not None


def test_function_calls_come_from_the_responses_api(client: openai.OpenAI) -> None:
    asked = question("what is the weather in Oslo")
    response = client.responses.create(model="native-4o", input=asked, tools=[WEATHER_TOOL])
    (call,) = response.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.call_id.startswith("call_") and "city" in call.arguments
    with client.responses.stream(model="native-4o", input=asked, tools=[WEATHER_TOOL]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert final.output[0].type == "function_call"


def test_log_probabilities_are_asked_of_the_responses_api_as_sent(
    client: openai.OpenAI, simulator_url: str
) -> None:
    # They were a 400 before any upstream, though OpenAI's Responses API answers them.
    asked = question("score these words")
    include: Any = ["message.output_text.logprobs"]
    response = client.responses.create(
        model="native-4o", input=asked, include=include, top_logprobs=2
    )
    assert response.status == "completed"
    (sent,) = received(simulator_url, asked)
    assert sent["path"].endswith("/responses")
    assert sent["json"]["include"] == include and sent["json"]["top_logprobs"] == 2


def test_a_max_output_tokens_openai_refuses_is_refused_before_it(
    client: openai.OpenAI, simulator_url: str
) -> None:
    # The client's body goes to OpenAI as sent: it answered this 400 itself, at the cost of a
    # call; refused here alike, in its words, whichever deployment the router would pick.
    asked = question("too short a limit")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="native-4o", input=asked, max_output_tokens=10)
    assert caught.value.param == "max_output_tokens"
    assert caught.value.code == "integer_below_min_value"
    assert "Expected a value >= 16, but got 10 instead." in caught.value.message
    assert received(simulator_url, asked) == []


@pytest.mark.parametrize("stream", [False, True])
def test_a_failing_deployment_falls_over_to_the_next(
    client: openai.OpenAI, gateway: str, simulator_url: str, stream: bool
) -> None:
    asked = question(f"fail over, stream {stream}")
    body = {"model": "native-failover", "input": asked, "reasoning": {"summary": "auto"}}
    if stream:
        with client.responses.with_streaming_response.create(**body, stream=True) as raw:
            request_id = raw.headers["x-request-id"]
            assert any("response.completed" in line for line in raw.iter_lines())
    else:
        raw_answer = client.responses.with_raw_response.create(**body)
        request_id = raw_answer.headers["x-request-id"]
        assert raw_answer.parse().output[0].type == "reasoning"
    calls = received(simulator_url, asked)
    assert [c["path"] for c in calls] == ["/v1/responses", "/v1/responses"]
    assert calls[0]["headers"]["x-sim-fault"] == "status:503"
    row = logged(gateway, request_id)
    assert (row["deployment_id"], row["attempts"], row["status"]) == ("healthy", 2, 200)


def test_a_failover_to_another_family_is_answered_through_the_canonical_path(
    client: openai.OpenAI, gateway: str, simulator_url: str
) -> None:
    asked = question("fail over to claude")
    with client.responses.stream(model="native-to-claude", input=asked) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert final.output_text.startswith(f"Simulated reply to: {asked}")
    assert [c["path"] for c in received(simulator_url, asked)] == ["/v1/responses", "/v1/messages"]
    response = client.responses.create(model="native-to-claude", input=asked + " again")
    assert response.output_text.startswith(f"Simulated reply to: {asked} again")


def test_an_upstream_400_passes_through_in_openais_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="native-4o", input=question("think hard"), reasoning={"effort": "high"}
        )
    error = caught.value
    assert error.status_code == 400
    assert error.code == "unsupported_parameter" and error.param == "reasoning.effort"
    assert "not supported with this model" in error.message


def test_an_error_mid_stream_ends_it_in_the_responses_dialects_words(gateway: str) -> None:
    body = {"model": "native-o4", "input": question("break mid-stream"), "stream": True}
    headers = {"Authorization": f"Bearer {CLIENT_KEY}", "x-sim-fault": "error-after:3"}
    with httpx.stream("POST", gateway + "/v1/responses", json=body, headers=headers) as raw:
        assert raw.status_code == 200
        lines = list(raw.iter_lines())
    events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    error, failed = events[-2:]
    assert (error["type"], failed["type"]) == ("error", "response.failed")
    assert error["code"] == "server_is_overloaded"
    # The upstream's own response, failed, with the items it completed.
    assert failed["response"]["id"] == events[0]["response"]["id"]
    assert failed["response"]["status"] == "failed"
    assert "response.completed" not in [e["type"] for e in events]


RATE_LIMITED = {"code": "rate_limit_exceeded", "message": "Rate limit reached", "param": None}


@pytest.mark.parametrize(
    "upstream_event",
    [
        RATE_LIMITED,  # OpenAI's error event: the fields beside its type
        {"error": {**RATE_LIMITED, "type": "requests"}},  # nested, as an error body
        {"type": "response.failed", "response": {"status": "failed", "error": RATE_LIMITED}},
    ],
)
def test_a_rate_limit_the_stream_reports_is_a_rate_limit(
    gateway: str, upstream_event: dict[str, Any]
) -> None:
    # A Responses upstream's failure events were all a 502 upstream_error (with the code
    # rate_limit_exceeded), and a response.failed that said server_error: unlike the same
    # event on a Chat Completions stream, which is a 429 (and rests the deployment).
    fault = {"x-sim-stream-error": json.dumps(upstream_event)}
    headers = {"Authorization": f"Bearer {CLIENT_KEY}", **fault}
    body = {"model": "native-limited", "input": question("rate limited"), "stream": True}
    before = {**headers, "x-sim-fault": "error-after:0"}  # before any content: its status
    refused = httpx.post(gateway + "/v1/responses", json=body, headers=before)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    # The 429 rested the deployment for routing.retry_after_max (1 ms in these tests): a next
    # request sent within it is refused at once, which is not what this test is about.
    time.sleep(0.02)
    after = {**headers, "x-sim-fault": "error-after:2"}  # mid-stream: the closing events
    with httpx.stream("POST", gateway + "/v1/responses", json=body, headers=after) as raw:
        assert raw.status_code == 200
        events = [json.loads(line[6:]) for line in raw.iter_lines() if line.startswith("data: ")]
    error, failed = events[-2:]
    assert (error["type"], error["code"]) == ("error", "rate_limit_exceeded")
    assert failed["type"] == "response.failed"
    assert failed["response"]["error"]["code"] == "rate_limit_exceeded"


def test_an_overload_before_the_first_content_is_a_503(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.responses.create(
            model="native-4o",
            input=question("overloaded"),
            stream=True,
            extra_headers={"x-sim-fault": "error-after:0"},
        )
    assert caught.value.status_code == 503 and caught.value.code == "server_is_overloaded"


def test_a_compatible_server_still_gets_chat_completions(
    client: openai.OpenAI, simulator_url: str
) -> None:
    asked = question("through chat completions")
    response = client.responses.create(model="compatible", input=asked)
    assert response.output_text.startswith(f"Simulated reply to: {asked}")
    (call,) = received(simulator_url, asked)
    assert call["path"] == "/v1/chat/completions"


@pytest.fixture(scope="module")
def capturing(log_dir: Path, simulator_url: str) -> Iterator[str]:
    """A gateway that keeps every request's bodies: a stage that reads answers."""
    config = upstream_config(simulator_url)
    config["telemetry"]["request_log"]["bodies"] = {"enabled": True}
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, _):
        yield url


@pytest.mark.parametrize("stream", [False, True])
def test_a_stage_that_reads_answers_reads_the_upstreams_as_it_goes_on_as_it_came(
    capturing: str, stream: bool
) -> None:
    asked = question(f"keep my body, stream {stream}")
    body = {
        "model": "native-o4", "input": asked, "stream": stream,
        "reasoning": {"summary": "auto"}, "include": ["reasoning.encrypted_content"],
    }  # fmt: skip
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    answer = httpx.post(capturing + "/v1/responses", json=body, headers=headers, timeout=30)
    assert answer.status_code == 200
    if stream:
        events = [json.loads(line[6:]) for line in answer.text.splitlines() if line[:6] == "data: "]
        final = events[-1]["response"]
    else:
        final = answer.json()
    assert final["output"][0]["encrypted_content"]  # the upstream's answer, as it came
    row = logged(capturing, answer.headers["x-request-id"])
    assert f"Simulated reply to: {asked}" in json.dumps(row["response"])


def test_a_conversation_is_compacted_by_the_responses_api(
    client: openai.OpenAI, gateway: str, simulator_url: str
) -> None:
    # It was a 405 saying GET and DELETE were allowed (the path read as a response id).
    asked = question("compact this conversation")
    history: Any = [
        {"role": "user", "content": asked},
        {"role": "assistant", "content": "an earlier answer"},
    ]
    raw = client.responses.with_raw_response.compact(
        model="native-4o", input=history, instructions="be brief"
    )
    compacted = raw.parse()
    (call,) = received(simulator_url, asked)
    assert call["path"] == "/v1/responses/compact"
    assert call["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert call["json"] == {"model": "gpt-4o", "input": history, "instructions": "be brief"}
    assert compacted.object == "response.compaction"
    user, sealed = compacted.output
    assert user.type == "message" and sealed.type == "compaction" and sealed.encrypted_content
    usage = compacted.usage
    cost = usage.input_tokens * 1000 + usage.output_tokens * 4000
    assert micros(raw.headers["x-tollway-cost-usd"]) == cost
    row = logged(gateway, raw.headers["x-request-id"])
    assert (row["deployment_id"], row["status"], row["cost_micros"]) == ("4o", 200, cost)
    # The compaction goes on in a later request's input: only a Responses upstream reads it.
    later = [sealed.model_dump(exclude_none=True), {"role": "user", "content": "and now?"}]
    assert client.responses.create(model="native-4o", input=later).status == "completed"
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="compatible", input=later)
    assert caught.value.param == "input[0].type" and "compaction" in caught.value.message


def test_compaction_is_refused_where_no_deployment_can_compact(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.compact(model="compatible", input="x")
    assert caught.value.param == "model" and "responses_api" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:  # compaction takes no such field
        client.responses.compact(model="native-4o", input="x", extra_body={"stream": True})
    assert (caught.value.param, caught.value.code) == ("stream", "unknown_parameter")


def test_a_stored_response_is_compacted_from_its_id_alone(client: openai.OpenAI) -> None:
    stored = client.responses.create(model="native-4o", input=question("remember this"))
    compacted = client.responses.compact(model="native-4o", previous_response_id=stored.id)
    assert compacted.output[-1].type == "compaction"
    assert compacted.usage.input_tokens >= stored.usage.input_tokens  # its context, counted
