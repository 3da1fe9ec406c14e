"""Gemini thinking through the real SDKs: an Anthropic client's ``thinking`` and an OpenAI
client's ``reasoning_effort`` to a Gemini deployment (``test-gemini``), thought summaries as
thinking blocks, thought signatures given back to Gemini (and to no one else), thoughts billed.

The simulator (``simulator/gemini_thinking.py``) thinks when ``thinkingConfig`` asks, signs its
answers, refuses a signature it did not give, and, with thinking on, a model turn whose calls
the request answers without its signature, as Gemini 3 does.
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.integration.sdk import blocks, sent_upstream, user
from tollway.simulator.gemini_thinking import PLACEHOLDER, thought_signature

THINKING: Any = {"type": "enabled", "budget_tokens": 2048}
WEATHER: Any = {
    "name": "get_weather",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def test_thinking_reaches_gemini_and_its_thoughts_come_back_as_signed_thinking(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    message = claude.messages.create(
        model="test-gemini",
        max_tokens=4096,
        thinking=THINKING,
        messages=user("gemini thinking please"),
    )
    first, second = message.content
    assert first.type == "thinking" and second.type == "text"
    assert first.thinking.startswith("Simulated reasoning about: gemini thinking please")
    # The answer's signature (on its last part), marked as Gemini's.
    assert first.signature == "gemini:" + thought_signature(first.thinking)
    body = sent_upstream(simulator_url, "gemini thinking please")
    assert body["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 2048,
        "includeThoughts": True,
    }
    # The thoughts are billed as output: the simulator counts one token a word.
    thought_tokens = len(first.thinking.split())
    assert message.usage.output_tokens == thought_tokens + len(second.text.split())


def test_streamed_thinking_reaches_anthropic_clients_as_it_comes(
    claude: anthropic.Anthropic,
) -> None:
    with claude.messages.stream(
        model="test-gemini",
        max_tokens=4096,
        thinking={"type": "adaptive"},
        messages=user("stream gemini thoughts"),
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "thinking" in kinds and "signature" in kinds  # the SDK's own events
    thought = final.content[0]
    assert thought.type == "thinking"
    assert thought.thinking.startswith("Simulated reasoning about: stream gemini thoughts")
    # Gemini signs a streamed answer on its last, empty part: a signed block after the text.
    assert [block.type for block in final.content] == ["thinking", "text", "thinking"]
    assert final.content[2].signature == "gemini:" + thought_signature(thought.thinking)
    assert final.usage.output_tokens > len(final.content[1].text.split())


def test_a_signature_on_geminis_last_text_piece_does_not_cut_the_text_in_two(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    question = user("gemini signs its last words")
    ask: Any = {"model": "test-gemini", "max_tokens": 4096, "thinking": THINKING}
    with claude.messages.stream(
        messages=question, extra_headers={"x-sim-signature": "last-text"}, **ask
    ) as stream:
        final = stream.get_final_message()
    # Not [thinking, text, thinking, text]: the signature follows the whole text.
    assert [block.type for block in final.content] == ["thinking", "text", "thinking"]
    thought, answer, signed = final.content
    assert thought.type == "thinking" and answer.type == "text" and signed.type == "thinking"
    assert answer.text.startswith("Simulated reply to: gemini signs its last words")
    signature = thought_signature(thought.thinking)
    assert signed.thinking == "" and signed.signature == "gemini:" + signature
    # Sent back, the signature is on the answer's (last) part again, and Gemini takes it.
    follow_up = [
        *question,
        {"role": "assistant", "content": blocks(final)},
        {"role": "user", "content": "and then? signed replay"},
    ]
    assert claude.messages.create(messages=follow_up, **ask).stop_reason == "end_turn"
    replayed = sent_upstream(simulator_url, "signed replay")["contents"][1]
    assert replayed["parts"][-1] == {"text": answer.text, "thoughtSignature": signature}


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_call_round_trip_gives_gemini_its_signature_back(
    claude: anthropic.Anthropic, simulator_url: str, stream: bool
) -> None:
    question = user(f"gemini weather in Oslo, stream={stream}?")
    ask: Any = {
        "model": "test-gemini",
        "max_tokens": 4096,
        "thinking": THINKING,
        "tools": [WEATHER],
    }
    if stream:
        with claude.messages.stream(messages=question, **ask) as events:
            first = events.get_final_message()
    else:
        first = claude.messages.create(messages=question, **ask)
    assert [block.type for block in first.content] == ["thinking", "tool_use"]
    thought, call = first.content
    assert thought.type == "thinking" and call.type == "tool_use"
    signature = thought_signature(thought.thinking)
    assert thought.signature == "gemini:" + signature
    marker = f"Oslo: rain, stream={stream}"
    follow_up = [
        *question,
        {"role": "assistant", "content": blocks(first)},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": marker}],
        },
    ]
    second = claude.messages.create(messages=follow_up, **ask)
    assert second.stop_reason == "end_turn"
    replayed = sent_upstream(simulator_url, marker)["contents"][1]
    assert replayed["role"] == "model"
    assert replayed["parts"] == [
        {
            "functionCall": {"name": "get_weather", "args": call.input},
            "thoughtSignature": signature,
        }
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_an_openai_clients_tool_call_carries_geminis_signature_there_and_back(
    gpt: openai.OpenAI, simulator_url: str, stream: bool
) -> None:
    # As Google's own OpenAI-compatible API does, the call carries the signature in
    # extra_content.google.thought_signature, and a client that replays the call as it came
    # gives Gemini its own signature back, not the placeholder for foreign history.
    tool: Any = {"type": "function", "function": {"name": "get_weather"}}
    tool["function"]["parameters"] = WEATHER["input_schema"]
    question = user(f"openai gemini weather in Oslo, stream={stream}?")
    ask: Any = {"model": "test-gemini", "tools": [tool], "reasoning_effort": "low"}
    if stream:
        with gpt.chat.completions.stream(messages=question, **ask) as events:
            message: Any = events.get_final_completion().choices[0].message
    else:
        message = gpt.chat.completions.create(messages=question, **ask).choices[0].message
    (call,) = message.tool_calls
    signature = call.model_extra["extra_content"]["google"]["thought_signature"]
    marker = f"Oslo: sleet, stream={stream}"
    follow_up = [
        *question,
        {"role": "assistant", "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": marker},
    ]
    second = gpt.chat.completions.create(messages=follow_up, **ask)
    assert second.choices[0].finish_reason == "stop"
    replayed = sent_upstream(simulator_url, marker)["contents"][1]["parts"]
    assert [part["thoughtSignature"] for part in replayed] == [signature]
    assert signature != PLACEHOLDER


def test_a_tampered_gemini_signature_is_geminis_400(claude: anthropic.Anthropic) -> None:
    history: Any = [
        *user("tampered gemini weather in Oslo?"),
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "", "signature": "gemini:Zm9yZ2Vk"},
                {
                    "type": "tool_use",
                    "id": "call_0_get_weather",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_0_get_weather", "content": "sun"}
            ],
        },
    ]
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model="test-gemini",
            max_tokens=4096,
            thinking=THINKING,
            tools=[WEATHER],
            messages=history,
        )
    assert "Thought signature is not valid" in str(caught.value)


def test_a_gemini_signature_is_not_sent_to_claude(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    first = claude.messages.create(
        model="test-gemini",
        max_tokens=4096,
        thinking=THINKING,
        tools=[WEATHER],
        messages=user("gemini then claude: weather in Oslo?"),
    )
    call = first.content[-1]
    assert call.type == "tool_use"
    marker = "Oslo: fog, for claude"
    claude.messages.create(
        model="test-bedrock",
        max_tokens=4096,
        tools=[WEATHER],
        messages=[
            *user("gemini then claude: weather in Oslo?"),
            {"role": "assistant", "content": blocks(first)},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": marker}],
            },
        ],
    )
    turn = sent_upstream(simulator_url, marker)["messages"][1]["content"]
    assert [next(iter(block)) for block in turn] == ["toolUse"]


def test_a_call_from_a_client_that_kept_no_signature_gets_googles_placeholder(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    # Without thinking, the client is shown no thinking block, so it has no signature to
    # give back: the placeholder Google documents for such history goes instead.
    ask: Any = {"model": "test-gemini", "max_tokens": 1024, "tools": [WEATHER]}
    question = user("unsigned gemini weather in Oslo?")
    first = claude.messages.create(messages=question, **ask)
    assert [block.type for block in first.content] == ["tool_use"]
    marker = "Oslo: hail"
    claude.messages.create(
        messages=[
            *question,
            {"role": "assistant", "content": blocks(first)},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": first.content[0].id, "content": marker}
                ],
            },
        ],
        **ask,
    )
    parts = sent_upstream(simulator_url, marker)["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == PLACEHOLDER


@pytest.mark.parametrize(("effort", "budget"), [("low", 1024), ("high", 24576), ("none", 0)])
def test_reasoning_effort_is_a_gemini_thinking_budget(
    gpt: openai.OpenAI, simulator_url: str, effort: str, budget: int
) -> None:
    marker = f"gemini effort {effort}"
    completion = gpt.chat.completions.create(
        model="test-gemini",
        messages=[{"role": "user", "content": marker}],
        reasoning_effort=effort,  # type: ignore[arg-type]
    )
    assert completion.choices[0].message.content
    body = sent_upstream(simulator_url, marker)
    assert body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": budget}
    usage = completion.usage
    assert usage is not None
    details = usage.completion_tokens_details
    reasoning = 0 if details is None else details.reasoning_tokens or 0
    assert (reasoning > 0) is (budget > 0)
    answer = completion.choices[0].message.content or ""
    assert usage.completion_tokens == reasoning + len(answer.split())


def test_responses_reasoning_effort_is_a_gemini_thinking_budget(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    response = gpt.responses.create(
        model="test-gemini", input="responses gemini effort", reasoning={"effort": "medium"}
    )
    assert response.output_text
    body = sent_upstream(simulator_url, "responses gemini effort")
    assert body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 8192}
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens > 0


def test_an_effort_gemini_has_no_budget_for_is_a_400_naming_it(gpt: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.responses.create(
            model="test-gemini", input="xhigh gemini effort", reasoning={"effort": "xhigh"}
        )
    assert caught.value.body is not None
    assert caught.value.body["param"] == "reasoning.effort"  # type: ignore[index]


# Gemini 3 (``test-gemini-3``: gemini-3-flash-preview) thinks at a level, not within a budget.
@pytest.mark.parametrize(
    ("effort", "level"),
    [("minimal", "MINIMAL"), ("low", "LOW"), ("high", "HIGH"), ("none", "LOW")],
)
def test_reasoning_effort_is_a_gemini_3_thinking_level(
    gpt: openai.OpenAI, simulator_url: str, effort: str, level: str
) -> None:
    marker = f"gemini 3 effort {effort}"
    completion = gpt.chat.completions.create(
        model="test-gemini-3",
        messages=[{"role": "user", "content": marker}],
        reasoning_effort=effort,  # type: ignore[arg-type]
    )
    assert completion.choices[0].message.content
    body = sent_upstream(simulator_url, marker)
    assert body["generationConfig"]["thinkingConfig"] == {"thinkingLevel": level}
    assert completion.usage is not None
    details = completion.usage.completion_tokens_details
    assert details is not None and (details.reasoning_tokens or 0) > 0


def test_responses_reasoning_effort_is_a_gemini_3_thinking_level(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    response = gpt.responses.create(
        model="test-gemini-3", input="responses gemini 3 effort", reasoning={"effort": "medium"}
    )
    assert response.output_text
    body = sent_upstream(simulator_url, "responses gemini 3 effort")
    assert body["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "MEDIUM"}


def test_adaptive_thinking_reaches_gemini_3_as_its_default_dynamic_thinking(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    marker = "gemini 3 adaptive thinking"
    message = claude.messages.create(
        model="test-gemini-3",
        max_tokens=4096,
        thinking={"type": "adaptive"},
        messages=user(marker),
    )
    assert [block.type for block in message.content] == ["thinking", "text"]
    sent = sent_upstream(simulator_url, marker)["generationConfig"]["thinkingConfig"]
    assert sent == {"includeThoughts": True}  # no budget: Gemini 3 picks its own level


@pytest.mark.parametrize("stream", [False, True])
def test_thinking_display_omitted_asks_gemini_for_no_thoughts(
    claude: anthropic.Anthropic, simulator_url: str, stream: bool
) -> None:
    """``display: "omitted"`` is Claude's thinking without its text, signed: Gemini is not
    asked to show its thoughts, and its signature still comes back as a thinking block."""
    marker = f"gemini omitted thinking {stream}"
    request: Any = {
        "model": "test-gemini",
        "max_tokens": 4096,
        "thinking": {**THINKING, "display": "omitted"},
        "messages": user(marker),
    }
    if stream:
        with claude.messages.stream(**request) as events:
            message = events.get_final_message()
    else:
        message = claude.messages.create(**request)
    sent = sent_upstream(simulator_url, marker)["generationConfig"]["thinkingConfig"]
    assert sent == {"thinkingBudget": 2048}
    thinking = [block for block in message.content if block.type == "thinking"]
    assert thinking and all(block.thinking == "" for block in thinking)
    assert all(block.signature.startswith("gemini:") for block in thinking)


def test_a_responses_clients_tool_call_gives_gemini_its_signature_back(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    # The Responses API's place for reasoning a client sends back unread is the reasoning
    # item's encrypted_content, asked for with include: Gemini's signatures ride there, as
    # Claude's signed thinking does (more in test_gemini_responses_signatures).
    tool: Any = {"type": "function", "name": "get_weather"}
    tool["parameters"] = WEATHER["input_schema"]
    question = "responses gemini weather in Oslo?"
    ask: Any = {"model": "test-gemini", "tools": [tool], "reasoning": {"effort": "low"}}
    ask |= {"include": ["reasoning.encrypted_content"], "store": False}
    first = gpt.responses.create(input=question, **ask)
    (call,) = [item for item in first.output if item.type == "function_call"]
    marker = "responses Oslo: sleet"
    replay: Any = [
        {"role": "user", "content": question},
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": marker},
    ]
    second = gpt.responses.create(input=replay, **ask)
    assert second.status == "completed"  # the simulator took the signature as its own
    replayed = sent_upstream(simulator_url, marker)["contents"][1]["parts"]
    assert [part["thoughtSignature"] for part in replayed] != [PLACEHOLDER]
    assert [part["functionCall"]["name"] for part in replayed] == ["get_weather"]
