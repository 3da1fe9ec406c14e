"""A Responses client's ``web_search`` tool served by Claude's own web search, through the real
``openai`` SDK against a gateway process and the simulator: the tool is sent as Anthropic's
``web_search_20250305``, the answer comes back as a ``web_search_call`` item before the message
and ``url_citation`` annotations whose indexes slice the cited text, complete or streamed, and
the search is charged; a setting only OpenAI's search has, or a family that does not translate
the tool, is still a 400 naming it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.integration.test_budgets import new_key, set_budget
from tests.integration.test_responses_upstream import PRICE, micros, question, received
from tests.support import CLIENT_KEY, running_gateway
from tollway.simulator.anthropic_api import SEARCH_CITED

SEARCH_FEE = 10.0  # USD per 1,000 searches: 10,000 micro-dollars a search
WINDOW = 2000  # the context window of "claude-windowed"
DEFAULT_CALLS = 10  # limits.default_max_tool_calls
RESULT_URL = "https://example.com/simulated-result"
SEARCHES = {"x-sim-searches": "2"}  # the simulator runs two queries


def search_config(simulator_url: str) -> dict[str, Any]:
    key = "env:TEST_UPSTREAM_KEY"
    price = {**PRICE, "tool_calls": {"web_search": SEARCH_FEE}}
    claude = {
        "provider": "anthropic", "model": "sim-chat", "api_base": simulator_url, "api_key": key,
        "price": price,
    }  # fmt: skip
    gemini = {
        "provider": "gemini", "model": "sim-chat", "api_base": simulator_url, "api_key": key,
        "price": {**price, "tool_requests": {"web_search": 0}},
    }  # fmt: skip
    vertex = {
        **gemini, "provider": "vertex_ai",
        "api_base": f"{simulator_url}/v1/projects/test/locations/europe-west4",
    }  # fmt: skip
    mistral = {
        "provider": "mistral", "model": "sim-chat", "api_base": f"{simulator_url}/mistral/v1",
        "api_key": key,
    }  # fmt: skip
    return {
        "upstream": {
            "timeouts": {"connect": "2s", "first_byte": "5s", "total": "20s"},
            "forward_headers": ["x-sim-*"],
        },
        "auth": {"reconcile_interval": "1h"},
        "models": [
            {"name": "claude", "deployments": [claude]},
            {"name": "gemini", "deployments": [gemini]},
            {"name": "vertex", "deployments": [vertex]},
            {"name": "mistral", "deployments": [mistral]},
            {"name": "claude-windowed", "deployments": [{**claude, "context_window": WINDOW}]},
            # A model no catalog knows: no context window bounds what its searches read.
            {"name": "claude-unbounded", "deployments": [{**claude, "model": "sim-unlisted"}]},
        ],
    }


@pytest.fixture(scope="module")
def gateway(log_dir: Path, simulator_url: str) -> Iterator[str]:
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    with running_gateway(log_dir, search_config(simulator_url), env) as (url, _):
        yield url


@pytest.fixture(scope="module")
def client(gateway: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0) as c:
        yield c


def cited_in(text: str, annotations: list[Any], title: str = "Simulated result") -> list[str]:
    """The stretches of ``text`` the ``url_citation`` annotations cite (the simulator's one
    source, under ``title``: Claude's search result's, or Gemini's grounding's domain)."""
    assert all(a.type == "url_citation" and a.url == RESULT_URL for a in annotations)
    assert all(a.title == title for a in annotations)
    return [text[a.start_index : a.end_index] for a in annotations]


def grounded_in(text: str, annotations: list[Any]) -> list[str]:
    """The stretches of ``text`` Gemini's grounding cites (the simulator's one source)."""
    return cited_in(text, annotations, title="example.com")


def answer_after_searches(output: list[Any], asked: str, searches: int) -> tuple[Any, str]:
    """The message ending ``output`` and its text, after checking that ``searches`` completed
    searches for ``asked`` come before it and that it answers ``asked``."""
    *calls, message = output
    assert len(calls) == searches
    for search in calls:
        assert search.type == "web_search_call" and search.status == "completed"
        assert search.action.type == "search" and search.action.query == asked
    assert message.type == "message" and message.content[0].type == "output_text"
    text = message.content[0].text
    assert text.startswith(f"Simulated reply to: {asked}")
    return message, text


SEARCHING = [
    "response.output_item.added",
    "response.web_search_call.in_progress",
    "response.web_search_call.searching",
    "response.web_search_call.completed",
    "response.output_item.done",
]
"""A search's events in an OpenAI stream, in their order."""


def stream_search(
    client: openai.OpenAI, model: str, asked: str, **more: Any
) -> tuple[list[Any], Any]:
    """The events and final response of ``model``'s streamed answer to ``asked`` with the
    ``web_search`` tool, after checking that an annotation is added before its text is done."""
    with client.responses.stream(
        model=model, input=asked, tools=[{"type": "web_search"}], **more
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds.index("response.output_text.annotation.added") < kinds.index(
        "response.output_text.done"
    )
    return events, final


def assert_searched_in_order(events: list[Any]) -> None:
    """The first search's events in ``events`` are ``SEARCHING``, in its order."""
    kinds = [event.type for event in events]
    start = kinds.index("response.web_search_call.in_progress") - 1
    assert kinds[start : start + 5] == SEARCHING


def annotation_added(events: list[Any], message: Any) -> Any:
    """The one ``annotation.added`` event of ``events``, after checking it adds ``message``'s
    first annotation, as the final response has it."""
    [added] = [e for e in events if e.type == "response.output_text.annotation.added"]
    assert added.item_id == message.id and added.annotation_index == 0
    assert added.annotation is not None
    assert added.annotation.model_dump() == message.content[0].annotations[0].model_dump()
    return added


def continue_searched_conversation(client: openai.OpenAI, model: str, asked: str) -> None:
    """Ask ``model`` ``asked`` with the search tool, then follow its answer (search items and
    all) with another question, which it answers."""
    first = client.responses.create(model=model, input=asked, tools=[{"type": "web_search"}])
    history: Any = [
        {"role": "user", "content": asked},
        *(item.model_dump(exclude_none=True) for item in first.output),
        {"role": "user", "content": "and then?"},
    ]
    then = client.responses.create(model=model, input=history, tools=[{"type": "web_search"}])
    assert then.output[-1].type == "message"


def test_claude_searches_for_a_responses_client(client: openai.OpenAI, simulator_url: str) -> None:
    asked = question("what is new on the web")
    tool: Any = {
        "type": "web_search",
        "filters": {"allowed_domains": ["example.com"]},
        "user_location": {"type": "approximate", "city": "Paris", "country": "FR"},
        "search_context_size": "medium",
    }
    raw = client.responses.with_raw_response.create(model="claude", input=asked, tools=[tool])
    response = raw.parse()
    message, text = answer_after_searches(response.output, asked, searches=1)
    assert cited_in(text, message.content[0].annotations) == [SEARCH_CITED]
    # Sent as Claude's own search tool, the filters and location mapped.
    [call] = received(simulator_url, asked)
    assert call["path"] == "/v1/messages"
    [sent] = call["json"]["tools"]
    assert sent["type"] == "web_search_20250305" and sent["name"] == "web_search"
    assert sent["allowed_domains"] == ["example.com"]
    assert sent["user_location"] == {"type": "approximate", "city": "Paris", "country": "FR"}
    # The search's results are among the input tokens, and the search itself is charged.
    usage = response.usage
    assert usage is not None and usage.input_tokens > 200
    cost = usage.input_tokens * 1000 + usage.output_tokens * 4000 + 10_000
    assert micros(raw.headers["x-tollway-cost-usd"]) == cost


def test_max_tool_calls_bounds_claudes_searches(client: openai.OpenAI, simulator_url: str) -> None:
    asked = question("search thrice")
    raw = client.responses.with_raw_response.create(
        model="claude",
        input=asked,
        tools=[{"type": "web_search_preview"}],
        max_tool_calls=2,
        extra_headers={"x-sim-searches": "3"},
    )
    response = raw.parse()
    kinds = [item.type for item in response.output]
    assert kinds == ["web_search_call", "web_search_call", "message"]
    [call] = received(simulator_url, asked)
    assert call["json"]["tools"][0]["max_uses"] == 2
    usage = response.usage
    assert usage is not None
    # Claude's search, at its web_search fee, whichever of OpenAI's tools asked for it.
    cost = usage.input_tokens * 1000 + usage.output_tokens * 4000 + 2 * 10_000
    assert micros(raw.headers["x-tollway-cost-usd"]) == cost


def test_claudes_search_streams_as_openai_streams_one(
    client: openai.OpenAI, simulator_url: str
) -> None:
    asked = question("stream what is new")
    events, final = stream_search(client, "claude", asked)
    assert_searched_in_order(events)
    message, text = answer_after_searches(final.output, asked, searches=1)
    assert text == final.output_text
    assert cited_in(text, message.content[0].annotations) == [SEARCH_CITED]
    added = annotation_added(events, message)
    assert added.content_index == 0 and added.output_index == 1
    # Streamed, the search is charged too (the usage of Anthropic's message_delta).
    assert final.usage is not None and final.usage.input_tokens > 200
    assert [c["path"] for c in received(simulator_url, asked)] == ["/v1/messages"]


def test_a_searched_conversation_continues_on_claude(
    client: openai.OpenAI, simulator_url: str
) -> None:
    asked = question("first search")
    continue_searched_conversation(client, "claude", asked)
    second = received(simulator_url, asked)[-1]["json"]["messages"]
    # The earlier search is left out: its answer's text says what it found.
    assert [m["role"] for m in second] == ["user", "assistant", "user"]


@pytest.mark.parametrize("stream", [False, True])
def test_what_only_openai_searches_with_is_still_a_400_naming_it(
    client: openai.OpenAI, simulator_url: str, stream: bool
) -> None:
    asked = question(f"search deeply, stream {stream}")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="claude",
            input=asked,
            tools=[{"type": "web_search", "search_context_size": "high"}],
            stream=stream,
        )
    assert caught.value.param == "tools[0].search_context_size"
    assert "no deployment that speaks OpenAI's Responses API" in caught.value.message
    assert received(simulator_url, asked) == []


def test_a_family_that_does_not_translate_the_search_is_a_400_naming_it(
    client: openai.OpenAI, simulator_url: str
) -> None:
    asked = question("search on mistral")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="mistral", input=asked, tools=[{"type": "web_search"}])
    assert caught.value.param == "tools[0].type"
    message = caught.value.message
    assert "Model 'mistral' has no deployment that speaks OpenAI's Responses API" in message
    assert "or of provider 'anthropic'" in message and "or of provider 'gemini'" in message
    assert received(simulator_url, asked) == []


def test_a_budget_reserves_claudes_whole_window_for_what_its_searches_read(
    gateway: str, simulator_url: str
) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 100.0)
    budgeted = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    asked = question("search on a budget")
    with budgeted.responses.with_streaming_response.create(
        model="claude-windowed",
        input=asked,
        tools=[{"type": "web_search"}],
        max_output_tokens=20,
        stream=True,
    ) as response:
        held = 100.0 - float(response.headers["x-tollway-budget-remaining-usd"])
        response.read()
    # The search results are input the gateway cannot count: the whole window is reserved,
    # with the output and every search the default bound allows.
    worst = (WINDOW * 1000 + 20 * 4000) / 1e6 + DEFAULT_CALLS * SEARCH_FEE / 1000
    assert held == pytest.approx(worst, abs=1e-6)
    # The catalog's window of sim-chat (128,000 tokens, $128 at this price) is more than the
    # budget has: refused before Claude reads anything, though the prompt itself is cheap.
    with pytest.raises(openai.RateLimitError) as caught:
        budgeted.responses.create(model="claude", input=asked, tools=[{"type": "web_search"}])
    assert caught.value.code == "budget_exceeded"
    assert len(received(simulator_url, asked)) == 1  # the first request's alone
    # Where no window is known, the cost has no bound: refused rather than let through.
    with pytest.raises(openai.BadRequestError) as caught:
        budgeted.responses.create(
            model="claude-unbounded", input=asked, tools=[{"type": "web_search"}]
        )
    assert caught.value.code == "cost_unbounded" and caught.value.param == "tools[0].type"
    assert len(received(simulator_url, asked)) == 1


def test_gemini_grounds_a_responses_clients_search(
    client: openai.OpenAI, simulator_url: str
) -> None:
    asked = question("what is new with Gemini")
    raw = client.responses.with_raw_response.create(
        model="gemini",
        input=asked,
        tools=[{"type": "web_search_preview", "search_context_size": "medium"}],
        extra_headers={"x-sim-searches": "2"},
    )
    response = raw.parse()
    message, text = answer_after_searches(response.output, asked, searches=2)
    # The simulator grounds the answer's last word on its one source.
    assert grounded_in(text, message.content[0].annotations) == [text.rsplit(" ", 1)[1]]
    # Sent as Gemini's own Google Search tool.
    [call] = received(simulator_url, asked)
    assert call["path"].endswith(":generateContent")
    assert call["json"]["tools"] == [{"googleSearch": {}}]
    # Each query at the web_search fee (the price names no fee per grounded prompt).
    usage = response.usage
    assert usage is not None
    cost = usage.input_tokens * 1000 + usage.output_tokens * 4000 + 2 * 10_000
    assert micros(raw.headers["x-tollway-cost-usd"]) == cost


def test_geminis_search_streams_as_openai_streams_one(
    client: openai.OpenAI, simulator_url: str
) -> None:
    asked = question("stream what is new with Gemini")
    events, final = stream_search(client, "gemini", asked)
    assert_searched_in_order(events)
    [message] = [item for item in final.output if item.type == "message"]
    [search] = [item for item in final.output if item.type == "web_search_call"]
    assert search.status == "completed" and search.action.type == "search"
    assert search.action.query == asked
    text = message.content[0].text
    assert text == final.output_text and text.startswith(f"Simulated reply to: {asked}")
    assert grounded_in(text, message.content[0].annotations) == [text.rsplit(" ", 1)[1]]
    annotation_added(events, message)
    [call] = received(simulator_url, asked)
    assert call["path"].endswith(":streamGenerateContent")
    assert call["json"]["tools"] == [{"googleSearch": {}}]


VERTEX_PATH = "/v1/projects/test/locations/europe-west4/publishers/google/models/sim-chat"


def test_vertex_ai_grounds_a_responses_clients_search(
    client: openai.OpenAI, simulator_url: str
) -> None:
    # Coverage: Vertex AI shares Gemini's codec, but is reached at its own URL with its own
    # auth; the search must survive that road too.
    asked = question("what is new on Vertex")
    response = client.responses.create(
        model="vertex", input=asked, tools=[{"type": "web_search"}], extra_headers=SEARCHES
    )
    message, text = answer_after_searches(response.output, asked, searches=2)
    assert grounded_in(text, message.content[0].annotations) == [text.rsplit(" ", 1)[1]]
    [call] = received(simulator_url, asked)
    assert call["path"] == VERTEX_PATH + ":generateContent"
    assert call["json"]["tools"] == [{"googleSearch": {}}]


def test_vertex_ais_search_streams_as_openai_streams_one(
    client: openai.OpenAI, simulator_url: str
) -> None:
    asked = question("stream what is new on Vertex")
    events, final = stream_search(client, "vertex", asked, extra_headers=SEARCHES)
    kinds = [event.type for event in events]
    assert kinds.count("response.web_search_call.completed") == 2
    [message] = [item for item in final.output if item.type == "message"]
    searches = [item for item in final.output if item.type == "web_search_call"]
    assert [search.action.query for search in searches] == [asked, asked]
    text = message.content[0].text
    assert text == final.output_text and text.startswith(f"Simulated reply to: {asked}")
    assert grounded_in(text, message.content[0].annotations) == [text.rsplit(" ", 1)[1]]
    [call] = received(simulator_url, asked)
    assert call["path"] == VERTEX_PATH + ":streamGenerateContent"
    assert call["json"]["tools"] == [{"googleSearch": {}}]


def test_a_searched_conversation_continues_on_gemini(
    client: openai.OpenAI, simulator_url: str
) -> None:
    asked = question("first search on Gemini")
    continue_searched_conversation(client, "gemini", asked)
    second = received(simulator_url, asked)[-1]["json"]["contents"]
    # The earlier search is left out: its answer's text says what it found.
    assert [c["role"] for c in second] == ["user", "model", "user"]


def test_no_search_allowed_offers_gemini_no_search(
    client: openai.OpenAI, simulator_url: str
) -> None:
    asked = question("do not search on Gemini")
    response = client.responses.create(
        model="gemini", input=asked, tools=[{"type": "web_search"}], max_tool_calls=0
    )
    assert [item.type for item in response.output] == ["message"]
    [call] = received(simulator_url, asked)
    assert "tools" not in call["json"]


@pytest.mark.parametrize(
    ("setting", "param"),
    [
        ({"user_location": {"type": "approximate", "city": "Paris"}}, "tools[0].user_location"),
        ({"filters": {"allowed_domains": ["example.com"]}}, "tools[0].filters.allowed_domains"),
        ({"search_context_size": "low"}, "tools[0].search_context_size"),
    ],
)
def test_what_geminis_search_cannot_honour_is_a_400_naming_it(
    client: openai.OpenAI, simulator_url: str, setting: dict[str, Any], param: str
) -> None:
    asked = question(f"search on Gemini with {param}")
    tool: Any = {"type": "web_search", **setting}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gemini", input=asked, tools=[tool])
    assert caught.value.param == param
    assert "Model 'gemini' has no deployment that speaks" in caught.value.message
    assert received(simulator_url, asked) == []
