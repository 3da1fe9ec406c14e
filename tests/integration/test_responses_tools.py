"""What only OpenAI's Responses API serves (built-in tools, ``previous_response_id``) through
the real ``openai`` SDK against a gateway process and the simulator: a model group with a
deployment that speaks the Responses API sends such a request only to it, passing over a
Claude deployment tried before it; a group without one answers a 400 naming the field, before
any upstream is called."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_responses_upstream import PRICE, logged, micros, question, received
from tests.support import CLIENT_KEY, running_gateway

# A search only OpenAI runs: at another context size than "medium", Claude's search (which
# serves a plain one: test_responses_web_search) has no counterpart.
SEARCH: Any = [{"type": "web_search", "search_context_size": "high"}]
FILES: Any = [{"type": "file_search", "vector_store_ids": ["vs_1"]}]


def tools_config(simulator_url: str) -> dict[str, Any]:
    key = "env:TEST_UPSTREAM_KEY"
    claude = {
        "provider": "anthropic", "model": "sim-chat", "api_base": simulator_url, "api_key": key,
        "price": PRICE,
    }  # fmt: skip
    native = {
        "provider": "openai", "model": "gpt-4o", "api_base": f"{simulator_url}/v1",
        "api_key": key, "price": PRICE, "responses_api": True,
    }  # fmt: skip
    compatible = {**native, "responses_api": False}
    return {
        "upstream": {"timeouts": {"connect": "2s", "first_byte": "5s", "total": "20s"}},
        "auth": {"reconcile_interval": "1h"},
        "models": [
            # Claude first: a request any candidate can serve goes there (priority).
            {"name": "mixed", "deployments": [
                {**claude, "id": "claude"}, {**native, "id": "native"}]},
            {"name": "without", "deployments": [
                {**claude, "id": "claude-only"}, {**compatible, "id": "compatible"}]},
        ],
        "telemetry": {"request_log": {"flush_interval": "100ms"}},
    }  # fmt: skip


@pytest.fixture(scope="module")
def gateway(log_dir: Path, simulator_url: str) -> Iterator[str]:
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    with running_gateway(log_dir, tools_config(simulator_url), env) as (url, _):
        yield url


@pytest.fixture(scope="module")
def client(gateway: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0) as c:
        yield c


def test_a_built_in_tool_goes_to_the_deployment_that_speaks_the_responses_api(
    client: openai.OpenAI, gateway: str, simulator_url: str
) -> None:
    asked = question("search for the tides")
    plain = client.responses.with_raw_response.create(model="mixed", input=asked)
    assert plain.headers["x-tollway-deployment"] == "claude"  # any candidate can serve it
    raw = client.responses.with_raw_response.create(model="mixed", input=asked, tools=SEARCH)
    response = raw.parse()
    search, message = response.output
    assert search.type == "web_search_call" and search.action.type == "search"
    assert message.type == "message"
    assert response.output_text.startswith(f"Simulated reply to: {asked}")
    calls = received(simulator_url, asked)
    assert [c["path"] for c in calls] == ["/v1/messages", "/v1/responses"]
    assert calls[1]["json"] == {"model": "gpt-4o", "input": asked, "tools": SEARCH}
    # Charged for the tokens the upstream reports (the search's results among the input),
    # and for the search itself: the catalog's fee for gpt-4o's web search ($10 per 1,000
    # calls), which a config price naming no tool fees keeps.
    usage = response.usage
    assert usage is not None
    cost = usage.input_tokens * 1000 + usage.output_tokens * 4000 + 10_000
    assert micros(raw.headers["x-tollway-cost-usd"]) == cost
    row = logged(gateway, raw.headers["x-request-id"])
    assert (row["deployment_id"], row["endpoint"], row["status"]) == ("native", "responses", 200)
    assert (row["input_tokens"], row["cost_micros"]) == (usage.input_tokens, cost)


def test_a_streamed_built_in_tool_goes_there_too(client: openai.OpenAI, simulator_url: str) -> None:
    asked = question("stream a search")
    with client.responses.stream(model="mixed", input=asked, tools=SEARCH) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.web_search_call.searching" in kinds and kinds[-1] == "response.completed"
    assert [item.type for item in final.output] == ["web_search_call", "message"]
    assert [c["path"] for c in received(simulator_url, asked)] == ["/v1/responses"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_built_in_tool_without_such_a_deployment_is_a_400_naming_it(
    client: openai.OpenAI, simulator_url: str, stream: bool
) -> None:
    asked = question(f"search nowhere, stream {stream}")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="without", input=asked, tools=[{"type": "function", "name": "f"}, *FILES],
            stream=stream,
        )  # fmt: skip
    error = caught.value
    assert error.param == "tools[1].type"
    assert "'tools[1].type' 'file_search' is a tool of OpenAI's Responses API" in error.message
    assert "Model 'without' has no deployment that speaks OpenAI's Responses API" in error.message
    assert received(simulator_url, asked) == []


@pytest.mark.parametrize("stream", [False, True])
def test_previous_response_id_continues_at_the_responses_deployment(
    client: openai.OpenAI, simulator_url: str, stream: bool
) -> None:
    asked = question(f"remember seven, stream {stream}")
    first = client.responses.create(model="mixed", input=asked, tools=SEARCH)
    body: Any = {"model": "mixed", "input": asked + " again", "previous_response_id": first.id}
    if stream:
        with client.responses.stream(**body) as events:
            then = events.get_final_response()
    else:
        then = client.responses.create(**body)
    assert then.previous_response_id == first.id
    assert then.output_text.startswith(f"Simulated reply to: {asked} again")
    assert first.usage is not None and then.usage is not None
    assert then.usage.input_tokens > first.usage.total_tokens  # the upstream counted it all
    calls = received(simulator_url, asked)
    assert [c["path"] for c in calls] == ["/v1/responses", "/v1/responses"]
    assert calls[1]["json"]["previous_response_id"] == first.id


def test_previous_response_id_elsewhere_is_a_400_or_the_upstreams(
    client: openai.OpenAI, simulator_url: str
) -> None:
    asked = question("continue nothing")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="without", input=asked, previous_response_id="resp_1")
    assert caught.value.param == "previous_response_id"
    message = caught.value.message
    assert "'previous_response_id' continues a response stored by the upstream" in message
    assert received(simulator_url, asked) == []
    # An id the upstream never stored is its own 400, passed on.
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="mixed", input=asked, previous_response_id="resp_unknown")
    assert caught.value.code == "previous_response_not_found"
