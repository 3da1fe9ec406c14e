"""Chat Completions requests served by the other families, through the real ``openai`` SDK
against the session's gateway and the simulator: fields that only steer OpenAI's prompt cache,
a declined assistant turn given back as ``refusal`` parts, the tool calls of each of ``n``
Gemini candidates, and the field a 400 names for a tool call's arguments."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import openai
import pytest

from tests.integration.sdk import TIME, WEATHER, sent_upstream, user

OTHER_FAMILIES = ["test-claude", "test-gemini", "test-bedrock"]


def marker(words: str) -> str:
    """Words no other test sends, to find this test's request in the simulator's log."""
    return f"{words} {uuid.uuid4().hex[:10]}"


# --- prompt cache settings ----------------------------------------------------------------


@pytest.mark.parametrize("model", [*OTHER_FAMILIES, "test-mistral"])
def test_openais_prompt_cache_settings_are_left_out_where_they_mean_nothing(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    # They only say how long OpenAI keeps a prompt's cache: the answer is the same without
    # them, as with prompt_cache_key. A 400 for them broke every client that sets them.
    asked = marker("cache settings")
    completion = gpt.chat.completions.create(
        model=model,
        messages=user(asked),
        max_tokens=3,
        prompt_cache_key="tenant-7",
        prompt_cache_retention="24h",
        extra_body={"prompt_cache_options": {"mode": "implicit", "ttl": "30m"}},
    )
    assert completion.choices[0].message.content
    sent = sent_upstream(simulator_url, asked)
    assert not {"prompt_cache_retention", "prompt_cache_options"} & set(sent)


def test_openais_prompt_cache_settings_reach_an_openai_deployment(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    asked = marker("cache settings for openai")
    gpt.chat.completions.create(
        model="test-chat",
        messages=user(asked),
        max_tokens=3,
        prompt_cache_retention="24h",
        extra_body={"prompt_cache_options": {"ttl": "30m"}},
    )
    sent = sent_upstream(simulator_url, asked)
    assert sent["prompt_cache_retention"] == "24h"
    assert sent["prompt_cache_options"] == {"ttl": "30m"}


# --- a declined turn as refusal parts -----------------------------------------------------


def _declined_turn(asked: str) -> list[Any]:
    """A conversation whose assistant turn declined, its words as content parts (the form
    OpenAI's API takes beside a ``refusal`` field), then the user's next question."""
    return [
        {"role": "user", "content": "something it will not do"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "About that:"},
                {"type": "refusal", "refusal": "I can't help with that."},
            ],
        },
        {"role": "user", "content": asked},
    ]


def _said(model: str, sent: dict[str, Any]) -> str:
    """The text of the assistant turn of ``sent``, in the serving family's shape."""
    if model == "test-gemini":
        turn = next(c for c in sent["contents"] if c["role"] == "model")
        return " ".join(part["text"] for part in turn["parts"])
    turn = next(m for m in sent["messages"] if m["role"] == "assistant")
    content = turn["content"]
    return content if isinstance(content, str) else " ".join(b["text"] for b in content)


@pytest.mark.parametrize("model", OTHER_FAMILIES)
def test_a_declined_turns_refusal_parts_reach_another_family_as_its_words(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    # OpenAI's API takes an assistant turn's content as text and refusal parts; a turn's
    # refusal field already reached the other families as its words, its parts were a 400.
    asked = marker("after the refusal")
    completion = gpt.chat.completions.create(
        model=model, messages=_declined_turn(asked), max_tokens=3
    )
    assert completion.choices[0].message.content
    said = _said(model, sent_upstream(simulator_url, asked))
    assert "About that:" in said and "I can't help with that." in said


def test_a_declined_turns_refusal_parts_reach_an_openai_deployment_as_sent(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    asked = marker("refusal parts for openai")
    gpt.chat.completions.create(model="test-chat", messages=_declined_turn(asked), max_tokens=3)
    turn = sent_upstream(simulator_url, asked)["messages"][1]
    assert turn["content"][1] == {"type": "refusal", "refusal": "I can't help with that."}


def test_a_refusal_part_in_a_users_turn_is_still_a_400(gpt: openai.OpenAI) -> None:
    # Only an assistant turn declines (OpenAI's API takes refusal parts there alone).
    messages: Any = [{"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}]
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.create(model="test-claude", messages=messages, max_tokens=3)
    assert caught.value.param == "messages[0].content[0]"


# --- n candidates' tool calls on Gemini ---------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "streamed"])
def test_each_gemini_candidates_tool_calls_have_ids_of_their_own(
    gpt: openai.OpenAI, stream: bool
) -> None:
    # Every call OpenAI's API makes has an id of its own, whichever choice it is in; Gemini's
    # calls have none, and the ids made up for them were the same in every candidate.
    asked = marker("weather and time in parallel")
    question: Any = {"messages": user(asked), "tools": [WEATHER, TIME], "n": 2}
    if stream:
        with gpt.chat.completions.stream(model="test-gemini", **question) as events:
            completion = events.get_final_completion()
    else:
        completion = gpt.chat.completions.create(model="test-gemini", **question)
    calls = [[c.id for c in choice.message.tool_calls or []] for choice in completion.choices]
    assert [len(ids) for ids in calls] == [2, 2]
    ids = calls[0] + calls[1]
    assert len(set(ids)) == 4, ids
    assert all(len(i) <= 40 for i in ids)
    # Either choice's calls and results go back to Gemini, each result under its function.
    chosen = completion.choices[1].message
    results = [
        {"role": "tool", "tool_call_id": call.id, "content": f"result of {call.function.name}"}
        for call in chosen.tool_calls or []
    ]
    follow_up: Any = [*user(asked), chosen, *results]
    answer = gpt.chat.completions.create(
        model="test-gemini", messages=follow_up, tools=[WEATHER, TIME]
    )
    assert "result of get_time" in (answer.choices[0].message.content or "")


# --- the field a 400 names ----------------------------------------------------------------


@pytest.mark.parametrize("model", OTHER_FAMILIES)
def test_arguments_that_are_no_json_object_are_a_400_naming_the_clients_field(
    gpt: openai.OpenAI, model: str
) -> None:
    # Claude, Gemini and Bedrock take a call's arguments as an object: the client is told the
    # field as it wrote it, tool_calls[0].function.arguments.
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": "[1, 2]"},
    }
    messages: Any = [
        *user("weather?"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.create(model=model, messages=messages, tools=[WEATHER])
    param = "messages[1].tool_calls[0].function.arguments"
    assert caught.value.param == param and f"'{param}'" in caught.value.message


# --- what an assistant turn said in fields only OpenAI reads ------------------------------


def _turn_with(field: str, asked: str) -> list[Any]:
    """A conversation whose assistant turn said its answer only in ``field``: a spoken answer
    by its id on OpenAI's servers, or a legacy function call."""
    said: dict[str, Any] = {
        "audio": {"id": "audio_abc123"},
        "function_call": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
    }
    return [
        {"role": "user", "content": "what did you say?"},
        {"role": "assistant", "content": None, field: said[field]},
        {"role": "user", "content": asked},
    ]


@pytest.mark.parametrize("field", ["audio", "function_call"])
@pytest.mark.parametrize("model", OTHER_FAMILIES)
def test_a_turn_said_in_fields_only_openai_reads_is_a_400_for_another_family(
    gpt: openai.OpenAI, simulator_url: str, model: str, field: str
) -> None:
    # The turn was left out (Bedrock even merged the user turns around it): the model was
    # asked the next question without knowing what it had answered.
    asked = marker(f"after a turn of {field}")
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.create(model=model, messages=_turn_with(field, asked), max_tokens=3)
    assert caught.value.param == f"messages[1].{field}"
    assert field in str(caught.value.message)
    requests = httpx.get(simulator_url + "/_sim/requests").json()
    assert not any(asked in json.dumps(request["json"]) for request in requests)


@pytest.mark.parametrize("field", ["audio", "function_call"])
def test_a_turn_said_in_fields_only_openai_reads_reaches_an_openai_deployment(
    gpt: openai.OpenAI, simulator_url: str, field: str
) -> None:
    asked = marker(f"a turn of {field} for openai")
    messages = _turn_with(field, asked)
    gpt.chat.completions.create(model="test-chat", messages=messages, max_tokens=3)
    assert sent_upstream(simulator_url, asked)["messages"][1] == messages[1]


@pytest.mark.parametrize("model", OTHER_FAMILIES)
def test_an_answer_echoed_back_with_empty_audio_still_crosses(
    gpt: openai.OpenAI, model: str
) -> None:
    # The SDK's answer message holds "audio": null; a client that sends it back as it came
    # asks for nothing with it.
    messages: Any = [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi", "audio": None, "function_call": None},
        {"role": "user", "content": marker("after an echoed answer")},
    ]
    completion = gpt.chat.completions.create(model=model, messages=messages, max_tokens=3)
    assert completion.choices[0].message.content


def _function_result(asked: str) -> list[Any]:
    """A legacy function call and its result (a ``function`` message), then a question."""
    return [
        *_turn_with("function_call", "unused")[:2],
        {"role": "function", "name": "get_weather", "content": '{"temperature": 7}'},
        {"role": "user", "content": asked},
    ]


def test_a_legacy_function_result_reaches_an_openai_deployment(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    # OpenAI's API still takes the deprecated "function" role; the gateway refused it as a
    # role it did not know, a 400 OpenAI itself would not answer.
    asked = marker("after a function result")
    messages = _function_result(asked)
    gpt.chat.completions.create(model="test-chat", messages=messages, max_tokens=3)
    assert sent_upstream(simulator_url, asked)["messages"][2] == messages[2]


@pytest.mark.parametrize("model", OTHER_FAMILIES)
def test_a_legacy_function_result_is_a_400_naming_it_for_another_family(
    gpt: openai.OpenAI, model: str
) -> None:
    messages: Any = [*_function_result(marker("function result"))]
    del messages[1]  # the result alone: its role is what no other family has
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.create(model=model, messages=messages, max_tokens=3)
    assert caught.value.param == "messages[1].role"
    assert "'function'" in str(caught.value.message)
