"""Server-side tools billed per call (web search) through a real gateway: each call charged
in the request's cost and its budget, reserved at admission, bounded where the client set no
bound, whether the answer is complete or streamed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_budgets import (
    PRICEY,
    admin,
    new_key,
    set_budget,
    spend,
    wait_settled,
)
from tests.support import CLIENT_KEY, logged_row, running_gateway

SEARCH_FEE = 500.0  # USD per 1,000 searches: half a dollar a call, well above the tokens
WINDOW = 1000  # the Responses deployment's context window
DEFAULT_CALLS = 3  # limits.default_max_tool_calls
SEARCHES = {"x-sim-searches": "2"}  # the simulated model searches twice
FAILS_AFTER_SEARCH = {"x-sim-fail-after-items": "1"}  # overloaded once its search is done


def tool_fee_config(simulator_url: str) -> dict[str, Any]:
    price = {**PRICEY, "tool_calls": {"web_search": SEARCH_FEE}}
    key = "env:TEST_UPSTREAM_KEY"
    responses = {
        "provider": "openai", "model": "gpt-4o", "api_base": f"{simulator_url}/v1",
        "api_key": key, "price": price, "responses_api": True, "context_window": WINDOW,
    }  # fmt: skip
    return {
        "upstream": {"forward_headers": ["x-sim-*"]},
        "models": [
            {
                "name": "searching-responses",
                "deployments": [
                    {
                        "provider": "openai",
                        "model": "gpt-4o",
                        "api_base": f"{simulator_url}/v1",
                        "api_key": key,
                        "price": price,
                        "responses_api": True,
                        "context_window": WINDOW,
                    }
                ],
            },
            {
                # The first searches, then fails before its answer; the second answers.
                "name": "searching-failover",
                "deployments": [
                    {**responses, "id": "fails-after-search", "headers": FAILS_AFTER_SEARCH},
                    {**responses, "id": "answers"},
                ],
                "strategy": "priority",
                "retries": 0,
            },
            {
                "name": "searching-failing",
                "deployments": [{**responses, "headers": FAILS_AFTER_SEARCH}],
                "retries": 0,
            },
            {
                "name": "searching-gemini",  # Gemini 2.x: a fee per grounded prompt
                "deployments": [
                    {
                        "provider": "gemini",
                        "model": "sim-chat",
                        "api_base": simulator_url,
                        "api_key": key,
                        "price": {**PRICEY, "tool_requests": {"web_search": SEARCH_FEE}},
                    }
                ],
            },
            {
                "name": "searching-gemini-3",  # Gemini 3: a fee per search query
                "deployments": [
                    {
                        "provider": "gemini",
                        "model": "sim-chat",
                        "api_base": simulator_url,
                        "api_key": key,
                        "price": price,
                    }
                ],
            },
            {
                "name": "searching-claude",
                "deployments": [
                    {
                        "provider": "anthropic",
                        "model": "sim-chat",
                        "api_base": simulator_url,
                        "api_key": key,
                        "price": price,
                    }
                ],
            },
        ],
        "limits": {"default_max_tool_calls": DEFAULT_CALLS},
    }


@pytest.fixture(scope="module")
def gateway(log_dir: Path, simulator_url: str) -> Iterator[str]:
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    with running_gateway(log_dir, tool_fee_config(simulator_url), env) as (url, _):
        yield url


def token_cost(input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * PRICEY["input"] + output_tokens * PRICEY["output"]) / 1e6


def test_web_searches_of_a_response_are_charged_per_call(gateway: str) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 100.0)
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    raw = client.responses.with_raw_response.create(
        model="searching-responses",
        input="what is new today",
        tools=[{"type": "web_search"}],
        max_output_tokens=20,
        extra_headers=SEARCHES,
    )
    answer = raw.parse()
    assert [item.type for item in answer.output].count("web_search_call") == 2
    assert answer.usage is not None
    expected = token_cost(answer.usage.input_tokens, answer.usage.output_tokens) + 2 * 0.5
    assert float(raw.headers["x-tollway-cost-usd"]) == pytest.approx(expected, abs=1e-6)
    # The budget's remaining header is after this very cost.
    left = float(raw.headers["x-tollway-budget-remaining-usd"])
    assert left == pytest.approx(100.0 - expected, abs=1e-6)
    # Streamed, the same calls cost the same.
    with client.responses.stream(
        model="searching-responses",
        input="what is new today",
        tools=[{"type": "web_search"}],
        max_output_tokens=20,
        extra_headers=SEARCHES,
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.usage is not None
    streamed = token_cost(final.usage.input_tokens, final.usage.output_tokens) + 2 * 0.5
    row = wait_settled(gateway, key_id)
    assert row["spent_usd"] == pytest.approx(expected + streamed, abs=1e-6)


def test_a_search_done_before_a_stream_fails_over_is_charged(gateway: str) -> None:
    # The first deployment's stream searched (its web_search_call item done, which OpenAI
    # bills), then failed before its answer: within the stream's held head, so the request
    # failed over, and that search was charged to no one.
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 100.0)
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    asked: Any = {"input": "what is new today", "tools": [{"type": "web_search"}]}
    with client.responses.stream(
        model="searching-failover", max_output_tokens=20, **asked
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert [item.type for item in final.output].count("web_search_call") == 1
    assert final.usage is not None
    answered = token_cost(final.usage.input_tokens, final.usage.output_tokens) + 0.5
    row = wait_settled(gateway, key_id)
    assert row["spent_usd"] == pytest.approx(answered + 0.5, abs=1e-6)
    # Where no candidate answers, the client is still charged the search that was made.
    with (
        pytest.raises(openai.APIStatusError) as caught,
        client.responses.stream(
            model="searching-failing", max_output_tokens=20, **asked
        ) as failing,
    ):
        for _ in failing:
            pass
    assert caught.value.status_code == 503
    row = wait_settled(gateway, key_id)
    assert row["spent_usd"] == pytest.approx(answered + 1.0, abs=1e-6)


def test_claude_web_searches_are_charged_per_call(gateway: str) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 100.0)
    client = anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0)
    tools: Any = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]
    raw = client.messages.with_raw_response.create(
        model="searching-claude",
        max_tokens=20,
        messages=[{"role": "user", "content": "what is new today"}],
        tools=tools,
        extra_headers=SEARCHES,
    )
    message = raw.parse()
    assert message.usage.server_tool_use is not None
    assert message.usage.server_tool_use.web_search_requests == 2
    expected = token_cost(message.usage.input_tokens, message.usage.output_tokens) + 2 * 0.5
    assert float(raw.headers["x-tollway-cost-usd"]) == pytest.approx(expected, abs=1e-6)
    with client.messages.stream(
        model="searching-claude",
        max_tokens=20,
        messages=[{"role": "user", "content": "what is new today"}],
        tools=tools,
        extra_headers=SEARCHES,
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_message()
    assert final.usage.server_tool_use is not None
    assert final.usage.server_tool_use.web_search_requests == 2
    streamed = token_cost(final.usage.input_tokens, final.usage.output_tokens) + 2 * 0.5
    row = wait_settled(gateway, key_id)
    assert row["spent_usd"] == pytest.approx(expected + streamed, abs=1e-6)


def test_searches_are_reserved_and_bounded_so_a_budget_is_never_overshot(gateway: str) -> None:
    # The model would search 50 times; the client set no bound, so the gateway bounds the
    # calls to limits.default_max_tool_calls and reserves that many at the fee.
    eager = {"x-sim-searches": "50"}
    key_id, key = new_key(gateway)
    worst = (WINDOW * PRICEY["input"] + 20 * PRICEY["output"]) / 1e6 + DEFAULT_CALLS * 0.5
    set_budget(gateway, key_id, 100.0)
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    with client.responses.with_streaming_response.create(
        model="searching-responses",
        input="search as much as you like",
        tools=[{"type": "web_search"}],
        max_output_tokens=20,
        stream=True,
        extra_headers=eager,
    ) as response:
        held = 100.0 - float(response.headers["x-tollway-budget-remaining-usd"])
        events = [line for line in response.iter_lines() if "web_search_call" in line]
    assert held == pytest.approx(worst, abs=1e-6)
    assert sum('"response.output_item.done"' in line for line in events) == DEFAULT_CALLS
    # A budget that pays for the tokens but not the bound's searches refuses the request.
    poor_id, poor = new_key(gateway)
    set_budget(gateway, poor_id, worst - 0.01)
    broke = openai.OpenAI(base_url=gateway + "/v1", api_key=poor, max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        broke.responses.create(
            model="searching-responses",
            input="search",
            tools=[{"type": "web_search"}],
            max_output_tokens=20,
            extra_headers=eager,
        )
    assert caught.value.code == "budget_exceeded"
    assert spend(gateway, poor_id)["spent_usd"] == 0
    # A looping client stops within its budget, fees included.
    loop_id, loop = new_key(gateway)
    limit = 3 * worst
    set_budget(gateway, loop_id, limit)
    looping = anthropic.Anthropic(base_url=gateway, api_key=loop, max_retries=0)
    costs: list[float] = []
    with pytest.raises(anthropic.RateLimitError):
        for _ in range(30):
            raw = looping.messages.with_raw_response.create(
                model="searching-claude",
                max_tokens=20,
                messages=[{"role": "user", "content": "search again"}],
                tools=[{"type": "web_search_20250305", "name": "web_search"}],
                extra_headers=eager,
            )
            usage = raw.parse().usage
            assert usage.server_tool_use is not None
            assert usage.server_tool_use.web_search_requests == DEFAULT_CALLS
            costs.append(float(raw.headers["x-tollway-cost-usd"]))
    assert len(costs) >= 2
    row = wait_settled(gateway, loop_id)
    assert row["spent_usd"] <= limit
    assert row["spent_usd"] == pytest.approx(sum(costs), abs=1e-6)


def test_a_clients_own_bound_on_searches_is_what_is_reserved(gateway: str) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 100.0)
    client = anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0)
    tools: Any = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}]
    with client.messages.with_streaming_response.create(
        model="searching-claude",
        max_tokens=20,
        messages=[{"role": "user", "content": "one search only"}],
        tools=tools,
        stream=True,
        extra_headers={"x-sim-searches": "4"},
    ) as response:
        held = 100.0 - float(response.headers["x-tollway-budget-remaining-usd"])
        for _ in response.iter_lines():
            pass
    counted = held - 1 * 0.5  # one search reserved; the rest is the tokens' worst case
    assert 0 < counted < 1 * 0.5
    row = wait_settled(gateway, key_id)
    assert row["spent_usd"] > 0.5  # the one search made, and its tokens
    assert row["spent_usd"] < 2 * 0.5


@pytest.mark.parametrize(
    ("model", "fees"), [("searching-gemini", 1), ("searching-gemini-3", 2)]
)  # fmt: skip
def test_gemini_grounding_is_charged_per_prompt_or_per_query(
    gateway: str, model: str, fees: int
) -> None:
    # An OpenAI client's web_search_options is Gemini's Google Search tool; the model runs
    # two queries (groundingMetadata.webSearchQueries). Gemini 2.x bills the grounded prompt
    # once, Gemini 3 each query.
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 100.0)
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    messages: Any = [{"role": "user", "content": "what is new today"}]
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=messages, max_tokens=20, web_search_options={},
        extra_headers=SEARCHES,
    )  # fmt: skip
    usage = raw.parse().usage
    assert usage is not None
    expected = token_cost(usage.prompt_tokens, usage.completion_tokens) + fees * 0.5
    assert float(raw.headers["x-tollway-cost-usd"]) == pytest.approx(expected, abs=1e-6)
    stream = client.chat.completions.create(
        model=model, messages=messages, max_tokens=20, web_search_options={}, stream=True,
        stream_options={"include_usage": True}, extra_headers=SEARCHES,
    )  # fmt: skip
    last = [chunk for chunk in stream][-1].usage
    assert last is not None
    streamed = token_cost(last.prompt_tokens, last.completion_tokens) + fees * 0.5
    row = wait_settled(gateway, key_id)
    assert row["spent_usd"] == pytest.approx(expected + streamed, abs=1e-6)
    # Without the tool nothing searches, and no fee is charged.
    plain = client.chat.completions.with_raw_response.create(
        model=model, messages=messages, max_tokens=20, extra_headers=SEARCHES
    )
    usage = plain.parse().usage
    assert usage is not None
    alone = token_cost(usage.prompt_tokens, usage.completion_tokens)
    assert float(plain.headers["x-tollway-cost-usd"]) == pytest.approx(alone, abs=1e-6)


@pytest.mark.parametrize(
    ("model", "reserved"), [("searching-gemini", 1), ("searching-gemini-3", DEFAULT_CALLS)]
)  # fmt: skip
def test_gemini_grounding_is_reserved_under_a_budget(
    gateway: str, model: str, reserved: int
) -> None:
    # Gemini takes no bound on its searches: a grounded prompt is reserved once, queries
    # (Gemini 3) as limits.default_max_tool_calls of them.
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 100.0)
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    messages: Any = [{"role": "user", "content": "search"}]
    with client.chat.completions.with_streaming_response.create(
        model=model, messages=messages, max_tokens=20, web_search_options={}, stream=True,
    ) as response:  # fmt: skip
        held = 100.0 - float(response.headers["x-tollway-budget-remaining-usd"])
        for _ in response.iter_lines():
            pass
    fees = held - reserved * 0.5  # the rest is the tokens' worst case
    assert 0 < fees < 0.5
    # A budget that pays for the tokens but not the reserved fees refuses the request.
    poor_id, poor = new_key(gateway)
    set_budget(gateway, poor_id, held - 0.01)
    broke = openai.OpenAI(base_url=gateway + "/v1", api_key=poor, max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        broke.chat.completions.create(
            model=model, messages=messages, max_tokens=20, web_search_options={}
        )
    assert caught.value.code == "budget_exceeded"


@pytest.mark.parametrize("model", ["searching-gemini", "searching-gemini-3"])
def test_the_estimate_of_a_search_is_what_admission_reserves(gateway: str, model: str) -> None:
    # /v1/estimate priced the tokens alone: it said a request was within a budget that
    # admission then refused for its searches' fees (cost_usd.max $0.1 where $0.6 was held).
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 100.0)
    body: Any = {
        "model": model,
        "messages": [{"role": "user", "content": "search"}],
        "max_tokens": 20,
        "web_search_options": {},
    }
    headers = {"authorization": f"Bearer {key}"}
    estimate = httpx.post(gateway + "/v1/estimate", json=body, headers=headers).json()
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    with client.chat.completions.with_streaming_response.create(**body, stream=True) as response:
        held = 100.0 - float(response.headers["x-tollway-budget-remaining-usd"])
        for _ in response.iter_lines():
            pass
    assert estimate["cost_usd"]["max"] == pytest.approx(held, abs=2e-6)
    (row,) = estimate["deployments"]
    assert row["max_usd"] == estimate["cost_usd"]["max"]
    # A budget that pays for the tokens but not the fees: the estimate says so.
    poor_id, poor = new_key(gateway)
    set_budget(gateway, poor_id, held - 0.01)
    headers = {"authorization": f"Bearer {poor}"}
    assert not httpx.post(gateway + "/v1/estimate", json=body, headers=headers).json()[
        "within_budget"
    ]


def test_search_options_gemini_cannot_take_are_a_400_naming_them(gateway: str) -> None:
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=new_key(gateway)[1], max_retries=0)
    messages: Any = [{"role": "user", "content": "search"}]
    location: Any = {"type": "approximate", "approximate": {"country": "GB"}}
    for options, param in (
        ({"user_location": location}, "web_search_options.user_location"),
        ({"search_context_size": "low"}, "web_search_options.search_context_size"),
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model="searching-gemini", messages=messages, web_search_options=options
            )
        assert caught.value.param == param, caught.value.message


def test_the_request_log_and_reports_show_tool_calls_and_what_they_cost(gateway: str) -> None:
    key_id, key = new_key(gateway)
    client = anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0)
    tools: Any = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]
    searched = client.messages.with_raw_response.create(
        model="searching-claude", max_tokens=20, tools=tools, extra_headers=SEARCHES,
        messages=[{"role": "user", "content": "what is new today"}],
    )  # fmt: skip
    plain = client.messages.with_raw_response.create(
        model="searching-claude", max_tokens=20,
        messages=[{"role": "user", "content": "hello"}],
    )  # fmt: skip
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    row = logged_row(gateway, searched.headers["x-request-id"], headers)
    assert (row["tool_calls"], row["tool_cost_micros"]) == (2, 1_000_000)
    assert row["tool_cost_usd"] == 1.0
    assert row["cost_micros"] > row["tool_cost_micros"]  # the tokens on top
    row = logged_row(gateway, plain.headers["x-request-id"], headers)
    assert (row["tool_calls"], row["tool_cost_micros"], row["tool_cost_usd"]) == (0, 0, 0.0)
    report = admin(gateway, "GET", f"/admin/reports/usage?group_by=key&key={key_id}")["data"]
    assert len(report) == 1
    assert (report[0]["tool_calls"], report[0]["tool_cost_usd"]) == (2, 1.0)
    assert report[0]["cost_usd"] > 1.0
    csv = httpx.get(gateway + f"/admin/logs?key={key_id}&format=csv", headers=headers).text
    assert csv.splitlines()[0].endswith("tool_calls,tool_cost_micros,tool_cost_usd")
