"""Gemini's thought signatures through a Responses client (the real ``openai`` SDK): carried
in a ``reasoning`` item's ``encrypted_content``, given back to Gemini on the part each was on
when the client replays the output as input, streamed or not, and sent to no one else.

The simulator signs its answers (the first ``functionCall``, or the last part of a text
answer: streamed, the empty part after the text) and refuses a signature it did not give, so
a replayed turn that reaches it with a wrong signature fails, and one with Google's
placeholder passes: each test checks the signature the simulator was sent.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.integration.sdk import sent_upstream
from tollway.simulator.gemini_thinking import PLACEHOLDER, thought_signature
from tollway.wire.responses_thought_signatures import CALL, PREFIX, Signed, seal

TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
SUMMARY: Any = {"effort": "low", "summary": "auto"}


def respond(gpt: openai.OpenAI, stream: bool, **ask: Any) -> Any:
    """The final ``Response``; streamed, after checking the events' numbering and places."""
    if not stream:
        return gpt.responses.create(**ask)
    with gpt.responses.stream(**ask) as events:
        seen = list(events)
        final = events.get_final_response()
    assert [event.sequence_number for event in seen] == list(range(len(seen)))
    added = [event.output_index for event in seen if event.type == "response.output_item.added"]
    assert added == list(range(len(final.output)))
    done = [event.item for event in seen if event.type == "response.output_item.done"]
    assert [item.id for item in done] == [item.id for item in final.output]
    return final


def items(response: Any) -> list[Any]:
    """A response's output as the input items a client sends back."""
    return [item.model_dump(exclude_none=True) for item in response.output]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["test-gemini", "test-gemini-3", "test-vertex"])
def test_a_responses_clients_call_goes_back_to_gemini_with_its_signature(
    gpt: openai.OpenAI, simulator_url: str, model: str, stream: bool
) -> None:
    question = f"responses signed call, {model}, stream={stream}: weather in Oslo?"
    ask: Any = {"model": model, "tools": [TOOL], "reasoning": SUMMARY, "store": False}
    first = respond(gpt, stream, input=question, **ask)
    assert [item.type for item in first.output] == ["reasoning", "function_call"]
    reasoning, call = first.output
    assert reasoning.encrypted_content.startswith(PREFIX)
    signature = thought_signature(reasoning.summary[0].text)
    marker = f"Oslo: sleet, {model}, stream={stream}"
    output = {"type": "function_call_output", "call_id": call.call_id, "output": marker}
    second = respond(
        gpt, False, input=[{"role": "user", "content": question}, *items(first), output], **ask
    )
    assert second.status == "completed"
    replayed = sent_upstream(simulator_url, marker)["contents"][1]
    function_call = {"name": "get_weather", "args": json.loads(call.arguments)}
    assert replayed["parts"] == [{"functionCall": function_call, "thoughtSignature": signature}]


@pytest.mark.parametrize("stream", [False, True])
def test_a_responses_conversation_gives_gemini_each_signature_back_where_it_was(
    gpt: openai.OpenAI, simulator_url: str, stream: bool
) -> None:
    # A call, then a text answer to its result, then the next question: the model turns of
    # the third request carry the call's and the text's signatures, each on its own part.
    # Streamed, the text's signature comes after the text: a reasoning item after the message.
    question = f"responses conversation, stream={stream}: weather in Oslo?"
    ask: Any = {"model": "test-gemini", "tools": [TOOL], "reasoning": SUMMARY, "store": False}
    first = respond(gpt, stream, input=question, **ask)
    call = first.output[-1]
    history: list[Any] = [{"role": "user", "content": question}, *items(first)]
    result = f"Oslo: rain, stream={stream}"
    history.append({"type": "function_call_output", "call_id": call.call_id, "output": result})
    second = respond(gpt, stream, input=history, **ask)
    kinds = [item.type for item in second.output]
    assert kinds == (["reasoning", "message", "reasoning"] if stream else ["reasoning", "message"])
    # Streamed, the summary's item closed before the signature came: the last item has it.
    sealed = [item.encrypted_content for item in second.output if item.type == "reasoning"]
    assert [bool(value) for value in sealed] == ([False, True] if stream else [True])
    marker = f"and tomorrow, stream={stream}?"
    history += [*items(second), {"role": "user", "content": marker}]
    respond(gpt, stream, input=history, **ask)
    contents = sent_upstream(simulator_url, marker)["contents"]
    assert [content["role"] for content in contents] == ["user", "model", "user", "model", "user"]
    (signed_call,) = contents[1]["parts"]
    assert signed_call["thoughtSignature"] == thought_signature(first.output[0].summary[0].text)
    assert contents[3]["parts"] == [
        {
            "text": second.output_text,
            "thoughtSignature": thought_signature(second.output[0].summary[0].text),
        }
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_signatures_come_without_a_summary_asked(
    gpt: openai.OpenAI, simulator_url: str, stream: bool
) -> None:
    # No thoughts shown: the signature is a reasoning item of its own, before the call.
    question = f"responses unsummarised, stream={stream}: weather in Oslo?"
    ask: Any = {"model": "test-gemini-3", "tools": [TOOL], "reasoning": {"effort": "low"}}
    first = respond(gpt, stream, input=question, **ask)
    assert [item.type for item in first.output] == ["reasoning", "function_call"]
    marker = f"Oslo: hail, unsummarised, stream={stream}"
    output = {"type": "function_call_output", "call_id": first.output[1].call_id, "output": marker}
    second = gpt.responses.create(
        input=[{"role": "user", "content": question}, *items(first), output], **ask
    )
    assert second.status == "completed"
    (part,) = sent_upstream(simulator_url, marker)["contents"][1]["parts"]
    assert part["thoughtSignature"] not in (None, PLACEHOLDER)


def test_a_gemini_signature_in_a_responses_history_is_not_sent_to_claude(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    question = "responses gemini then claude: weather in Oslo?"
    first = gpt.responses.create(
        model="test-gemini", input=question, tools=[TOOL], reasoning=SUMMARY
    )
    call = first.output[-1]
    marker = "Oslo: fog, for claude through responses"
    output = {"type": "function_call_output", "call_id": call.call_id, "output": marker}
    second = gpt.responses.create(
        model="test-claude",
        input=[{"role": "user", "content": question}, *items(first), output],
        tools=[TOOL],
    )
    assert second.status == "completed"
    turn = sent_upstream(simulator_url, marker)["messages"][1]["content"]
    assert [block["type"] for block in turn] == ["tool_use"]


def test_a_forged_signature_in_a_gemini_seal_is_geminis_400(gpt: openai.OpenAI) -> None:
    question = "responses forged gemini signature: weather in Oslo?"
    ask: Any = {"model": "test-gemini", "tools": [TOOL], "reasoning": {"effort": "low"}}
    first = gpt.responses.create(input=question, **ask)
    history = [{"role": "user", "content": question}, *items(first)]
    call_id = history[-1]["call_id"]
    history[1]["encrypted_content"] = seal([Signed("gemini:Zm9yZ2Vk", CALL, call_id)])
    history.append({"type": "function_call_output", "call_id": call_id, "output": "sun"})
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.responses.create(input=history, **ask)
    assert "Thought signature is not valid" in str(caught.value)


def test_a_damaged_gemini_seal_is_a_400_naming_it(gpt: openai.OpenAI) -> None:
    question = "responses damaged gemini seal: weather in Oslo?"
    ask: Any = {"model": "test-gemini", "tools": [TOOL], "reasoning": {"effort": "low"}}
    first = gpt.responses.create(input=question, **ask)
    history = [{"role": "user", "content": question}, *items(first)]
    history[1]["encrypted_content"] = PREFIX + "not base64!"
    history.append(
        {"type": "function_call_output", "call_id": history[-1]["call_id"], "output": "x"}
    )
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.responses.create(input=history, **ask)
    assert caught.value.body is not None
    assert caught.value.body["param"] == "input[1].encrypted_content"  # type: ignore[index]
