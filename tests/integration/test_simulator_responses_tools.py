"""The simulator's Responses API: the built-in web search and stored responses, read by the real
``openai`` SDK (its types check the shapes)."""

from __future__ import annotations

import openai
import pytest

from tollway.simulator.responses_tools import SEARCH_TOKENS


async def test_a_web_search_tool_is_a_search_call_before_the_message(
    oai: openai.AsyncOpenAI,
) -> None:
    plain = await oai.responses.create(model="gpt-4o", input="news about tides")
    response = await oai.responses.create(
        model="gpt-4o",
        input="news about tides",
        tools=[{"type": "web_search"}],
        include=["web_search_call.action.sources"],
    )
    search, message = response.output
    assert search.type == "web_search_call" and search.status == "completed"
    assert search.id.startswith("ws_")
    assert search.action.type == "search" and search.action.query == "news about tides"
    assert search.action.sources and search.action.sources[0].type == "url"
    assert message.type == "message"
    assert response.output_text.startswith("Simulated reply to: news about tides")
    assert response.usage is not None and plain.usage is not None
    assert response.usage.input_tokens == plain.usage.input_tokens + SEARCH_TOKENS


async def test_a_streamed_search_has_its_events_in_openais_order(
    oai: openai.AsyncOpenAI,
) -> None:
    async with oai.responses.stream(
        model="o4-mini", input="search the web", tools=[{"type": "web_search_preview"}]
    ) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    kinds = [event.type for event in events]
    start = kinds.index("response.web_search_call.in_progress")
    assert kinds[start - 1 : start + 4] == [
        "response.output_item.added",
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
        "response.output_item.done",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert [item.type for item in final.output] == ["reasoning", "web_search_call", "message"]


async def test_no_search_when_the_choice_rules_it_out(oai: openai.AsyncOpenAI) -> None:
    response = await oai.responses.create(
        model="gpt-4o", input="x", tools=[{"type": "web_search"}], tool_choice="none"
    )
    assert [item.type for item in response.output] == ["message"]


async def test_a_stored_response_is_continued_and_its_context_counted(
    oai: openai.AsyncOpenAI,
) -> None:
    first = await oai.responses.create(model="gpt-4o", input="remember the number seven")
    plain = await oai.responses.create(model="gpt-4o", input="which number", store=False)
    then = await oai.responses.create(
        model="gpt-4o", input="which number", previous_response_id=first.id
    )
    assert then.previous_response_id == first.id and plain.previous_response_id is None
    assert first.usage is not None and plain.usage is not None and then.usage is not None
    assert then.usage.input_tokens == plain.usage.input_tokens + first.usage.total_tokens
    with pytest.raises(openai.BadRequestError) as caught:  # store: false kept nothing
        await oai.responses.create(model="gpt-4o", input="x", previous_response_id=plain.id)
    assert caught.value.code == "previous_response_not_found"
    assert caught.value.param == "previous_response_id"
    assert f"Previous response with id '{plain.id}' not found." in caught.value.message


@pytest.mark.parametrize("limit", [0, 1, 15])
async def test_a_max_output_tokens_below_16_is_refused_as_openai_does(
    oai: openai.AsyncOpenAI, limit: int
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.responses.create(model="gpt-4o", input="hi", max_output_tokens=limit)
    assert caught.value.code == "integer_below_min_value"
    assert caught.value.param == "max_output_tokens"
    assert caught.value.body["message"] == (  # type: ignore[index]
        "Invalid 'max_output_tokens': integer below minimum value. "
        f"Expected a value >= 16, but got {limit} instead."
    )
    answer = await oai.responses.create(model="gpt-4o", input="hi", max_output_tokens=16)
    assert answer.status in ("completed", "incomplete")
