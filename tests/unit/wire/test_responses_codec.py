"""Responses codec: requests to canonical types; answers and chunk streams to Responses shapes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai import omit
from openai.lib.streaming.responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tollway.core.errors import InvalidRequest, UpstreamProtocolError, UpstreamTimeout
from tollway.core.types import (
    PDF,
    ChatChunk,
    ChatResponse,
    Choice,
    ChunkChoice,
    DocumentPart,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from tollway.wire.openai_request import request_to_wire
from tollway.wire.openai_response import chunk_from_wire, response_from_wire
from tollway.wire.responses_paths import client_param
from tollway.wire.responses_request import request_from_wire
from tollway.wire.responses_response import response_to_wire
from tollway.wire.responses_stream import StreamWriter

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


def parse(**body: Any) -> Any:
    return request_from_wire({"model": "m", "input": "hi", **body})


# --- requests ---------------------------------------------------------------------------------


def test_string_input_and_instructions_become_system_then_user() -> None:
    chat = parse(instructions="Be brief.", input="hello").chat
    assert [(m.role, m.content) for m in chat.messages] == [
        ("system", "Be brief."),
        ("user", "hello"),
    ]
    assert chat.model == "m" and chat.stream is False and chat.wire_format == "openai"


def test_message_items_with_parts() -> None:
    chat = parse(
        input=[
            {"role": "developer", "content": "rules"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": "https://x/cat.png", "detail": "low"},
                    {"type": "input_image", "image_url": "data:image/png;base64,iVBO"},
                    {"type": "input_file", "file_data": "data:application/pdf;base64,JVBE"},
                ],
            },
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_1",
                "status": "completed",
                "content": [
                    {"type": "output_text", "text": "a ", "annotations": []},
                    {"type": "output_text", "text": "cat"},
                ],
            },
        ]
    ).chat
    developer, user, assistant = chat.messages
    assert (developer.role, developer.content) == ("developer", "rules")
    assert user.content == [
        TextPart("look"),
        ImagePart(url="https://x/cat.png", detail="low"),
        ImagePart(data="iVBO", media_type="image/png"),
        DocumentPart("application/pdf", data="JVBE"),  # a PDF: any family reads it
    ]
    assert (assistant.role, assistant.content) == ("assistant", "a cat")


def test_function_calls_join_the_assistant_turn_and_outputs_become_tool_messages() -> None:
    chat = parse(
        input=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "Let me look."},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": '{"a":1}'},
            {"type": "function_call", "call_id": "c2", "name": "t", "arguments": "{}"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "noon"}],
            },
            {"type": "function_call", "call_id": "c3", "name": "w", "arguments": "{}"},
        ]
    ).chat
    roles = [m.role for m in chat.messages]
    assert roles == ["user", "assistant", "tool", "tool", "assistant"]
    assistant = chat.messages[1]
    assert assistant.content == "Let me look."
    assert assistant.tool_calls == [ToolCall("c1", "w", '{"a":1}'), ToolCall("c2", "t", "{}")]
    assert chat.messages[2] == Message(role="tool", content="sunny", tool_call_id="c1")
    assert chat.messages[3].content == [TextPart("noon")]
    assert chat.messages[4].content is None
    assert chat.messages[4].tool_calls == [ToolCall("c3", "w", "{}")]


def test_a_tool_result_may_hold_images_and_files() -> None:
    output = [
        {"type": "input_text", "text": "the photo"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBO", "detail": "low"},
        {"type": "input_file", "filename": "r.pdf", "file_data": "data:application/pdf;base64,JV"},
    ]
    call = {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"}
    answer = {"type": "function_call_output", "call_id": "c1", "output": output}
    chat = parse(input=[call, answer]).chat
    assert chat.messages[1].content == [
        TextPart("the photo"),
        ImagePart(data="iVBO", media_type="image/png", detail="low"),
        DocumentPart(PDF, data="JV", name="r.pdf"),
    ]


def test_an_openai_chat_deployment_is_sent_no_image_in_a_tool_result() -> None:
    image = {"type": "input_image", "image_url": "https://x/cat.png"}
    parsed = parse(
        input=[
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": [image]},
        ]
    )
    parsed.chat.responses_body = {}
    with pytest.raises(InvalidRequest) as caught:
        request_to_wire(parsed.chat, "gpt")
    assert caught.value.param == "messages[1].content[0]"
    assert client_param("messages[1].content[0]", parsed.origins) == "input[1].output[0]"


def test_settings_map_to_canonical_fields() -> None:
    chat = parse(
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        max_output_tokens=50,
        temperature=0.2,
        top_p=1,
        user="alice",
        text={"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}}},
        stream=True,
    ).chat
    assert chat.tools is not None and chat.tools[0].name == "get_weather"
    assert chat.tools[0].parameters == WEATHER["parameters"] and chat.tools[0].strict is True
    assert chat.tool_choice is not None
    assert (chat.tool_choice.mode, chat.tool_choice.name) == ("function", "get_weather")
    assert chat.parallel_tool_calls is False and chat.max_tokens == 50
    assert chat.temperature == 0.2 and chat.top_p == 1.0 and chat.user == "alice"
    assert chat.stream is True
    assert chat.response_format is not None
    assert chat.response_format.json_schema == {"name": "out", "schema": {"type": "object"}}


@pytest.mark.parametrize("kind", ["text", "json_object"])
def test_simple_text_formats(kind: str) -> None:
    fmt = parse(text={"format": {"type": kind}}).chat.response_format
    assert fmt is not None and fmt.type == kind


def test_chat_counterparts_travel_as_chat_extras() -> None:
    request = parse(
        reasoning={"effort": "low", "summary": "auto"},
        text={"verbosity": "low"},
        service_tier="flex",
        prompt_cache_key="k",
        safety_identifier="u1",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "x"}]}],
    )
    body = request_to_wire(request.chat, "upstream-model")
    assert body["reasoning_effort"] == "low" and body["verbosity"] == "low"
    assert body["service_tier"] == "flex" and body["prompt_cache_key"] == "k"
    assert body["safety_identifier"] == "u1"
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "x"}]}]
    assert body["model"] == "upstream-model"


def test_log_probabilities_are_asked_with_include_as_chat_completions_asks_them() -> None:
    include = ["message.output_text.logprobs"]
    assert parse(include=include).chat.extra == {"logprobs": True}
    assert parse(include=include, top_logprobs=3).chat.extra == {
        "logprobs": True,
        "top_logprobs": 3,
    }
    # top_logprobs alone asks for none, as OpenAI answers it.
    assert parse(top_logprobs=3, include=["reasoning.encrypted_content"]).chat.extra == {}


def test_log_probabilities_are_the_output_text_parts() -> None:
    scored = {"token": "Hi", "logprob": -0.5, "bytes": None, "top_logprobs": []}
    upstream = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi"},
                "logprobs": {"content": [scored], "refusal": None},
                "finish_reason": "stop",
            }
        ],
    }
    wire = response_to_wire(response_from_wire(upstream), parse().echo)
    part = Response.model_validate(wire).output[0].content[0]  # type: ignore[union-attr]
    assert part.type == "output_text"
    assert [token.model_dump() for token in part.logprobs or ()] == [
        {"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": []}
    ]


def test_max_output_tokens_is_named_as_the_openai_upstream_wants_it() -> None:
    chat = parse(max_output_tokens=50).chat
    # OpenAI's own API: its reasoning models (the Responses API's usual ones) refuse
    # max_tokens. It went as max_tokens, as if a Chat Completions client had chosen that name.
    official = request_to_wire(chat, "gpt-5", completion_tokens=True)
    assert official["max_completion_tokens"] == 50 and "max_tokens" not in official
    compatible = request_to_wire(chat, "llama")  # a server that may know only max_tokens
    assert compatible["max_tokens"] == 50 and "max_completion_tokens" not in compatible


def test_truncation_auto_reaches_the_router_and_disabled_is_the_default() -> None:
    assert parse(truncation="auto").chat.truncation == "auto"
    assert parse(truncation="disabled").chat.truncation == "disabled"
    default = parse()
    assert default.chat.truncation == "disabled" and default.echo["truncation"] == "disabled"


def test_echo_repeats_the_settings_and_says_nothing_is_stored() -> None:
    echo = parse(
        store=True,
        metadata={"team": "a"},
        tools=[WEATHER],
        instructions="hi",
        include=["reasoning.encrypted_content"],
        truncation="auto",
        background=False,
        previous_response_id=None,
    ).echo
    assert echo["store"] is False and echo["metadata"] == {"team": "a"}
    assert echo["tools"] == [WEATHER] and echo["tool_choice"] == "auto"
    assert echo["instructions"] == "hi" and echo["parallel_tool_calls"] is True
    assert echo["text"] == {"format": {"type": "text"}}
    assert echo["previous_response_id"] is None and echo["truncation"] == "auto"


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"background": True}, "background", "no response state"),
        ({"context_management": [{"type": "x"}]}, "context_management", "no response state"),
        ({"frobnicate": 1}, "frobnicate", "not supported"),
        (
            {"tools": [{"type": "function", "function": {"name": "f"}}]},
            "tools[0].name",
            "not nested",
        ),
        ({"tools": [{"type": "function"}]}, "tools[0].name", "required"),
        ({"tool_choice": "sometimes"}, "tool_choice", "tool_choice"),
        ({"tool_choice": {"name": "f"}}, "tool_choice", "tool_choice"),
        ({"input": [{"content": "x"}]}, "input[0].type", "None"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type", "json_schema"),
        ({"text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name", "name"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema", "sch"),
        ({"max_output_tokens": "many"}, "max_output_tokens", "integer"),
        ({"max_output_tokens": 0}, "max_output_tokens", "Expected a value >= 16, but got 0"),
        ({"max_output_tokens": 15}, "max_output_tokens", "integer below minimum value"),
        ({"top_logprobs": 21}, "top_logprobs", "Expected a value <= 20, but got 21"),
        ({"truncation": "middle"}, "truncation", "'auto' and 'disabled'"),
        ({"include": "reasoning.encrypted_content"}, "include", "array"),
        ({"tool_choice": "required"}, "tool_choice", "no 'tools'"),
        ({"tool_choice": {"type": "function", "name": "f"}}, "tool_choice", "no 'tools'"),
        ({"tool_choice": "required", "tools": []}, "tool_choice", "no 'tools'"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "mode": "none"}},
            "tool_choice.mode",
            "'auto' or 'required'",
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "mode": "auto"}},
            "tool_choice.tools",
            "required",
        ),
        (
            {
                "tools": [WEATHER],
                "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []},
            },
            "tool_choice.tools",
            "at least one",
        ),
        (
            {
                "tools": [WEATHER],
                "tool_choice": {
                    "type": "allowed_tools",
                    "mode": "auto",
                    "tools": [{"type": "function", "name": "get_news"}],
                },
            },
            "tool_choice.tools[0].name",
            "not among 'tools'",
        ),
        ({"metadata": "x"}, "metadata", "object"),
        ({"model": None}, "model", "required"),
        ({"input": None}, "input", "required"),
        ({"input": []}, "input", "non-empty"),
        ({"input": 3}, "input", "string"),
        ({"input": ["hi"]}, "input[0]", "object"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role", "one of"),
        ({"input": [{"role": "user", "content": 5}]}, "input[0].content", "string"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file"}]}]},
            "input[0].content[0]",
            "without its content",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
            "input[0].content[0].image_url",
            "required",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "input[0].content[0].type",
            "input_audio",
        ),
        (
            {
                "input": [
                    {
                        "role": "assistant",
                        "content": [{"type": "input_image", "image_url": "https://x"}],
                    }
                ]
            },
            "input[0].content",
            "only hold text",
        ),
        (
            {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
            "required",
        ),
        (
            {"input": [{"type": "function_call_output", "call_id": "c", "output": 1}]},
            "input[0].output",
            "string",
        ),
    ],
)
def test_unsupported_requests_are_400_naming_the_field(
    body: dict[str, Any], param: str, words: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        request_from_wire({"model": "m", "input": "hi", **body})
    assert caught.value.param == param
    assert words in caught.value.message


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id", "stored by the upstream"),
        ({"conversation": "conv_1"}, "conversation", "stored by the upstream"),
        ({"conversation": {"id": "conv_1"}}, "conversation", "stored by the upstream"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type", "'web_search'"),
        (
            {"tools": [WEATHER, {"type": "file_search", "vector_store_ids": ["vs_1"]}]},
            "tools[1].type",
            "'file_search'",
        ),
        ({"tools": [{"type": "custom", "name": "sql"}]}, "tools[0].type", "'custom'"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "web_search_preview"}},
            "tool_choice",
            "'web_search_preview'",
        ),
        (
            {
                "tools": [WEATHER],
                "tool_choice": {
                    "type": "allowed_tools",
                    "mode": "auto",
                    "tools": [{"type": "function", "name": "get_weather"}, {"type": "web_search"}],
                },
            },
            "tool_choice",
            "other than a function",
        ),
        (
            {"input": [{"type": "item_reference", "id": "msg_1"}]},
            "input[0]",
            "stored by the upstream",
        ),
        (
            {"input": [{"role": "user", "content": "hi"}, {"type": "web_search_call", "id": "ws"}]},
            "input[1].type",
            "'web_search_call'",
        ),
        ({"prompt": {"id": "pmpt_1"}}, "prompt", "instructions"),
        ({"prompt": {"id": "pmpt_1"}, "input": None}, "prompt", "template"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].file_id",
            "image_url",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0]",
            "file_data",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_url": "u"}]}]},
            "input[0].content[0]",
            "file_url",
        ),
        (
            {
                "input": [
                    {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                    {
                        "type": "function_call_output",
                        "call_id": "c",
                        "output": [{"type": "input_image", "file_id": "file-1"}],
                    },
                ]
            },
            "input[1].output[0].file_id",
            "stored on OpenAI",
        ),
    ],
)
def test_what_only_the_responses_api_serves_is_parsed_and_named(
    body: dict[str, Any], param: str, words: str
) -> None:
    # Not a 400 here: the router sends the request only to deployments that speak the
    # Responses API, and refuses it by this name when the model has none.
    chat = parse(**body).chat
    assert chat.responses_only is not None
    assert chat.responses_only.param == param
    assert words in chat.responses_only.why


def test_a_file_url_is_a_document_claude_fetches_and_openai_alone_else() -> None:
    url = "https://example.com/tolls.pdf"
    part = {"type": "input_file", "file_url": url, "filename": "tolls.pdf", "detail": "high"}
    chat = parse(input=[{"role": "user", "content": [part]}]).chat
    assert chat.messages[0].content == [DocumentPart(PDF, url=url, name="tolls.pdf")]
    only = chat.responses_only
    assert only is not None and only.param == "input[0].content[0]"
    assert only.translated_for == frozenset({"anthropic"}) and "file_url" in only.why


def test_a_file_url_does_not_hide_a_later_field_only_openai_serves() -> None:
    by_url = {"type": "input_file", "file_url": "https://example.com/a.pdf"}
    items = [
        {"role": "user", "content": [by_url]},
        {"type": "item_reference", "id": "msg_1"},
    ]
    only = parse(input=items).chat.responses_only
    assert only is not None and only.param == "input[1]" and not only.translated_for


def test_built_in_tools_stay_out_of_the_canonical_request_but_are_echoed() -> None:
    tools = [{"type": "web_search"}, WEATHER]
    parsed = parse(tools=tools, tool_choice="required", previous_response_id="resp_1")
    chat = parsed.chat
    assert chat.tools is not None and [tool.name for tool in chat.tools] == ["get_weather"]
    assert chat.responses_only is not None
    assert chat.responses_only.param == "previous_response_id"  # the first field named
    assert parsed.echo["tools"] == tools
    assert parsed.echo["previous_response_id"] == "resp_1"


def test_a_required_choice_among_built_in_tools_alone_is_not_refused() -> None:
    chat = parse(tools=[{"type": "web_search"}], tool_choice="required").chat
    assert chat.tools is None and chat.responses_only is not None


def test_allowed_function_tools_are_the_tools_offered_with_its_mode() -> None:
    news = {**WEATHER, "name": "get_news"}
    allowed = [{"type": "function", "name": "get_news"}]
    choice = {"type": "allowed_tools", "mode": "required", "tools": allowed}
    parsed = parse(tools=[WEATHER, news], tool_choice=choice)
    chat = parsed.chat
    assert chat.responses_only is None
    assert chat.tools is not None and [tool.name for tool in chat.tools] == ["get_news"]
    assert chat.tool_choice is not None and chat.tool_choice.mode == "required"
    assert parsed.echo["tools"] == [WEATHER, news] and parsed.echo["tool_choice"] == choice


def test_a_plain_request_needs_no_responses_api() -> None:
    assert parse(tools=[WEATHER], previous_response_id=None).chat.responses_only is None


# --- complete answers -------------------------------------------------------------------------


def answer(message: Message, finish: str = "stop", usage: Usage | None = None) -> ChatResponse:
    return ChatResponse(
        id="chatcmpl-1",
        model="up-model",
        created=1700000000,
        choices=[Choice(index=0, message=message, finish_reason=finish)],  # type: ignore[arg-type]
        usage=usage or Usage(input_tokens=10, output_tokens=4, cached_input_tokens=2),
    )


def test_text_answer_renders_a_completed_response() -> None:
    echo = parse(instructions="sys", metadata={"k": "v"}).echo
    wire = response_to_wire(answer(Message(role="assistant", content="Hello there")), echo)
    response = Response.model_validate(wire)
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.incomplete_details is None
    assert response.output_text == "Hello there"
    item = response.output[0]
    assert item.type == "message" and item.id.startswith("msg_") and item.status == "completed"
    assert response.model == "up-model" and response.created_at == 1700000000
    assert response.instructions == "sys" and response.metadata == {"k": "v"}
    assert wire["store"] is False and wire["error"] is None
    usage = response.usage
    assert usage is not None and usage.input_tokens == 10 and usage.output_tokens == 4
    assert usage.total_tokens == 14 and usage.input_tokens_details.cached_tokens == 2
    assert usage.output_tokens_details.reasoning_tokens == 0


def test_length_finish_is_incomplete_for_max_output_tokens() -> None:
    wire = response_to_wire(answer(Message(role="assistant", content="cut"), "length"), {})
    assert wire["status"] == "incomplete"
    assert wire["incomplete_details"] == {"reason": "max_output_tokens"}
    assert wire["output"][0]["status"] == "incomplete"


def test_a_call_cut_by_the_output_limit_is_the_incomplete_item() -> None:
    message = Message(
        role="assistant",
        content="Checking.",
        tool_calls=[ToolCall("call_a", "f", "{}"), ToolCall("call_b", "g", '{"x":')],
    )
    wire = response_to_wire(answer(message, "length"), parse().echo)
    assert wire["status"] == "incomplete"
    assert wire["incomplete_details"] == {"reason": "max_output_tokens"}
    # The limit cut the answer's end: the last call, not the text before the calls.
    assert [item["status"] for item in wire["output"]] == ["completed", "completed", "incomplete"]
    Response.model_validate(wire)


def test_tool_calls_render_function_call_items() -> None:
    message = Message(
        role="assistant",
        content="Checking.",
        tool_calls=[
            ToolCall("call_a", "get_weather", '{"city":"Paris"}'),
            ToolCall("call_b", "t", "{}"),
        ],
    )
    wire = response_to_wire(answer(message, "tool_calls"), parse(tools=[WEATHER]).echo)
    response = Response.model_validate(wire)
    assert [item.type for item in response.output] == ["message", "function_call", "function_call"]
    call = response.output[1]
    assert call.type == "function_call" and call.id is not None and call.id.startswith("fc_")
    assert (call.call_id, call.name, call.arguments) == (
        "call_a",
        "get_weather",
        '{"city":"Paris"}',
    )
    assert response.status == "completed" and response.output_text == "Checking."
    only_calls = response_to_wire(
        answer(Message(role="assistant", tool_calls=[ToolCall("c", "f", "{}")]), "tool_calls"), {}
    )
    assert [item["type"] for item in only_calls["output"]] == ["function_call"]


REFUSAL = "I'm sorry, I can't help with that."


def test_an_openai_refusal_is_the_messages_refusal_part() -> None:
    upstream = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "refusal": REFUSAL},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 8, "total_tokens": 17},
    }
    wire = response_to_wire(response_from_wire(upstream), parse().echo)
    response = Response.model_validate(wire)
    item = response.output[0]
    assert item.type == "message" and response.status == "completed"
    assert [part.model_dump() for part in item.content] == [
        {"type": "refusal", "refusal": REFUSAL}
    ]  # it was an empty output_text: the words lost, and a parse of "" failing
    assert response.output_text == ""


# --- streams ----------------------------------------------------------------------------------


def chunk(
    content: str | None = None,
    calls: list[ToolCallDelta] | None = None,
    finish: str | None = None,
    usage: Usage | None = None,
    index: int = 0,
) -> ChatChunk:
    choice = ChunkChoice(index=index, content=content, tool_calls=calls, finish_reason=finish)  # type: ignore[arg-type]
    return ChatChunk("chatcmpl-1", "up-model", 1700000000, [] if usage else [choice], usage=usage)


def run(chunks: list[ChatChunk], echo: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    writer = StreamWriter(echo if echo is not None else parse().echo)
    data = b"".join(writer.feed(c) for c in chunks) + writer.finish()
    return frames(data)


def frames(data: bytes) -> list[dict[str, Any]]:
    events = []
    for frame in data.decode().split("\n\n")[:-1]:
        head, body = frame.split("\n")
        event = orjson.loads(body.removeprefix("data: "))
        assert head == "event: " + event["type"]
        EVENTS.validate_python(event)  # every event is one the SDK knows, with its fields
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def test_text_stream_event_order_indices_and_final_response() -> None:
    usage = Usage(input_tokens=5, output_tokens=2)
    events = run([chunk(""), chunk("Hel"), chunk("lo"), chunk(finish="stop"), chunk(usage=usage)])
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    created = events[0]["response"]
    assert created["status"] == "in_progress" and created["output"] == []
    item_id = events[2]["item"]["id"]
    assert all(e["item_id"] == item_id and e["output_index"] == 0 for e in events[3:8])
    assert [e["delta"] for e in events[4:6]] == ["Hel", "lo"]
    assert events[6]["text"] == "Hello" and events[6]["content_index"] == 0
    final = Response.model_validate(events[-1]["response"])
    assert final.id == created["id"] and final.status == "completed"
    assert final.output_text == "Hello" and final.output[0].id == item_id
    assert final.usage is not None and final.usage.total_tokens == 7


def test_tool_call_stream_closes_each_item_before_the_next() -> None:
    events = run(
        [
            chunk("Sure."),
            chunk(calls=[ToolCallDelta(0, id="call_a", name="get_weather")]),
            chunk(calls=[ToolCallDelta(0, arguments='{"city":')]),
            chunk(calls=[ToolCallDelta(0, arguments='"Paris"}')]),
            chunk(calls=[ToolCallDelta(1, id="call_b", name="t", arguments="{}")]),
            chunk(finish="tool_calls"),
        ]
    )
    kinds = [e["type"] for e in events]
    assert kinds[8:] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    first_call = events[8]["item"]
    assert (first_call["call_id"], first_call["name"]) == ("call_a", "get_weather")
    assert first_call["status"] == "in_progress" and first_call["arguments"] == ""
    assert events[8]["output_index"] == 1 and events[13]["output_index"] == 2
    assert events[11]["arguments"] == '{"city":"Paris"}' and events[11]["name"] == "get_weather"
    final = Response.model_validate(events[-1]["response"])
    assert [item.type for item in final.output] == ["message", "function_call", "function_call"]
    assert final.output[1].type == "function_call"
    assert final.output[1].call_id == "call_a" and final.output[1].arguments == '{"city":"Paris"}'


def test_interleaved_tool_calls_become_one_item_after_another() -> None:
    # As some OpenAI-compatible servers stream parallel calls: every header, then in turn.
    writer = StreamWriter(parse().echo)
    fed = [
        writer.feed(c)
        for c in (
            chunk("Sure."),
            chunk(calls=[ToolCallDelta(0, id="call_a", name="get_weather")]),
            chunk(calls=[ToolCallDelta(1, id="call_b", name="get_time")]),
            chunk(calls=[ToolCallDelta(0, arguments='{"city":')]),
            chunk(calls=[ToolCallDelta(1, arguments='{"zone":')]),
            chunk(calls=[ToolCallDelta(0, arguments='"Paris"}')]),
            chunk(calls=[ToolCallDelta(2, id="call_c", name="noop", arguments="{}")]),
            chunk(calls=[ToolCallDelta(1, arguments='"CET"}')]),
            chunk(finish="tool_calls"),
            chunk(usage=Usage(3, 9)),
        )
    ]
    # The first call streams live; the ones that start while it is open wait for its end.
    assert b"response.function_call_arguments.delta" in fed[3]
    assert fed[2] == fed[4] == fed[6] == fed[7] == b""
    events = frames(b"".join(fed) + writer.finish())
    calls = [e for e in events if e["type"] == "response.output_item.added"][1:]
    assert [(e["output_index"], e["item"]["call_id"]) for e in calls] == [
        (1, "call_a"),
        (2, "call_b"),
        (3, "call_c"),
    ]
    kinds = [e["type"] for e in events]
    per_call = [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    assert kinds[8:] == [
        *per_call[:2],
        *per_call[1:],  # the first call's two live fragments
        *per_call,
        *per_call,
        "response.completed",
    ]
    for first, last in ((8, 12), (13, 16), (17, 20)):  # each item's events name it alone
        item_id, output_index = events[first]["item"]["id"], events[first]["output_index"]
        for e in events[first + 1 : last + 1]:
            assert (e["item_id"] if "item_id" in e else e["item"]["id"]) == item_id
            assert e["output_index"] == output_index
    assert events[15]["arguments"] == '{"zone":"CET"}' and events[15]["name"] == "get_time"
    final = Response.model_validate(events[-1]["response"])
    assert final.status == "completed"
    assert [(i.type, getattr(i, "arguments", None)) for i in final.output] == [
        ("message", None),
        ("function_call", '{"city":"Paris"}'),
        ("function_call", '{"zone":"CET"}'),
        ("function_call", "{}"),
    ]
    # The SDK's stream accumulator, which checks every item's identity, builds each call's
    # arguments from its own deltas.
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=[], text_format=omit)
    handled = [e for raw in events for e in state.handle_event(EVENTS.validate_python(raw))]
    assert [e.snapshot for e in handled if e.type == "response.function_call_arguments.delta"] == [
        '{"city":',
        '{"city":"Paris"}',
        '{"zone":"CET"}',
        "{}",
    ]


def test_text_after_held_tool_calls_follows_their_items() -> None:
    writer = StreamWriter(parse().echo)
    data = b"".join(
        writer.feed(c)
        for c in (
            chunk(calls=[ToolCallDelta(0, id="a", name="f", arguments='{"x":')]),
            chunk(calls=[ToolCallDelta(1, id="b", name="g", arguments='{"y":')]),
            chunk(calls=[ToolCallDelta(0, arguments="1}")]),
            chunk(calls=[ToolCallDelta(1, arguments="2}")]),
            chunk("Done."),
        )
    )
    # An item cannot reopen: more of a call after the text that followed it is an error.
    with pytest.raises(UpstreamProtocolError, match="after other content"):
        writer.feed(chunk(calls=[ToolCallDelta(0, arguments=" ")]))
    events = frames(data + writer.finish())
    final = Response.model_validate(events[-1]["response"])
    assert [(i.type, getattr(i, "arguments", None)) for i in final.output] == [
        ("function_call", '{"x":1}'),
        ("function_call", '{"y":2}'),
        ("message", None),
    ]
    assert final.output_text == "Done."


def test_length_stream_ends_with_response_incomplete() -> None:
    events = run([chunk("cut"), chunk(finish="length"), chunk(usage=Usage(1, 1))])
    assert events[-1]["type"] == "response.incomplete"
    response = events[-1]["response"]
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert events[-2]["item"]["status"] == "incomplete"


def test_a_streamed_call_cut_by_the_output_limit_is_incomplete() -> None:
    events = run(
        [
            chunk("Checking."),
            chunk(calls=[ToolCallDelta(0, id="call_a", name="f", arguments='{"x":')]),
            chunk(finish="length"),
            chunk(usage=Usage(3, 4)),
        ]
    )
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [(item["type"], item["status"]) for item in done] == [
        ("message", "completed"),
        ("function_call", "incomplete"),  # it was "completed", its arguments cut short
    ]
    last = events[-1]
    assert last["type"] == "response.incomplete"
    final = Response.model_validate(last["response"])
    assert final.status == "incomplete" and final.incomplete_details is not None
    assert final.incomplete_details.reason == "max_output_tokens"
    assert [item.status for item in final.output] == ["completed", "incomplete"]


def test_held_calls_cut_by_the_output_limit_end_with_the_incomplete_one() -> None:
    events = run(
        [
            chunk(calls=[ToolCallDelta(0, id="call_a", name="f", arguments='{"x":')]),
            chunk(calls=[ToolCallDelta(1, id="call_b", name="g", arguments='{"y":')]),
            chunk(calls=[ToolCallDelta(0, arguments="1}")]),
            chunk(finish="length"),
        ]
    )
    final = Response.model_validate(events[-1]["response"])
    assert final.status == "incomplete"
    assert [(item.status, getattr(item, "arguments", None)) for item in final.output] == [
        ("completed", '{"x":1}'),
        ("incomplete", '{"y":'),
    ]


def test_empty_stream_is_one_empty_message_and_other_choices_are_ignored() -> None:
    events = run([chunk("other", index=1), chunk(finish="stop")])
    final = Response.model_validate(events[-1]["response"])
    assert final.output_text == "" and len(final.output) == 1


def test_error_after_the_first_byte_is_an_error_event_in_sequence() -> None:
    writer = StreamWriter(parse().echo)
    data = writer.feed(chunk("partial"))
    data += writer.error(UpstreamTimeout("upstream went quiet", phase="first_byte"))
    events = frames(data)
    assert events[-2] == {
        "type": "error",
        "sequence_number": len(events) - 2,
        "code": "upstream_first_byte_timeout",
        "message": "upstream went quiet",
        "param": None,
    }
    failed = events[-1]
    assert failed["type"] == "response.failed" and failed["sequence_number"] == len(events) - 1
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "server_error", "message": "upstream went quiet"}
    assert failed["response"]["output"] == []  # the cut-off message is not passed off as done


def test_a_streamed_openai_refusal_is_a_refusal_part_with_its_events() -> None:
    def upstream(delta: dict[str, Any], finish: str | None = None) -> ChatChunk:
        return chunk_from_wire(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": "gpt-4o",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

    chunks = [
        upstream({"role": "assistant", "content": "", "refusal": None}),
        upstream({"refusal": "I'm sorry, "}),
        upstream({"refusal": "I can't help with that."}),
        upstream({}, "stop"),
    ]
    events = run(chunks)
    kinds = [e["type"] for e in events]
    assert kinds[2:-1] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.refusal.delta",
        "response.refusal.delta",
        "response.refusal.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert events[3]["part"] == {"type": "refusal", "refusal": ""}
    assert events[6]["refusal"] == REFUSAL
    # The SDK's stream helper assembles it as the real API's stream.
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=[], text_format=omit)
    for event in events:
        state.handle_event(EVENTS.validate_python(event))
    final = Response.model_validate(events[-1]["response"])
    assert [part.model_dump() for part in final.output[0].content] == [  # type: ignore[union-attr]
        {"type": "refusal", "refusal": REFUSAL}
    ]
