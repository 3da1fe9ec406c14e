"""A Responses client's 400s name its own fields (``input[3].arguments``), whichever family
refuses the request, never the Chat Completions names the gateway uses inside
(``messages[2].tool_calls[0].function.arguments``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support import CLIENT_KEY

PDF = "data:application/pdf;base64,JVBERi0xLjQK"


@pytest.fixture(scope="module")
def client(gateway_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway_url + "/v1", api_key=CLIENT_KEY, max_retries=0) as c:
        yield c


def refused(client: openai.OpenAI, **asked: Any) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(**asked)
    return caught.value


def call(call_id: str, arguments: str) -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": "f", "arguments": arguments}


def output(call_id: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": "42"}


F_TOOL: Any = {"type": "function", "name": "f", "parameters": {"type": "object"}}


@pytest.mark.parametrize("model", ["test-claude", "test-gemini", "test-bedrock"])
def test_a_call_whose_arguments_are_not_an_object_names_its_item(
    client: openai.OpenAI, model: str
) -> None:
    # The instructions are message 0 and the two calls join the assistant turn before them:
    # the second call is messages[2].tool_calls[1] inside the gateway, input[3] to the client.
    error = refused(
        client,
        model=model,
        instructions="be brief",
        tools=[F_TOOL],
        input=[
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "calling"},
            call("c1", "{}"),
            call("c2", "[1, 2]"),
            output("c1"),
            output("c2"),
        ],
    )
    assert error.param == "input[3].arguments"
    assert "'input[3].arguments'" in error.message and "messages" not in error.message


def test_a_result_for_no_call_names_its_call_id(client: openai.OpenAI) -> None:
    # Gemini names a result by its function: one answering no call cannot be sent.
    error = refused(
        client,
        model="test-gemini",
        input=[{"role": "user", "content": "go"}, call("c1", "{}"), output("c9")],
    )
    assert error.param == "input[2].call_id" and "'input[2].call_id'" in error.message


@pytest.mark.parametrize("model", ["test-claude", "test-gemini", "test-bedrock"])
def test_a_file_another_family_cannot_read_names_its_part(
    client: openai.OpenAI, model: str
) -> None:
    content = [
        {"type": "input_text", "text": "read this"},
        # A PDF's bytes cross to every family; a file by its OpenAI id cannot.
        {"type": "input_file", "file_id": "file-abc123"},
    ]
    error = refused(
        client, model=model, instructions="x", input=[{"role": "user", "content": content}]
    )
    assert error.param == "input[0].content[1]"


@pytest.mark.parametrize("model", ["test-claude", "test-gemini", "test-bedrock"])
def test_an_image_in_a_developer_message_names_its_content(
    client: openai.OpenAI, model: str
) -> None:
    content = [{"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]
    error = refused(
        client,
        model=model,
        input=[{"role": "developer", "content": content}, {"role": "user", "content": "hi"}],
    )
    assert error.param == "input[0].content" and "system messages" in error.message


def test_raw_http_gets_the_same_path(gateway_url: str) -> None:
    body = {
        "model": "test-claude",
        "input": [{"role": "user", "content": "go"}, call("c1", "not json"), output("c1")],
        "tools": [F_TOOL],
    }
    answer = httpx.post(
        gateway_url + "/v1/responses",
        json=body,
        headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        timeout=30,
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "input[1].arguments"


def test_the_count_of_input_tokens_names_the_clients_fields(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.input_tokens.count(
            model="test-claude",
            tools=[F_TOOL],
            input=[{"role": "user", "content": "go"}, call("c1", "[]"), output("c1")],
        )
    assert caught.value.param == "input[1].arguments"


def test_an_upstreams_own_400_names_the_clients_item(client: openai.OpenAI) -> None:
    # OpenAI's Chat Completions refuses a call turn its tool results do not follow at once as
    # 'messages.[2].role' (its dot and all, the instructions being message 0): the client
    # sent that turn as input[1].
    error = refused(
        client,
        model="test-chat",
        instructions="x",
        input=[
            {"role": "user", "content": "go"},
            call("c1", "{}"),
            {"role": "assistant", "content": "between"},
            output("c1"),
        ],
    )
    assert error.param == "input[1]" and "did not have response messages: c1" in error.message


@pytest.mark.parametrize("model", ["test-claude", "test-gemini", "test-bedrock"])
def test_an_empty_assistant_turn_before_the_refused_one_shifts_nothing(
    client: openai.OpenAI, model: str
) -> None:
    # The empty assistant turn (message 1) is left out for Claude, which refuses empty
    # content; the call after it is still input[3], not the item before.
    error = refused(
        client,
        model=model,
        tools=[F_TOOL],
        input=[
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "again"},
            call("c1", "[1, 2]"),
            output("c1"),
        ],
    )
    assert error.param == "input[3].arguments"


def test_an_openai_clients_error_names_its_own_message_after_an_empty_turn(
    gateway_url: str,
) -> None:
    chat = openai.OpenAI(base_url=gateway_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    with chat, pytest.raises(openai.BadRequestError) as caught:
        chat.chat.completions.create(
            model="test-claude",
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
            messages=[
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "again"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "[1]"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ],
        )
    assert caught.value.param == "messages[3].tool_calls[0].function.arguments"


OPEN_TIME_TOOL: Any = {
    "type": "function",
    "name": "get_time",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    "strict": True,  # an open object: OpenAI's strict mode refuses it
}
ONLY_TIME: Any = {
    "type": "allowed_tools",
    "mode": "auto",
    "tools": [{"type": "function", "name": "get_time"}],
}


def test_an_upstreams_400_on_an_allowed_tool_names_the_clients_tool(
    client: openai.OpenAI,
) -> None:
    # allowed_tools leaves get_weather out of what the deployment is offered: get_time is its
    # tools[0], and the client's tools[1].
    error = refused(
        client, model="test-chat", input="what time", tools=[F_TOOL, OPEN_TIME_TOOL],
        tool_choice=ONLY_TIME,
    )  # fmt: skip
    assert error.param == "tools[1].parameters"


def test_a_tool_field_another_family_cannot_take_names_the_clients_tool(
    client: openai.OpenAI,
) -> None:
    # A flat tool's own field is its function's; Claude has no place for it (a 400 by name).
    time_tool = {**OPEN_TIME_TOOL, "strict": False, "examples": ["UTC"]}
    error = refused(
        client, model="test-claude", input="what time", tools=[F_TOOL, time_tool],
        tool_choice=ONLY_TIME,
    )  # fmt: skip
    assert error.param == "tools[1].examples"
    assert "'tools[1].examples'" in error.message


def test_the_count_of_input_tokens_names_the_clients_tool(client: openai.OpenAI) -> None:
    time_tool = {**OPEN_TIME_TOOL, "strict": False, "examples": ["UTC"]}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.input_tokens.count(
            model="test-claude", input="what time", tools=[F_TOOL, time_tool],
            tool_choice=ONLY_TIME,
        )  # fmt: skip
    assert caught.value.param == "tools[1].examples"


@pytest.mark.parametrize("model", ["test-chat", "test-claude", "test-gemini", "test-bedrock"])
def test_a_tool_choice_naming_no_offered_function_names_tool_choice(
    client: openai.OpenAI, model: str, simulator_url: str
) -> None:
    # Refused before any upstream, alike for every family: Claude's, Gemini's and Bedrock's
    # refusals named no field, and a lenient upstream would have called another tool.
    sent_before = len(httpx.get(simulator_url + "/_sim/requests").json())
    error = refused(
        client,
        model=model,
        input="go",
        tools=[F_TOOL],
        tool_choice={"type": "function", "name": "get_news"},
    )
    assert error.param == "tool_choice" and "'get_news'" in error.message
    assert len(httpx.get(simulator_url + "/_sim/requests").json()) == sent_before


@pytest.mark.parametrize(
    ("metadata", "param", "code"),
    [
        ({"attempt": 3}, "metadata.attempt", "invalid_type"),
        ({f"key{i}": "v" for i in range(17)}, "metadata", "object_above_max_properties"),
        ({"note": "x" * 513}, "metadata.note", "string_above_max_length"),
        ({"k" * 65: "v"}, "metadata", "string_above_max_length"),
    ],
)
def test_metadata_openai_refuses_is_refused(
    client: openai.OpenAI, metadata: Any, param: str, code: str
) -> None:
    error = refused(client, model="test-claude", input="go", metadata=metadata)
    assert error.param == param and error.code == code


def test_metadata_at_openais_limits_is_echoed(client: openai.OpenAI) -> None:
    metadata = {f"{i:064d}": "x" * 512 for i in range(16)}
    response = client.responses.create(model="test-gemini", input="go", metadata=metadata)
    assert response.metadata == metadata


def test_an_include_value_openai_does_not_know_is_refused(client: openai.OpenAI) -> None:
    # Ignored before, so a misspelt value ("reasoning.encrypted") silently did nothing.
    include: Any = ["reasoning.encrypted_content", "reasoning.encrypted"]
    error = refused(client, model="test-claude", input="go", include=include)
    assert error.param == "include[1]" and error.code == "invalid_value"
    assert "'reasoning.encrypted'" in error.message
    # Every value OpenAI takes is still accepted (those with no effect here, too).
    accepted = client.responses.create(
        model="test-claude", input="go", include=["reasoning.encrypted_content"]
    )
    assert accepted.status == "completed"


@pytest.mark.parametrize("model", ["test-chat", "test-claude", "test-gemini", "test-bedrock"])
def test_a_result_answering_no_call_is_refused_for_every_family(
    client: openai.OpenAI, model: str
) -> None:
    # Claude and Bedrock deployments were sent it, and answered as if no call were missing.
    error = refused(
        client,
        model=model,
        input=[{"role": "user", "content": "go"}, call("c1", "{}"), output("c1"), output("c9")],
    )
    assert error.param == "input[3].call_id"
    assert "No tool call found for function call output with call_id c9" in error.message


def test_a_result_may_answer_a_call_of_a_stored_response(gateway_url: str) -> None:
    # With previous_response_id the call is the upstream's to know: not refused for it, but
    # (no Responses deployment here) for needing a Responses upstream.
    body = {"model": "test-chat", "previous_response_id": "resp_1", "input": [output("c9")]}
    answer = httpx.post(
        gateway_url + "/v1/responses",
        json=body,
        headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        timeout=30,
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "previous_response_id"


OUT_OF_BOUNDS = [
    # (field, value, code, OpenAI's words): its documented bounds, as its API answers them.
    ("max_output_tokens", 15, "integer_below_min_value",
     "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, "
     "but got 15 instead."),
    ("max_output_tokens", 0, "integer_below_min_value", "Expected a value >= 16, but got 0"),
    ("top_logprobs", 21, "integer_above_max_value",
     "Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20, "
     "but got 21 instead."),
    ("top_logprobs", -1, "integer_below_min_value", "Expected a value >= 0, but got -1"),
    ("temperature", 2.5, "decimal_above_max_value", "Expected a value <= 2, but got 2.5"),
    ("temperature", -0.1, "decimal_below_min_value", "Expected a value >= 0, but got -0.1"),
    ("top_p", 1.5, "decimal_above_max_value", "Expected a value <= 1, but got 1.5"),
]  # fmt: skip


@pytest.mark.parametrize("model", ["test-chat", "test-claude", "test-gemini", "test-bedrock"])
@pytest.mark.parametrize(("field", "value", "code", "words"), OUT_OF_BOUNDS)
def test_a_value_past_openais_bounds_is_refused_before_any_upstream(
    client: openai.OpenAI,
    simulator_url: str,
    model: str,
    field: str,
    value: float,
    code: str,
    words: str,
) -> None:
    # A max_output_tokens below 16 reached the upstream: OpenAI refuses it, other families
    # took it, so the same request was a 400 or an answer by where it was routed.
    sent_before = len(httpx.get(simulator_url + "/_sim/requests").json())
    error = refused(client, model=model, input="go", **{field: value})
    assert error.status_code == 400 and error.type == "invalid_request_error"
    assert (error.param, error.code) == (field, code)
    assert words in error.message
    assert len(httpx.get(simulator_url + "/_sim/requests").json()) == sent_before


def test_a_max_output_tokens_of_16_is_served(client: openai.OpenAI) -> None:
    response = client.responses.create(model="test-claude", input="go", max_output_tokens=16)
    assert response.max_output_tokens == 16 and response.status in ("completed", "incomplete")
