"""The real ``openai`` and ``anthropic`` SDKs against Gemini deployments, through a gateway process.

``test-gemini`` is a Gemini API deployment on the simulator, ``test-vertex`` the same model
reached the Vertex AI way; what the simulator recorded proves the wire body, the URL and the
credential the gateway sent.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from aiohttp import web

from tests.conftest import UPSTREAM_KEY
from tests.integration.in_process import gateway_in_process, serving
from tests.integration.sdk import user
from tests.support import CLIENT_KEY, running_gateway, wait_for_ids

BOTH = pytest.mark.parametrize("model", ["test-gemini", "test-vertex"])
PATHS = {
    "test-gemini": "/v1beta/models/sim-chat",
    "test-vertex": "/v1/projects/test/locations/europe-west4/publishers/google/models/sim-chat",
}
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
    "required": ["city", "unit"],
}
WEATHER: Any = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER_SCHEMA},
}
TIME: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}


def recorded(simulator_url: str, marker: str) -> dict[str, Any]:
    """The last request the simulator received whose body mentions ``marker``."""
    for request in reversed(httpx.get(simulator_url + "/_sim/requests").json()):
        if marker in json.dumps(request["json"]):
            return dict(request)
    raise AssertionError(f"the simulator received no request mentioning {marker!r}")


@BOTH
def test_chat_sends_gemini_json_with_the_deployments_credential(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    marker = f"plain chat on {model}"
    raw = gpt.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "system", "content": "be brief"}, *user(marker)],
        max_tokens=50,
        temperature=0.5,
        stop=["zulu"],
        seed=7,
        user="alice",
    )
    completion = raw.parse()
    assert raw.headers["x-tollway-provider"] == model.removeprefix("test-").replace(
        "vertex", "vertex_ai"
    )
    choice = completion.choices[0]
    assert marker in (choice.message.content or "") and choice.finish_reason == "stop"
    assert completion.model == "sim-chat"
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    sent = recorded(simulator_url, marker)
    assert sent["path"] == PATHS[model] + ":generateContent"
    assert sent["json"] == {
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [{"role": "user", "parts": [{"text": marker}]}],
        "generationConfig": {
            "temperature": 0.5,
            "maxOutputTokens": 50,
            "stopSequences": ["zulu"],
            "seed": 7,
        },
    }
    headers = sent["headers"]
    if model == "test-gemini":
        assert headers["x-goog-api-key"] == UPSTREAM_KEY and "authorization" not in headers
    else:
        assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert "x-goog-api-key" not in headers
    assert CLIENT_KEY not in json.dumps(sent)


@BOTH
def test_stream_with_usage_matches_the_plain_answer(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    marker = f"stream me on {model}"
    plain = gpt.chat.completions.create(model=model, messages=user(marker))
    chunks = list(
        gpt.chat.completions.create(
            model=model,
            messages=user(marker),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage == plain.usage
    pieces = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert chunks[-1].usage.completion_tokens == len(pieces)
    sent = recorded(simulator_url, marker)
    assert sent["path"] == PATHS[model] + ":streamGenerateContent"
    assert sent["query"] == {"alt": "sse"} and "stream" not in sent["json"]


def test_stream_without_include_usage_has_no_usage_chunk(gpt: openai.OpenAI) -> None:
    chunks = list(gpt.chat.completions.create(model="test-gemini", messages=user("x"), stream=True))
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)


@BOTH
def test_tool_round_trip_maps_results_back_to_the_function(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    messages: list[Any] = user(f"weather in Oslo via {model}?")
    first = gpt.chat.completions.create(model=model, messages=messages, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call: Any = (choice.message.tool_calls or [])[0]
    assert re.fullmatch("call_[a-z]{8}_0_get_weather", call.id)
    assert call.function.name == "get_weather"
    assert set(json.loads(call.function.arguments)) == {"city", "unit"}
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "snowing, -3C"})
    second = gpt.chat.completions.create(model=model, messages=messages, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    assert "snowing, -3C" in (second.choices[0].message.content or "")
    body = recorded(simulator_url, "snowing, -3C")["json"]
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather",
                    "parametersJsonSchema": WEATHER_SCHEMA,
                }
            ]
        }
    ]
    model_turn, result_turn = body["contents"][1:]
    assert model_turn["role"] == "model"
    assert model_turn["parts"][0]["functionCall"] == {
        "name": "get_weather",
        "args": json.loads(call.function.arguments),
    }
    assert model_turn["parts"][0]["thoughtSignature"] == "skip_thought_signature_validator"
    assert result_turn == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"output": "snowing, -3C"}}}
        ],
    }


@BOTH
def test_empty_turns_and_empty_text_are_not_sent(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    # Google refuses an empty text part ("empty text parameter") and a content without parts;
    # a client replays empty turns, e.g. an answer that said nothing (MALFORMED_FUNCTION_CALL).
    marker = f"after an empty answer on {model}"
    messages: list[Any] = [
        {"role": "system", "content": ""},
        *user("first question"),
        {"role": "assistant", "content": ""},
        {
            "role": "user",
            "content": [{"type": "text", "text": ""}, {"type": "text", "text": marker}],
        },
    ]
    answer = gpt.chat.completions.create(model=model, messages=messages)
    assert marker in (answer.choices[0].message.content or "")
    body = recorded(simulator_url, marker)["json"]
    assert "systemInstruction" not in body
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "first question"}]},
        {"role": "user", "parts": [{"text": marker}]},
    ]


@pytest.mark.parametrize(
    ("tool_choice", "calling"),
    [
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_time"]},
        ),
    ],
)
def test_tool_choice_becomes_function_calling_config(
    gpt: openai.OpenAI, simulator_url: str, tool_choice: Any, calling: dict[str, Any]
) -> None:
    marker = f"tool choice {calling['mode']} {len(calling)}"
    answer = gpt.chat.completions.create(
        model="test-gemini", messages=user(marker), tools=[WEATHER, TIME], tool_choice=tool_choice
    )
    body = recorded(simulator_url, marker)["json"]
    assert body["toolConfig"] == {"functionCallingConfig": calling}
    calls = answer.choices[0].message.tool_calls or []
    expected = {"none": [], "required": ["get_weather"]}.get(str(tool_choice), ["get_time"])
    assert [c.function.name for c in calls] == expected  # type: ignore[union-attr]


def test_streamed_parallel_tool_calls_assemble(gpt: openai.OpenAI) -> None:
    with gpt.chat.completions.stream(
        model="test-gemini", messages=user("call both in parallel"), tools=[WEATHER, TIME]
    ) as stream:
        final = stream.get_final_completion()
    calls: Any = final.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    key = calls[0].id.split("_")[1]  # the answer's
    assert [c.id for c in calls] == [f"call_{key}_0_get_weather", f"call_{key}_1_get_time"]
    assert all(json.loads(c.function.arguments) for c in calls)
    assert final.choices[0].finish_reason == "tool_calls"


def test_json_output_becomes_response_mime_type_and_schema(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    structured = gpt.chat.completions.create(
        model="test-gemini",
        messages=user("structured please"),
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    assert set(json.loads(structured.choices[0].message.content or "")) == {"city"}
    config = recorded(simulator_url, "structured please")["json"]["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    loose = gpt.chat.completions.create(
        model="test-gemini",
        messages=user("any json please"),
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(loose.choices[0].message.content or ""), dict)
    config = recorded(simulator_url, "any json please")["json"]["generationConfig"]
    assert config == {"responseMimeType": "application/json"}


def test_grounding_sources_are_the_answers_url_citations(gpt: openai.OpenAI) -> None:
    # Google measures a grounded segment in UTF-8 bytes of its part; OpenAI's url_citation in
    # characters of the message: "café ☕" before the cited word is 3 bytes longer than it is.
    answer = gpt.chat.completions.create(
        model="test-gemini", messages=user("café ☕ today"), max_tokens=6, web_search_options={}
    )
    message = answer.choices[0].message
    text = message.content or ""
    assert text.endswith("café ☕ today")
    (annotation,) = message.annotations or []
    citation = annotation.url_citation
    assert annotation.type == "url_citation"
    assert (citation.url, citation.title) == ("https://example.com/simulated-result", "example.com")
    assert text[citation.start_index : citation.end_index] == "today"


def test_n_becomes_candidate_count(gpt: openai.OpenAI, simulator_url: str) -> None:
    completion = gpt.chat.completions.create(model="test-gemini", messages=user("two of them"), n=2)
    assert [c.index for c in completion.choices] == [0, 1]
    assert "#2" in (completion.choices[1].message.content or "")
    generation = recorded(simulator_url, "two of them")["json"]["generationConfig"]
    assert generation["candidateCount"] == 2


def test_upstream_rate_limit_keeps_retry_after(gpt: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        gpt.chat.completions.create(
            model="test-gemini",
            messages=user("x"),
            extra_headers={"x-sim-fault": "status:429", "x-sim-retry-after": "7"},
        )
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"  # OpenAI's, not Google's RESOURCE_EXHAUSTED


def test_upstream_server_error_becomes_502(gpt: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        gpt.chat.completions.create(
            model="test-vertex", messages=user("x"), extra_headers={"x-sim-fault": "status:500"}
        )
    assert caught.value.status_code == 502


def test_stream_cut_by_the_upstream_ends_with_an_error(gpt: openai.OpenAI) -> None:
    stream = gpt.chat.completions.create(
        model="test-gemini",
        messages=user("cut me off"),
        stream=True,
        extra_headers={"x-sim-fault": "stop-after:2"},
    )
    seen = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            seen.append(chunk)
    assert 1 <= len(seen) <= 2


@pytest.mark.parametrize("stream", [False, True])
def test_a_rejected_key_is_the_deployments_credential_failing_not_the_clients_400(
    gpt: openai.OpenAI, stream: bool
) -> None:
    # The Gemini API answers a wrong key with a 400 INVALID_ARGUMENT (ErrorInfo reason
    # API_KEY_INVALID). It was passed on as the client's 400, "API key not valid": words that
    # read as the client's own key being wrong, for a request another deployment could serve.
    with pytest.raises(openai.APIStatusError) as caught:
        gpt.chat.completions.create(model="test-gemini-badkey", messages=user("x"), stream=stream)
    assert not isinstance(caught.value, openai.BadRequestError)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_authentication_failed"
    assert "refused the gateway's credential" in caught.value.message
    assert "API key not valid" not in caught.value.message
    assert "sk-wrong-key-for-test-9876" not in caught.value.response.text


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        # Gemini lists at most 20 alternatives, and only with responseLogprobs.
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"reasoning_effort": "xhigh"}, "reasoning_effort"),  # no budget Google documents
    ],
)
def test_openai_features_gemini_lacks_are_400s_naming_them(
    gpt: openai.OpenAI, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.create(model="test-gemini", messages=user("x"), **extra)
    assert caught.value.param == param


@BOTH
def test_logprobs_are_gemini_response_logprobs_both_ways(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    answer = gpt.chat.completions.create(
        model=model, messages=user(f"logprobs-marker {model}"), logprobs=True, top_logprobs=2
    )
    config = recorded(simulator_url, f"logprobs-marker {model}")["json"]["generationConfig"]
    assert (config["responseLogprobs"], config["logprobs"]) == (True, 2)
    choice = answer.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    tokens = choice.logprobs.content
    assert "".join(token.token for token in tokens) == choice.message.content
    for token in tokens:
        assert token.logprob < 0 and token.bytes == list(token.token.encode())
        assert len(token.top_logprobs) == 2 and token.top_logprobs[0].token == token.token
    # Streamed, each chunk carries its own tokens'; together they are the answer's.
    streamed = [
        token
        for chunk in gpt.chat.completions.create(
            model=model, messages=user(f"logprobs-marker {model}"), logprobs=True, stream=True
        )
        for choice_delta in chunk.choices
        for token in (choice_delta.logprobs.content or () if choice_delta.logprobs else ())
    ]
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in tokens]
    assert all(t.top_logprobs == [] for t in streamed)  # no top_logprobs asked
    plain = gpt.chat.completions.create(model=model, messages=user("no logprobs"))
    assert plain.choices[0].logprobs is None


def test_audio_content_is_a_400_naming_its_type(gpt: openai.OpenAI) -> None:
    audio: Any = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    with pytest.raises(openai.BadRequestError, match="input_audio"):
        gpt.chat.completions.create(
            model="test-gemini", messages=[{"role": "user", "content": [audio]}]
        )


def test_storage_hints_are_dropped_and_unknown_fields_never_sent(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    gpt.chat.completions.create(
        model="test-gemini",
        messages=user("hints are dropped"),
        store=True,
        metadata={"team": "a"},
        extra_body={"prompt_cache_key": "k"},
    )
    body = recorded(simulator_url, "hints are dropped")["json"]
    assert set(body) == {"contents"}


def test_images_become_inline_data_and_file_data(gpt: openai.OpenAI, simulator_url: str) -> None:
    parts: Any = [
        {"type": "text", "text": "two pictures"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    gpt.chat.completions.create(model="test-gemini", messages=[{"role": "user", "content": parts}])
    body = recorded(simulator_url, "two pictures")["json"]
    assert body["contents"][0]["parts"] == [
        {"text": "two pictures"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"fileUri": "https://example.com/cat.jpg", "mimeType": "image/jpeg"}},
    ]


def test_an_image_urls_type_is_read_from_its_path_whatever_its_query(
    gpt: openai.OpenAI, simulator_url: str
) -> None:
    url = "https://cdn.example.com/cat.webp?sig=abc&size=large"
    parts: Any = [
        {"type": "text", "text": "signed picture"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    gpt.chat.completions.create(model="test-gemini", messages=[{"role": "user", "content": parts}])
    body = recorded(simulator_url, "signed picture")["json"]
    assert body["contents"][0]["parts"][1] == {
        "fileData": {"fileUri": url, "mimeType": "image/webp"}
    }


@pytest.mark.parametrize("model", ["test-gemini", "test-vertex"])
def test_an_image_url_that_does_not_tell_its_type_is_a_400_naming_the_part(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    # Gemini requires fileData.mimeType; a guess would be a wrong answer or Google's 400.
    marker = f"untyped picture {model}"
    parts: Any = [
        {"type": "text", "text": marker},
        {"type": "image_url", "image_url": {"url": "https://example.com/photo?id=3"}},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.create(
            model=model,
            messages=[
                {"role": "system", "content": "describe"},
                {"role": "user", "content": parts},
            ],
        )
    assert caught.value.param == "messages[1].content[1]"
    assert "data: URL" in caught.value.message
    sent = httpx.get(simulator_url + "/_sim/requests").json()
    assert not any(marker in str(request["json"]) for request in sent)


def test_embeddings_float_and_base64(gpt: openai.OpenAI, simulator_url: str) -> None:
    floats = gpt.embeddings.create(
        model="test-gemini-embed", input=["one two", "three"], dimensions=8, encoding_format="float"
    )
    packed = gpt.embeddings.create(
        model="test-gemini-embed", input=["one two", "three"], dimensions=8
    )
    assert [len(item.embedding) for item in floats.data] == [8, 8]
    for a, b in zip(floats.data, packed.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding)
    assert floats.usage.prompt_tokens == 3
    sent = recorded(simulator_url, "one two")
    assert sent["path"] == "/v1beta/models/sim-embed:batchEmbedContents"
    assert sent["json"]["requests"][0] == {
        "model": "models/sim-embed",
        "content": {"parts": [{"text": "one two"}]},
        "outputDimensionality": 8,
    }


def test_anthropic_sdk_message_on_a_gemini_deployment(
    claude: anthropic.Anthropic, simulator_url: str
) -> None:
    message = claude.messages.create(
        model="test-gemini", max_tokens=100, system="be kind", messages=user("claude to gemini")
    )
    text = "".join(block.text for block in message.content if block.type == "text")
    assert "claude to gemini" in text and message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    body = recorded(simulator_url, "claude to gemini")["json"]
    assert body["systemInstruction"] == {"parts": [{"text": "be kind"}]}
    assert body["generationConfig"] == {"maxOutputTokens": 100}


def test_anthropic_sdk_stream_on_a_gemini_deployment(claude: anthropic.Anthropic) -> None:
    plain = claude.messages.create(model="test-gemini", max_tokens=100, messages=user("stream"))
    with claude.messages.stream(
        model="test-gemini", max_tokens=100, messages=user("stream")
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "".join(b.text for b in plain.content if b.type == "text")
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.usage.input_tokens == plain.usage.input_tokens


def test_anthropic_sdk_tool_round_trip_on_a_gemini_deployment(
    claude: anthropic.Anthropic,
) -> None:
    tool: Any = {"name": "get_weather", "input_schema": WEATHER_SCHEMA}
    question = user("weather in Paris, says claude?")
    first = claude.messages.create(
        model="test-gemini", max_tokens=200, messages=question, tools=[tool]
    )
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and set(call.input) == {"city", "unit"}  # type: ignore[arg-type]
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21C"}
    second = claude.messages.create(
        model="test-gemini",
        max_tokens=200,
        tools=[tool],
        messages=[
            *question,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [result]},
        ],
    )
    assert second.stop_reason == "end_turn"
    assert "sunny, 21C" in "".join(b.text for b in second.content if b.type == "text")


def test_every_gemini_answer_names_its_tool_calls_with_ids_of_its_own(
    claude: anthropic.Anthropic, gpt: openai.OpenAI, simulator_url: str
) -> None:
    # Gemini's calls carry no id. Ids made from a call's place alone came back the same in
    # every answer that called the same tool first: Anthropic's API refuses a conversation
    # with a repeated tool_use id, and clients (Claude Code) pair results with calls by id.
    tool: Any = {"name": "get_weather", "input_schema": WEATHER_SCHEMA}
    turns: list[Any] = []
    ids: list[str] = []
    for city in ("Paris", "Lyon"):
        question = user(f"unique ids: weather in {city}?")
        answer = claude.messages.create(
            model="test-gemini", max_tokens=200, messages=question, tools=[tool]
        )
        call = next(block for block in answer.content if block.type == "tool_use")
        ids.append(call.id)
        result = {"type": "tool_result", "tool_use_id": call.id, "content": f"rain in {city}"}
        if turns:
            turns.append({"role": "assistant", "content": "Noted."})
        turns += [
            *question,
            {"role": "assistant", "content": answer.content},
            {"role": "user", "content": [result]},
        ]
    with claude.messages.stream(
        model="test-gemini", max_tokens=200, messages=user("unique ids, streamed"), tools=[tool]
    ) as stream:
        streamed = [b.id for b in stream.get_final_message().content if b.type == "tool_use"]
    listed = gpt.chat.completions.create(
        model="test-gemini", messages=user("unique ids, openai"), tools=[WEATHER]
    )
    ids += streamed + [c.id for c in listed.choices[0].message.tool_calls or []]
    assert len(ids) == len(set(ids)) == 4, ids
    # The whole conversation goes back: each result finds its function by its call's id.
    final = claude.messages.create(
        model="test-gemini", max_tokens=200, messages=turns, tools=[tool]
    )
    assert "rain in Lyon" in "".join(b.text for b in final.content if b.type == "text")
    sent = recorded(simulator_url, "rain in Lyon")["json"]["contents"]
    responses = [p["functionResponse"] for c in sent for p in c["parts"] if "functionResponse" in p]
    assert [r["name"] for r in responses] == ["get_weather", "get_weather"]
    # A result whose call the client trimmed from the conversation still names its function
    # (Gemini refuses such a turn, as Claude would: the 400 comes back in Anthropic's shape).
    trimmed = [
        *user("trimmed"),
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": ids[1], "content": "hail"}],
        },
    ]
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(model="test-gemini", max_tokens=200, messages=trimmed, tools=[tool])
    sent = recorded(simulator_url, "hail")["json"]["contents"]
    assert sent[-1]["parts"][-1]["functionResponse"]["name"] == "get_weather"
    # An id stays within the 40 characters OpenAI takes, whatever the function's name.
    long: Any = {"name": "search_the_company_knowledge_base", "input_schema": WEATHER_SCHEMA}
    question = user("unique ids, long name")
    answer = claude.messages.create(
        model="test-gemini", max_tokens=200, messages=question, tools=[long]
    )
    call = next(block for block in answer.content if block.type == "tool_use")
    assert len(call.id) <= 40 and call.id not in ids
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "found the docs"}
    turns = [*question, {"role": "assistant", "content": answer.content}]
    turns.append({"role": "user", "content": [result]})
    claude.messages.create(model="test-gemini", max_tokens=200, messages=turns, tools=[long])
    sent = recorded(simulator_url, "found the docs")["json"]["contents"]
    assert sent[-1]["parts"][-1]["functionResponse"]["name"] == long["name"]


def test_anthropic_sdk_count_tokens_asks_gemini(claude: anthropic.Anthropic) -> None:
    kwargs: dict[str, Any] = {"system": "be brief", "messages": user("count these words")}
    raw = claude.messages.with_raw_response.count_tokens(model="test-gemini", **kwargs)
    assert "x-tollway-token-count" not in raw.headers
    used = claude.messages.create(model="test-gemini", max_tokens=5, **kwargs).usage
    assert raw.parse().input_tokens == used.input_tokens


@pytest.fixture(scope="module")
def google(log_dir: Path, simulator_url: str) -> Iterator[str]:
    """A gateway with the chat groups of both flavors on its embedded simulator, and
    embedding groups of both on the simulator process (one gateway for the two tests below)."""

    def chat(name: str, provider: str) -> dict[str, Any]:
        deployment = {"provider": provider, "model": "sim-chat", "api_base": "embedded-simulator"}
        return {"name": name, "deployments": [deployment]}

    def embedding(name: str, provider: str, model: str, base: str) -> dict[str, Any]:
        deployment = {"provider": provider, "model": model, "api_base": base, "api_key": "env:KEY"}
        return {"name": name, "kind": "embedding", "deployments": [deployment]}

    vertex = f"{simulator_url}/v1/projects/test/locations/europe-west4"
    config = {
        "simulator": {"enabled": True},
        "models": [
            chat("sim-gemini", "gemini"),
            chat("sim-vertex", "vertex_ai"),
            embedding("batched", "gemini", "sim-embed", simulator_url),
            embedding("predicted", "vertex_ai", "text-embedding-005", vertex),
            embedding("one-by-one", "vertex_ai", "gemini-embedding-001", vertex),
        ],
    }
    with running_gateway(log_dir, config, {"KEY": UPSTREAM_KEY}) as (url, _):
        yield url


def test_both_flavors_reach_the_embedded_simulator(google: str) -> None:
    url = google
    client = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    answers = [
        client.chat.completions.create(model=name, messages=user(f"hi {name}"))
        for name in ("sim-gemini", "sim-vertex")
    ]
    client.close()
    for name, answer in zip(("sim-gemini", "sim-vertex"), answers, strict=True):
        assert f"hi {name}" in (answer.choices[0].message.content or "")


def test_many_inputs_are_split_into_the_batches_google_takes(google: str) -> None:
    # OpenAI takes 2,048 inputs a call; Google takes 100 a batchEmbedContents, 250 a Vertex
    # predict, and one for a gemini-embedding model there. 150 texts were sent as one call,
    # and the client got Google's 400 for a request OpenAI's API serves. (The groups:
    # "batched" on the Gemini API, "predicted" and "one-by-one" on Vertex; see ``google``.)
    url = google
    texts = [f"text number {index}" for index in range(260)]
    with openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0) as client:
        for model, count in (("batched", 260), ("predicted", 260), ("one-by-one", 7)):
            floats = client.embeddings.create(
                model=model, input=texts[:count], dimensions=4, encoding_format="float"
            )
            packed = client.embeddings.create(model=model, input=texts[:count], dimensions=4)
            assert [item.index for item in floats.data] == list(range(count))
            alone = client.embeddings.create(
                model=model, input=texts[count - 1], dimensions=4, encoding_format="float"
            )
            assert floats.data[-1].embedding == alone.data[0].embedding  # in input order
            for a, b in zip(floats.data, packed.data, strict=True):
                assert a.embedding == pytest.approx(b.embedding)
            assert floats.usage.prompt_tokens == 3 * count  # every batch's tokens


async def _first_batch_only(request: web.Request) -> web.Response:
    """A Gemini API upstream that answers batches of plain texts at once and fails a batch
    holding a text that says "late" (after the others were answered), as an overloaded
    Google does; three tokens a text."""
    body = await request.json()
    texts = [item["content"]["parts"][0]["text"] for item in body["requests"]]
    if any("late" in text for text in texts):
        await asyncio.sleep(0.3)
        error = {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}
        return web.json_response({"error": error}, status=503)
    embeddings = [{"values": [0.1, 0.2, 0.3, 0.4]} for _ in texts]
    return web.json_response(
        {"embeddings": embeddings, "usageMetadata": {"promptTokenCount": 3 * len(texts)}}
    )


async def test_batches_a_first_deployment_answered_are_charged_when_a_fallback_answers(
    tmp_path: Path, simulator_url: str
) -> None:
    # 150 texts are two batches on the first deployment: it answered the first (100 texts,
    # 300 tokens, billed by Google) and failed the second, so the backup answered all 150.
    # Only the backup's 450 tokens were charged: the 300 the first one billed were lost.
    app = web.Application()
    app.router.add_post("/v1beta/models/{call}", _first_batch_only)

    def deployment(ident: str, api_base: str, input_price: float) -> dict[str, Any]:
        return {
            "provider": "gemini",
            "model": "sim-embed",
            "api_base": api_base,
            "api_key": "env:TEST_UPSTREAM_KEY",
            "id": ident,
            "price": {"input": input_price, "output": 0},
        }

    texts = [f"text number {index}" for index in range(100)]
    texts += [f"late text {index}" for index in range(50)]
    admin = {"authorization": f"Bearer {CLIENT_KEY}"}
    async with serving(app) as upstream:
        first = deployment("split-first", upstream, 1000)
        backup = deployment("split-backup", simulator_url, 10)
        config = {
            "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}"},
            "server": {"reload_interval": None},
            "models": [{"name": "split", "kind": "embedding", "deployments": [first, backup]}],
            "telemetry": {"request_log": {"flush_interval": "0.1s"}},
        }
        async with (
            gateway_in_process(config) as (url, _),
            httpx.AsyncClient(headers=admin) as http,
        ):
            answer = await http.post(
                url + "/v1/embeddings",
                json={"model": "split", "input": texts, "encoding_format": "float"},
                headers={"x-request-id": "split-fallback"},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-tollway-deployment"] == "split-backup"
            assert answer.json()["usage"]["prompt_tokens"] == 450  # the answer's own
            charged = 300 * 1000 / 1e6 + 450 * 10 / 1e6
            assert float(answer.headers["x-tollway-cost-usd"]) == pytest.approx(charged)
            logged = await asyncio.to_thread(
                wait_for_ids,
                lambda: httpx.get(url + "/admin/logs?since=1h", headers=admin).json()["data"],
                {"split-fallback"},
                "logged",
            )
    row = logged["split-fallback"]
    assert row["input_tokens"] == 750  # billed by both deployments
    assert row["cost_usd"] == pytest.approx(charged)
