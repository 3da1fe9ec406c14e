"""A Responses client's ``reasoning.summary`` through the real ``openai`` SDK, served by Claude
(``test-claude``), Gemini (``test-gemini``) and an OpenAI-compatible server that says its
reasoning as ``reasoning_content`` (``test-chat`` with ``x-sim-reasoning``), all on the
simulator over HTTP: the reasoning is the ``reasoning`` item's ``summary``, streamed with the
typed summary events in OpenAI's order."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.types.responses import (
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseReasoningItem,
    ResponseReasoningSummaryPartAddedEvent,
    ResponseReasoningSummaryPartDoneEvent,
    ResponseReasoningSummaryTextDeltaEvent,
    ResponseReasoningSummaryTextDoneEvent,
)

from tests.integration.sdk import sent_upstream

# model group, what the request adds to ask it to reason, the upstream body's marker field
FAMILIES: dict[str, dict[str, Any]] = {
    "test-claude": {"reasoning": {"effort": "low"}},
    "test-gemini": {"reasoning": {"effort": "medium"}},
    "test-chat": {"reasoning": {}, "extra_headers": {"x-sim-reasoning": "reasoning_content"}},
}
SUMMARY_EVENTS = [
    "response.output_item.added",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.done",
    "response.output_item.done",
]


def ask(model: str, question: str, summary: str) -> dict[str, Any]:
    family = FAMILIES[model]
    reasoning = {**family["reasoning"], "summary": summary}
    return {**family, "model": model, "input": question, "reasoning": reasoning}


def summary_of(item: Any) -> str:
    assert isinstance(item, ResponseReasoningItem)
    assert all(part.type == "summary_text" for part in item.summary)
    return "".join(part.text for part in item.summary)


@pytest.mark.parametrize("model", list(FAMILIES))
def test_reasoning_is_the_summary_a_responses_client_asked_for(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    question = f"summarise your reasoning, {model}"
    response = gpt.responses.create(**ask(model, question, "auto"))
    reasoning, message = response.output
    assert summary_of(reasoning).startswith(f"Simulated reasoning about: {question}")
    # A summary is not shown twice: OpenAI's reasoning models give no content with it.
    assert reasoning.type == "reasoning" and reasoning.content is None
    assert message.type == "message"
    assert response.output_text.startswith(f"Simulated reply to: {question}")
    assert response.reasoning is not None and response.reasoning.summary == "auto"
    if model == "test-chat":
        # Chat Completions has no summary field: an OpenAI-format upstream is sent nothing.
        body = sent_upstream(simulator_url, question)
        assert set(body) == {"model", "messages"}


@pytest.mark.parametrize("model", list(FAMILIES))
def test_a_streamed_summary_comes_in_openais_event_order(gpt: openai.OpenAI, model: str) -> None:
    question = f"stream a summary of your reasoning, {model}"
    with gpt.responses.stream(**ask(model, question, "detailed")) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    deltas = kinds.count("response.reasoning_summary_text.delta")
    assert deltas > 1  # streamed as it comes, not whole at the end
    reasoning_events = events[2 : 2 + len(SUMMARY_EVENTS) + deltas - 1]
    assert [e.type for e in reasoning_events] == [
        *SUMMARY_EVENTS[:2],
        *[SUMMARY_EVENTS[2]] * deltas,
        *SUMMARY_EVENTS[3:],
    ]
    added, part_added, *text_deltas, text_done, part_done, item_done = reasoning_events
    assert isinstance(added, ResponseOutputItemAddedEvent)
    assert added.item.type == "reasoning" and added.item.summary == []
    item_id, index = added.item.id, added.output_index
    assert isinstance(part_added, ResponseReasoningSummaryPartAddedEvent)
    assert part_added.part.type == "summary_text" and part_added.part.text == ""
    text = ""
    for delta in text_deltas:
        assert isinstance(delta, ResponseReasoningSummaryTextDeltaEvent)
        assert (delta.item_id, delta.output_index, delta.summary_index) == (item_id, index, 0)
        text += delta.delta
    assert text.startswith(f"Simulated reasoning about: {question}")
    assert isinstance(text_done, ResponseReasoningSummaryTextDoneEvent) and text_done.text == text
    assert isinstance(part_done, ResponseReasoningSummaryPartDoneEvent)
    assert part_done.part.text == text and part_done.summary_index == 0
    assert isinstance(item_done, ResponseOutputItemDoneEvent) and item_done.item.id == item_id
    assert summary_of(item_done.item) == text
    assert "response.reasoning_text.delta" not in kinds
    assert kinds.index("response.output_item.done") < kinds.index("response.output_text.delta")
    # Gemini signs its text after the text: a reasoning item after the message carries it.
    signed = ["reasoning"] if model == "test-gemini" else []
    assert [item.type for item in final.output] == ["reasoning", "message", *signed]
    assert summary_of(final.output[0]) == text
    assert final.output_text.startswith(f"Simulated reply to: {question}")


def upstream_asks(model: str, body: dict[str, Any]) -> Any:
    """What ``body``, sent to ``model``'s upstream, asks of the model's reasoning."""
    if model == "test-gemini":
        return body["generationConfig"]["thinkingConfig"]
    return body["thinking"]


UPSTREAM_ASKS = {
    "test-gemini": {"thinkingBudget": 8192, "includeThoughts": True},  # its thought summaries
    "test-claude": {"type": "enabled", "budget_tokens": 1024, "display": "summarized"},
}


@pytest.mark.parametrize("model", list(UPSTREAM_ASKS))
def test_each_family_is_asked_for_what_it_shows_as_a_summary(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    question = f"what goes upstream for {model}"
    gpt.responses.create(**ask(model, question, "concise"))
    assert upstream_asks(model, sent_upstream(simulator_url, question)) == UPSTREAM_ASKS[model]


def test_a_summary_value_openai_does_not_know_is_a_400_naming_it(gpt: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.responses.create(
            model="test-claude",
            input="x",
            reasoning={"summary": "none"},  # type: ignore[typeddict-item]
        )
    assert caught.value.status_code == 400
    assert caught.value.code == "invalid_value"
    assert caught.value.param == "reasoning.summary"
