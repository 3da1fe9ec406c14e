"""The real ``openai`` and ``anthropic`` SDKs against Bedrock deployments through the gateway.

``test-bedrock`` signs with SigV4 (the simulator recomputes every signature), ``test-bedrock-
apikey`` sends a Bedrock API key as a bearer token, ``test-bedrock-badsecret`` signs with the
wrong secret.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, BEDROCK_MODEL, UPSTREAM_KEY
from tests.integration.sdk import OPEN_SCHEMA, user
from tests.support import CLIENT_KEY

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}
CLOCK: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}
SIGV4 = re.compile(
    rf"AWS4-HMAC-SHA256 Credential={AWS_ACCESS_KEY_ID}/\d{{8}}/us-east-1/bedrock/aws4_request, "
    r"SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}"
)


def recorded(simulator_url: str, marker: str) -> dict[str, Any]:
    """The last request the simulator received whose body mentions ``marker``."""
    for request in reversed(httpx.get(simulator_url + "/_sim/requests").json()):
        if marker in json.dumps(request["json"]):
            return dict(request)
    raise AssertionError(f"the simulator received no request mentioning {marker!r}")


def test_chat_is_signed_and_translated(gpt: openai.OpenAI, simulator_url: str) -> None:
    raw = gpt.chat.completions.with_raw_response.create(
        model="test-bedrock",
        messages=[{"role": "system", "content": "be kind"}, *user("openai to bedrock")],
        max_tokens=50,
    )
    completion = raw.parse()
    assert raw.headers["x-tollway-provider"] == "bedrock"
    assert completion.model == BEDROCK_MODEL
    assert "openai to bedrock" in (completion.choices[0].message.content or "")
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    request = recorded(simulator_url, "openai to bedrock")
    assert request["path"] == f"/model/{BEDROCK_MODEL}/converse"
    assert request["json"]["system"] == [{"text": "be kind"}]
    assert request["json"]["inferenceConfig"] == {"maxTokens": 50}
    headers = request["headers"]
    assert SIGV4.fullmatch(headers["authorization"])
    assert re.fullmatch(r"\d{8}T\d{6}Z", headers["x-amz-date"])
    assert CLIENT_KEY not in json.dumps(request)
    assert AWS_SECRET_ACCESS_KEY not in json.dumps(request)


def test_stream_with_usage(gpt: openai.OpenAI) -> None:
    chunks = list(
        gpt.chat.completions.create(
            model="test-bedrock",
            messages=user("stream from bedrock"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "stream from bedrock" in text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert chunks[-1].usage.completion_tokens == len(content_chunks)
    plain = gpt.chat.completions.create(model="test-bedrock", messages=user("stream from bedrock"))
    assert text == plain.choices[0].message.content


def test_tool_round_trip(gpt: openai.OpenAI, simulator_url: str) -> None:
    messages: list[Any] = user("bedrock weather in Oslo?")
    first = gpt.chat.completions.create(model="test-bedrock", messages=messages, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call: Any = (choice.message.tool_calls or [])[0]
    assert call.function.name == "get_weather"
    assert set(json.loads(call.function.arguments)) == {"city", "unit"}
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "bedrock snow, -3C"})
    second = gpt.chat.completions.create(model="test-bedrock", messages=messages, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    assert "bedrock snow, -3C" in (second.choices[0].message.content or "")
    body = recorded(simulator_url, "bedrock snow, -3C")["json"]
    result = body["messages"][-1]["content"][0]["toolResult"]
    assert result == {"toolUseId": call.id, "content": [{"text": "bedrock snow, -3C"}]}
    assert body["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"


def test_blank_text_and_empty_assistant_turns_are_not_sent(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    # Bedrock refuses a text block that is empty or only whitespace, and a turn without content.
    call = {
        "id": "tooluse_blank",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo", "unit": "c"}'},
    }
    messages: list[Any] = [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": " \n"},
        *user("first question"),
        {"role": "assistant", "content": ""},
        *user("bedrock blank turns, Oslo?"),
        {"role": "assistant", "content": "\n\n", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "tooluse_blank", "content": "blank snow, -3C"},
    ]
    answer = gpt.chat.completions.create(model="test-bedrock", messages=messages, tools=[WEATHER])
    assert "blank snow, -3C" in (answer.choices[0].message.content or "")
    body = recorded(simulator_url, "blank snow, -3C")["json"]
    assert body["system"] == [{"text": "be brief"}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"] == [
        {"text": "first question"},
        {"text": "bedrock blank turns, Oslo?"},
    ]
    assert [next(iter(b)) for b in body["messages"][1]["content"]] == ["toolUse"]


def test_streamed_parallel_tool_calls(gpt: openai.OpenAI) -> None:
    with gpt.chat.completions.stream(
        model="test-bedrock", messages=user("call both in parallel"), tools=[WEATHER, CLOCK]
    ) as stream:
        final = stream.get_final_completion()
    calls: Any = final.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert all(json.loads(c.function.arguments) for c in calls)
    assert final.choices[0].finish_reason == "tool_calls"


def test_json_mode_is_an_instruction_in_the_system_prompt(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    """Converse has no JSON mode: ``json_object`` is asked for in words, as for Claude."""
    gpt.chat.completions.create(
        model="test-bedrock",
        messages=user("bedrock any json"),
        response_format={"type": "json_object"},
    )
    sent = recorded(simulator_url, "bedrock any json")["json"]
    assert "JSON object" in sent["system"][-1]["text"]
    assert "outputConfig" not in sent


def test_limits_and_json_output(gpt: openai.OpenAI, simulator_url: str) -> None:
    capped = gpt.chat.completions.create(
        model="test-bedrock", messages=user("bedrock long"), max_tokens=3
    )
    assert capped.choices[0].finish_reason == "length"
    assert capped.usage is not None and capped.usage.completion_tokens == 3
    stopped = gpt.chat.completions.create(
        model="test-bedrock", messages=user("bedrock stop"), stop=[" bravo"]
    )
    assert (stopped.choices[0].message.content or "").endswith(" alpha")
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    structured = gpt.chat.completions.create(
        model="test-bedrock",
        messages=user("bedrock structured"),
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    assert set(json.loads(structured.choices[0].message.content or "")) == {"city"}
    text_format = recorded(simulator_url, "bedrock structured")["json"]["outputConfig"]
    sent = json.loads(text_format["textFormat"]["structure"]["jsonSchema"]["schema"])
    assert sent == {**schema, "additionalProperties": False}  # as Bedrock requires


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, openai.RateLimitError),
        (400, openai.BadRequestError),
        (403, openai.InternalServerError),  # AWS refused the gateway's credential: a 502
        (424, openai.InternalServerError),  # ModelErrorException: the model failed, a 502
        (500, openai.InternalServerError),
    ],
)
def test_upstream_errors_keep_their_meaning(
    gpt: openai.OpenAI, status: int, error: type[openai.APIStatusError]
) -> None:
    with pytest.raises(error) as caught:
        gpt.chat.completions.create(
            model="test-bedrock",
            messages=user("x"),
            extra_headers={"x-sim-fault": f"status:{status}"},
        )
    assert caught.value.status_code == (502 if status in (403, 424) or status >= 500 else status)
    if status == 403:
        assert caught.value.code == "upstream_permission_denied"
    else:
        assert "simulated fault" in caught.value.message
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "1"


@pytest.mark.parametrize(("fault", "status"), [("status:429", 429), ("hang", 504)])
def test_stream_failures_before_the_first_byte_are_plain_errors(
    gpt: openai.OpenAI, fault: str, status: int
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        gpt.chat.completions.create(
            model="test-bedrock",
            messages=user("x"),
            stream=True,
            extra_headers={"x-sim-fault": fault},
        )
    assert caught.value.status_code == status


def test_a_cut_stream_is_an_error(gpt: openai.OpenAI) -> None:
    stream = gpt.chat.completions.create(
        model="test-bedrock",
        messages=user("cut me off"),
        stream=True,
        extra_headers={"x-sim-fault": "stop-after:2"},
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_a_wrong_secret_is_refused_without_leaking_it(gpt: openai.OpenAI, gateway_url: str) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        gpt.chat.completions.create(model="test-bedrock-badsecret", messages=user("x"))
    assert caught.value.status_code == 502  # the gateway's credential, not the client's
    assert caught.value.code == "upstream_permission_denied"
    assert "sk-wrong-key-for-test-9876" not in json.dumps(caught.value.body)
    # What AWS said is the operator's to read.
    rows = httpx.get(
        gateway_url + "/admin/deployments", headers={"Authorization": f"Bearer {CLIENT_KEY}"}
    ).json()["data"]
    (row,) = [row for row in rows if row["group"] == "test-bedrock-badsecret"]
    assert "signature" in row["last_error_detail"]
    assert "sk-wrong-key-for-test-9876" not in json.dumps(row)


def test_a_bedrock_api_key_is_a_bearer_token(gpt: openai.OpenAI, simulator_url: str) -> None:
    completion = gpt.chat.completions.create(
        model="test-bedrock-apikey", messages=user("bearer to bedrock")
    )
    assert "bearer to bedrock" in (completion.choices[0].message.content or "")
    headers = recorded(simulator_url, "bearer to bedrock")["headers"]
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "x-amz-date" not in headers


def test_image_urls_and_n_are_400s(gpt: openai.OpenAI) -> None:
    image: Any = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with pytest.raises(openai.BadRequestError, match="base64"):
        gpt.chat.completions.create(
            model="test-bedrock", messages=[{"role": "user", "content": [image]}]
        )
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.create(model="test-bedrock", messages=user("x"), n=2)
    assert caught.value.param == "n"


def text_of(message: anthropic.types.Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def test_anthropic_sdk_message_and_stream(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model="test-bedrock", max_tokens=100, messages=user("claude via bedrock")
    )
    assert "claude via bedrock" in text_of(message)
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    with claude.messages.stream(
        model="test-bedrock", max_tokens=100, messages=user("claude via bedrock")
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == text_of(message) == text_of(final)
    assert final.usage.output_tokens == message.usage.output_tokens
    assert final.usage.input_tokens == message.usage.input_tokens


def test_count_tokens_is_the_gateways_estimate_and_calls_no_upstream(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    """Converse has no count: ``/v1/messages/count_tokens`` is the gateway's local estimate."""
    raw = claude.messages.with_raw_response.count_tokens(
        model="test-bedrock", system="be brief", messages=user("tally on bedrock " * 20)
    )
    assert raw.headers["x-tollway-token-count"] == "local"
    short = claude.messages.count_tokens(model="test-bedrock", messages=user("tally on bedrock"))
    assert raw.parse().input_tokens > short.input_tokens > 0
    # A marker no other test sends: the simulator records every test's requests.
    recorded_requests = httpx.get(simulator_url + "/_sim/requests").json()
    assert not [r for r in recorded_requests if "tally on bedrock" in json.dumps(r["json"])]


def test_anthropic_sdk_tools(claude: anthropic.Anthropic) -> None:
    tools: Any = [
        {"name": t["function"]["name"], "input_schema": t["function"]["parameters"]}
        for t in (WEATHER, CLOCK)
    ]
    question = user("anthropic weather via bedrock?")
    first = claude.messages.create(
        model="test-bedrock", max_tokens=200, messages=question, tools=tools[:1]
    )
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21C"}
    second = claude.messages.create(
        model="test-bedrock",
        max_tokens=200,
        tools=tools[:1],
        messages=[
            *question,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [result]},
        ],
    )
    assert second.stop_reason == "end_turn" and "sunny, 21C" in text_of(second)
    with claude.messages.stream(
        model="test-bedrock", max_tokens=200, messages=user("call both in parallel"), tools=tools
    ) as stream:
        final = stream.get_final_message()
    calls = [block for block in final.content if block.type == "tool_use"]
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert all(isinstance(c.input, dict) for c in calls) and final.stop_reason == "tool_use"


def test_the_stop_sequence_claude_on_bedrock_stopped_at_reaches_anthropic_clients(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    # Claude on Bedrock says which sequence it stopped at only when asked for it
    # (additionalModelResponseFieldPaths); Anthropic's clients read stop_reason and the
    # sequence, as an agent waiting for its own end marker does.
    stops = ["zulu", "charlie"]
    question = user("stop me at a sequence on bedrock")
    message = claude.messages.create(
        model="test-bedrock", max_tokens=100, messages=question, stop_sequences=stops
    )
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "charlie")
    assert text_of(message).endswith("alpha bravo")
    sent = recorded(simulator_url, "stop me at a sequence on bedrock")["json"]
    assert sent["additionalModelResponseFieldPaths"] == ["/stop_sequence"]
    with claude.messages.stream(
        model="test-bedrock", max_tokens=100, messages=question, stop_sequences=stops
    ) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "charlie")
    assert text_of(final) == text_of(message)
    plain = claude.messages.create(model="test-bedrock", max_tokens=100, messages=question)
    assert (plain.stop_reason, plain.stop_sequence) == ("end_turn", None)


@pytest.mark.parametrize("reason", ["model_context_window_exceeded", "stop_sequence"])
def test_a_stop_reason_claude_on_bedrock_shares_with_anthropic_reaches_anthropic_clients(
    claude: anthropic.Anthropic, reason: str
) -> None:
    # Converse's stop reasons for Claude are Anthropic's own words: a full context window is
    # not the client's max_tokens (which an agent would raise and retry), and a stop sequence
    # Bedrock did not name is still a stop sequence, not the end of the turn.
    headers = {"x-sim-finish-reason": reason}
    question = user("stop for a reason on bedrock")
    message = claude.messages.create(
        model="test-bedrock", max_tokens=100, messages=question, extra_headers=headers
    )
    assert (message.stop_reason, message.stop_sequence) == (reason, None)
    with claude.messages.stream(
        model="test-bedrock", max_tokens=100, messages=question, extra_headers=headers
    ) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == (reason, None)


CITED = "Cars pay 3 euros at the bridge."


def cited_document(marker: str) -> Any:
    document = {
        "type": "document",
        "title": "Toll schedule",
        "source": {"type": "text", "media_type": "text/plain", "data": CITED},
        "citations": {"enabled": True},
    }
    return [{"role": "user", "content": [document, {"type": "text", "text": marker}]}]


def test_bedrock_citations_of_a_document_reach_anthropic_clients(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    # Converse answers a document sent with citations on in citationsContent blocks; an
    # Anthropic client reads them as its own API says them: a text block with citations.
    message = claude.messages.create(
        model="test-bedrock", max_tokens=100, messages=cited_document("cite-bedrock-marker")
    )
    sent = recorded(simulator_url, "cite-bedrock-marker")["json"]["messages"][0]["content"][0]
    assert sent["document"]["citations"] == {"enabled": True}
    quoting = [block for block in message.content if block.type == "text" and block.citations]
    assert len(quoting) == 1 and quoting[0].text == CITED
    (citation,) = quoting[0].citations or ()
    assert citation.type == "char_location"
    assert (citation.cited_text, citation.document_index) == (CITED, 0)
    assert (citation.start_char_index, citation.end_char_index) == (0, len(CITED))
    assert CITED in text_of(message) and len(message.content) == 3
    # Streamed, ConverseStream's citation delta makes the quote a block of its own.
    with claude.messages.stream(
        model="test-bedrock", max_tokens=100, messages=cited_document("cite-bedrock-stream")
    ) as stream:
        final = stream.get_final_message()
    assert [block.model_dump() for block in final.content] == [
        block.model_dump() for block in message.content
    ]


def test_anthropic_only_features_are_refused_by_name(claude: anthropic.Anthropic) -> None:
    # (top_k is Claude's own field on Bedrock too: test_translation_settings.)
    server_tool: Any = {"type": "web_search_20250305", "name": "web_search"}
    with pytest.raises(anthropic.BadRequestError, match="web_search_20250305"):
        claude.messages.create(
            model="test-bedrock", max_tokens=5, messages=user("x"), tools=[server_tool]
        )


def test_an_anthropic_assistant_turn_keeps_its_block_order_on_bedrock(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    # Canonically a turn's text and its calls are two lists; each call remembers its place
    # (ToolCall.position) so Bedrock gets the blocks as the client (and the model) wrote them.
    tools: Any = [{"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}]
    turn: Any = [
        {"type": "text", "text": "Let me look that up."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
        {"type": "text", "text": "One moment."},
    ]
    result: Any = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "rainy, 9C"}
    answer = claude.messages.create(
        model="test-bedrock",
        max_tokens=200,
        tools=tools,
        messages=[
            *user("block order to bedrock?"),
            {"role": "assistant", "content": turn},
            {"role": "user", "content": [result]},
        ],
    )
    assert "rainy, 9C" in text_of(answer)
    sent = recorded(simulator_url, "block order to bedrock?")["json"]["messages"][1]
    assert sent == {
        "role": "assistant",
        "content": [
            {"text": "Let me look that up."},
            {"toolUse": {"toolUseId": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}},
            {"text": "One moment."},
        ],
    }


def test_anthropic_cache_hints_are_bedrock_cache_points(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    # Claude on Bedrock caches at a cachePoint block placed after what it caches; a client's
    # cache_control (on a system block, a tool, a content block, a tool result, or top-level:
    # the last block) becomes one there, its ttl kept, so the prompt is cached and billed so.
    ephemeral: Any = {"type": "ephemeral"}
    tools: Any = [
        {
            "name": "get_weather",
            "input_schema": WEATHER["function"]["parameters"],
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        }
    ]
    turn: Any = [{"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {}}]
    result: Any = {
        "type": "tool_result",
        "tool_use_id": "toolu_9",
        "content": "cloudy",
        "cache_control": ephemeral,
    }
    answer = claude.messages.create(
        model="test-bedrock",
        max_tokens=50,
        system=[{"type": "text", "text": "You are terse.", "cache_control": ephemeral}],
        tools=tools,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "cache to bedrock?", "cache_control": ephemeral}
                ],
            },
            {"role": "assistant", "content": turn},
            {"role": "user", "content": [result]},
        ],
    )
    sent = recorded(simulator_url, "cache to bedrock?")["json"]
    point, hour = (
        {"cachePoint": {"type": "default"}},
        {"cachePoint": {"type": "default", "ttl": "1h"}},
    )
    assert sent["system"] == [{"text": "You are terse."}, point]
    assert sent["toolConfig"]["tools"][1:] == [hour]
    assert "cache_control" not in json.dumps(sent)
    assert sent["messages"][0]["content"] == [{"text": "cache to bedrock?"}, point]
    assert sent["messages"][2]["content"][1:] == [point]
    assert answer.usage.cache_creation_input_tokens > 0 and answer.usage.input_tokens == 0
    claude.messages.create(
        model="test-bedrock",
        max_tokens=50,
        messages=user("automatic cache to bedrock?"),
        extra_body={"cache_control": ephemeral},
    )
    sent = recorded(simulator_url, "automatic cache to bedrock?")["json"]
    assert sent["messages"][-1]["content"][-1] == point


def test_a_failed_tool_result_is_an_error_status_on_bedrock(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    # Converse has Anthropic's is_error as the toolResult's status: the flag, not words.
    tools: Any = [{"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}]
    turn: Any = [{"type": "tool_use", "id": "toolu_8", "name": "get_weather", "input": {}}]
    result: Any = {
        "type": "tool_result",
        "tool_use_id": "toolu_8",
        "content": "no such city",
        "is_error": True,
    }
    claude.messages.create(
        model="test-bedrock",
        max_tokens=50,
        tools=tools,
        messages=[
            *user("failed tool to bedrock?"),
            {"role": "assistant", "content": turn},
            {"role": "user", "content": [result]},
        ],
    )
    sent = recorded(simulator_url, "failed tool to bedrock?")["json"]["messages"][2]["content"]
    assert sent == [
        {
            "toolResult": {
                "toolUseId": "toolu_8",
                "content": [{"text": "no such city"}],
                "status": "error",
            }
        }
    ]


def test_an_openai_clients_untyped_tool_schemas_reach_bedrock_as_objects(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    # OpenAI takes a function's parameters without "type" (``{}``: no arguments); Converse
    # refuses an inputSchema that does not say it is an object.
    tools: Any = [
        {"type": "function", "function": {"name": "get_time", "parameters": {}}},
        {"type": "function", "function": {"name": "get_weather",
         "parameters": {"properties": {"city": {"type": "string"}}}}},
    ]  # fmt: skip
    asked = "untyped tool schemas for bedrock"
    for stream in (False, True):
        answer = gpt.chat.completions.create(
            model="test-bedrock", messages=user(asked), tools=tools, stream=stream
        )
        if not stream:
            assert answer.choices[0].finish_reason == "tool_calls"  # type: ignore[union-attr]
        else:
            assert any(c.choices and c.choices[0].delta.tool_calls for c in answer)  # type: ignore[union-attr]
        sent = recorded(simulator_url, asked)["json"]["toolConfig"]["tools"]
        assert [tool["toolSpec"]["inputSchema"]["json"] for tool in sent] == [
            {"type": "object"},
            {"type": "object", "properties": {"city": {"type": "string"}}},
        ]


def test_an_openai_clients_open_json_schema_reaches_bedrock_closed(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    # OpenAI takes a schema that leaves additionalProperties unsaid (strict off); Bedrock's
    # structured output refuses every object without "additionalProperties": false.
    schema = copy.deepcopy(OPEN_SCHEMA)
    asked = "open schema for bedrock"
    answer = gpt.chat.completions.create(
        model="test-bedrock",
        messages=user(asked),
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    assert "city" in json.loads(answer.choices[0].message.content or "")
    text_format = recorded(simulator_url, asked)["json"]["outputConfig"]["textFormat"]
    sent = json.loads(text_format["structure"]["jsonSchema"]["schema"])
    assert sent["additionalProperties"] is False
    assert sent["properties"]["homes"]["items"]["additionalProperties"] is False
    assert schema == OPEN_SCHEMA  # the client's own left as it was


def test_a_streamed_call_without_arguments_has_an_empty_object_as_its_arguments(
    gpt: openai.OpenAI,
) -> None:
    # Bedrock streams a call without arguments with one empty input fragment: the client
    # still gets the JSON object OpenAI gives, as the complete answer has.
    clock: Any = {"type": "function", "function": {"name": "get_time", "parameters": {}}}
    ask: Any = {"model": "test-bedrock", "messages": user("what time is it"), "tools": [clock]}
    chunks = list(gpt.chat.completions.create(**ask, tool_choice="required", stream=True))
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()]
    assert calls[0].function is not None and calls[0].function.name == "get_time"
    arguments = "".join(call.function.arguments or "" for call in calls if call.function)
    assert json.loads(arguments) == {}
    whole = gpt.chat.completions.create(**ask, tool_choice="required")
    assert whole.choices[0].message.tool_calls is not None
    assert json.loads(whole.choices[0].message.tool_calls[0].function.arguments) == {}  # type: ignore[union-attr]


def test_a_stream_whose_metadata_comes_before_message_stop_still_ends_with_its_finish(
    gpt: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    # The stream was read only up to metadata: the finish after it never reached the client.
    events = {"x-sim-events": "metadata-first"}
    chunks = list(
        gpt.chat.completions.create(
            model="test-bedrock",
            messages=user("metadata before the stop"),
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=events,
        )
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    with claude.messages.stream(
        model="test-bedrock",
        max_tokens=100,
        messages=user("metadata before the stop"),
        extra_headers=events,
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


def test_a_stream_without_message_stop_is_an_error_even_with_its_metadata(
    gpt: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    ask: Any = {"model": "test-bedrock", "messages": user("never stopped"), "stream": True}
    stream = gpt.chat.completions.create(**ask, extra_headers={"x-sim-events": "no-stop"})
    with pytest.raises(openai.APIError, match="messageStop"):
        for _ in stream:
            pass
    with pytest.raises(anthropic.APIError, match="messageStop"):  # noqa: SIM117
        with claude.messages.stream(
            model="test-bedrock",
            max_tokens=100,
            messages=user("never stopped"),
            extra_headers={"x-sim-events": "no-stop"},
        ) as anthropic_stream:
            anthropic_stream.get_final_message()


def test_a_stream_without_metadata_still_ends_with_its_finish(gpt: openai.OpenAI) -> None:
    chunks = list(
        gpt.chat.completions.create(
            model="test-bedrock",
            messages=user("no metadata"),
            stream=True,
            extra_headers={"x-sim-events": "no-metadata"},
        )
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


# A Bedrock exception after the stream began, as each client API says its kind.
MID_STREAM = [
    ("throttlingException", "rate_limit_error", ("rate_limit_exceeded",)),
    ("modelStreamErrorException", "api_error", (None,)),
    ("validationException", "invalid_request_error", (None,)),
]


@pytest.mark.parametrize(("exception", "anthropic_type", "openai_codes"), MID_STREAM)
def test_an_exception_mid_stream_reaches_each_client_as_its_kind(
    gpt: openai.OpenAI,
    claude: anthropic.Anthropic,
    exception: str,
    anthropic_type: str,
    openai_codes: tuple[str | None, ...],
) -> None:
    said = json.dumps({"exception": exception, "message": f"bedrock says {exception}"})
    headers = {"x-sim-fault": "error-after:2", "x-sim-stream-error": said}
    stream = gpt.chat.completions.create(
        model="test-bedrock", messages=user("fail midway"), stream=True, extra_headers=headers
    )
    with pytest.raises(openai.APIError) as caught:
        for _ in stream:
            pass
    assert f"bedrock says {exception}" in caught.value.message
    assert caught.value.code in openai_codes, caught.value.body
    with pytest.raises(anthropic.APIError) as failed:  # noqa: SIM117
        with claude.messages.stream(
            model="test-bedrock", max_tokens=100, messages=user("fail midway"),
            extra_headers=headers,
        ) as anthropic_stream:  # fmt: skip
            anthropic_stream.get_final_message()
    body: Any = failed.value.body
    assert body["error"]["type"] == anthropic_type, body
    assert f"bedrock says {exception}" in body["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_an_exceeded_account_quota_is_a_rate_limit_not_the_clients_bad_request(
    gpt: openai.OpenAI, claude: anthropic.Anthropic, stream: bool
) -> None:
    # Bedrock answers ServiceQuotaExceededException with a 400, but it is the gateway's AWS
    # account that is out of quota ("resubmit your request later"), not the request at fault.
    headers = {"x-sim-fault": "status:400", "x-sim-error-type": "ServiceQuotaExceededException"}
    with pytest.raises(openai.RateLimitError) as caught:
        answer = gpt.chat.completions.create(
            model="test-bedrock", messages=user("over quota"), stream=stream,
            extra_headers=headers,
        )  # fmt: skip
        if stream:
            list(answer)  # type: ignore[arg-type]
    assert caught.value.code == "rate_limit_exceeded"
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(
            model="test-bedrock", max_tokens=50, messages=user("over quota"),
            stream=stream, extra_headers=headers,
        )  # fmt: skip


def _parallel_calls(marker: str) -> list[Any]:
    """A Chat Completions conversation: two calls answered out of order, then a question."""
    calls = [
        {"id": f"tooluse_{name}", "type": "function", "function": {"name": name, "arguments": "{}"}}
        for name in ("get_weather", "get_time")
    ]
    return [
        *user("weather and time in Oslo?"),
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "tooluse_get_time", "content": "noon"},
        {"role": "tool", "tool_call_id": "tooluse_get_weather", "content": "fog"},
        *user(marker),
    ]


def test_a_chat_clients_answered_calls_reach_bedrock_paired(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    # Converse refuses a toolUse the next turn does not answer, and a toolResult answering
    # no toolUse of the turn before: results and the question after them share one turn.
    marker = "paired calls to bedrock, and tomorrow?"
    messages = _parallel_calls(marker)
    answer = gpt.chat.completions.create(
        model="test-bedrock", messages=messages, tools=[WEATHER, CLOCK]
    )
    assert answer.choices[0].message.content or answer.choices[0].message.tool_calls
    sent = recorded(simulator_url, marker)["json"]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    uses = [b["toolUse"]["toolUseId"] for b in sent[1]["content"]]
    results = [b["toolResult"]["toolUseId"] for b in sent[2]["content"] if "toolResult" in b]
    assert sorted(uses) == sorted(results) == ["tooluse_get_time", "tooluse_get_weather"]


def test_a_responses_clients_answered_calls_reach_bedrock_paired(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    marker = "paired responses calls to bedrock, and tomorrow?"
    items: Any = [
        {"role": "user", "content": "weather and time in Oslo?"},
        *[
            {"type": "function_call", "call_id": f"tooluse_{n}", "name": n, "arguments": "{}"}
            for n in ("get_weather", "get_time")
        ],
        {"type": "function_call_output", "call_id": "tooluse_get_time", "output": "noon"},
        {"type": "function_call_output", "call_id": "tooluse_get_weather", "output": "fog"},
        {"role": "user", "content": marker},
    ]
    tools: Any = [{"type": "function", **tool["function"]} for tool in (WEATHER, CLOCK)]
    answer = gpt.responses.create(model="test-bedrock", input=items, tools=tools)
    assert answer.status == "completed"
    sent = recorded(simulator_url, marker)["json"]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    uses = [b["toolUse"]["toolUseId"] for b in sent[1]["content"]]
    results = [b["toolResult"]["toolUseId"] for b in sent[2]["content"] if "toolResult" in b]
    assert sorted(uses) == sorted(results)
