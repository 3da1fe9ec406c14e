"""The simulator's Gemini API and Vertex AI endpoints on a real socket, by plain HTTP."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tollway.simulator import Simulator, SimulatorSettings

KEY = "gemini-test-key"
GEMINI = "/v1beta/models/sim-chat"
VERTEX = "/v1/projects/p1/locations/us-east5/publishers/google/models/sim-chat"
HELLO: Any = {"contents": [{"role": "user", "parts": [{"text": "hello there world"}]}]}
WEATHER: Any = {
    "functionDeclarations": [
        {
            "name": "get_weather",
            "parametersJsonSchema": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city", "days"],
            },
        },
        {"name": "get_time", "parameters": {"type": "OBJECT", "properties": {}}},
    ]
}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on a fresh simulator that requires ``KEY``."""
    async with Simulator(SimulatorSettings(api_key=KEY)) as sim:
        headers = {"x-goog-api-key": KEY}
        async with httpx.AsyncClient(base_url=sim.url, headers=headers, timeout=10) as http:
            yield http


def sse_objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects of a Gemini SSE body (``data:`` lines only, no terminal marker)."""
    assert "[DONE]" not in text and "event:" not in text
    return [json.loads(line[6:]) for line in text.split("\r\n") if line.startswith("data: ")]


def text_of(answer: dict[str, Any], index: int = 0) -> str:
    parts = answer["candidates"][index]["content"]["parts"]
    return "".join(part.get("text", "") for part in parts)


async def test_generate_content_answers_text_with_consistent_usage(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(GEMINI + ":generateContent", json=HELLO)
    assert response.status_code == 200
    answer = response.json()
    assert text_of(answer).startswith("Simulated reply to: hello there world alpha")
    candidate = answer["candidates"][0]
    assert candidate["finishReason"] == "STOP" and candidate["content"]["role"] == "model"
    usage = answer["usageMetadata"]
    assert usage["candidatesTokenCount"] == 16  # the default output_tokens
    assert usage["promptTokenCount"] == 3 + 3  # one message of three words
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + 16
    assert answer["modelVersion"] == "sim-chat" and answer["responseId"]


async def test_max_output_tokens_and_stop_sequences(client: httpx.AsyncClient) -> None:
    short = {**HELLO, "generationConfig": {"maxOutputTokens": 3}}
    answer = (await client.post(GEMINI + ":generateContent", json=short)).json()
    assert answer["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert answer["usageMetadata"]["candidatesTokenCount"] == 3
    stopped = {**HELLO, "generationConfig": {"stopSequences": [" bravo"]}}
    answer = (await client.post(GEMINI + ":generateContent", json=stopped)).json()
    assert text_of(answer).endswith(" alpha")
    assert answer["candidates"][0]["finishReason"] == "STOP"


async def test_stream_is_sse_of_response_objects_ending_with_the_finish(
    client: httpx.AsyncClient,
) -> None:
    plain = (await client.post(GEMINI + ":generateContent", json=HELLO)).json()
    response = await client.post(GEMINI + ":streamGenerateContent?alt=sse", json=HELLO)
    assert response.headers["content-type"].startswith("text/event-stream")
    objects = sse_objects(response.text)
    assert len(objects) == 16 + 1  # one object per token, then the finish
    assert "".join(text_of(o) for o in objects) == text_of(plain)
    assert all("finishReason" not in o["candidates"][0] for o in objects[:-1])
    last = objects[-1]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"] == plain["usageMetadata"]
    assert [o["usageMetadata"]["candidatesTokenCount"] for o in objects[:3]] == [1, 2, 3]


async def test_stream_without_alt_sse_is_one_json_array(client: httpx.AsyncClient) -> None:
    response = await client.post(GEMINI + ":streamGenerateContent", json=HELLO)
    objects = response.json()
    assert isinstance(objects, list) and len(objects) == 17
    assert objects[-1]["candidates"][0]["finishReason"] == "STOP"


async def test_candidate_count_gives_numbered_candidates(client: httpx.AsyncClient) -> None:
    body = {**HELLO, "generationConfig": {"candidateCount": 2}}
    answer = (await client.post(GEMINI + ":generateContent", json=body)).json()
    assert [c["index"] for c in answer["candidates"]] == [0, 1]
    assert text_of(answer, 1).startswith("Simulated reply #2 to:")
    assert answer["usageMetadata"]["candidatesTokenCount"] == 32


async def test_function_call_then_function_response(client: httpx.AsyncClient) -> None:
    body: Any = {**HELLO, "tools": [WEATHER]}
    answer = (await client.post(GEMINI + ":generateContent", json=body)).json()
    part = answer["candidates"][0]["content"]["parts"][0]
    assert part == {"functionCall": {"name": "get_weather", "args": {"city": "sample", "days": 1}}}
    assert answer["candidates"][0]["finishReason"] == "STOP"
    result = {"functionResponse": {"name": "get_weather", "response": {"output": "rain, 9C"}}}
    body["contents"] = [
        *HELLO["contents"],
        {"role": "model", "parts": [part]},
        {"role": "user", "parts": [result]},
    ]
    answer = (await client.post(GEMINI + ":generateContent", json=body)).json()
    assert text_of(answer).startswith("Simulated reply to tool result: rain, 9C")


async def test_function_responses_must_answer_each_call_of_the_turn_before(
    client: httpx.AsyncClient,
) -> None:
    """Too few responses, or responses after no call, are Google's 400s, in its words."""
    call = {"functionCall": {"name": "get_time", "args": {}}}
    result = {"functionResponse": {"name": "get_time", "response": {"output": "noon"}}}
    asked = HELLO["contents"][0]
    turns: list[Any] = [
        [asked, {"role": "model", "parts": [call, call]}, {"role": "user", "parts": [result]}],
        [asked, {"role": "model", "parts": [call]}, {"role": "user", "parts": [{"text": "?"}]}],
        [asked, {"role": "model", "parts": [{"text": "hm"}]}, {"role": "user", "parts": [result]}],
    ]
    for contents in turns:
        refused = await client.post(GEMINI + ":generateContent", json={"contents": contents})
        assert refused.status_code == 400
        assert refused.json()["error"]["status"] == "INVALID_ARGUMENT"
        assert refused.json()["error"]["message"].startswith("Please ensure that")
    turns[0][2]["parts"] = [result, result]
    answered = await client.post(GEMINI + ":generateContent", json={"contents": turns[0]})
    assert answered.status_code == 200


async def test_tool_config_forces_or_forbids_calls(client: httpx.AsyncClient) -> None:
    forced = {
        **HELLO,
        "tools": [WEATHER],
        "toolConfig": {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}
        },
    }
    answer = (await client.post(GEMINI + ":generateContent", json=forced)).json()
    assert answer["candidates"][0]["content"]["parts"][0]["functionCall"]["name"] == "get_time"
    forbidden = {**forced, "toolConfig": {"functionCallingConfig": {"mode": "NONE"}}}
    answer = (await client.post(GEMINI + ":generateContent", json=forbidden)).json()
    assert "functionCall" not in answer["candidates"][0]["content"]["parts"][0]


async def test_streamed_parallel_calls_come_whole(client: httpx.AsyncClient) -> None:
    body = {"contents": [{"parts": [{"text": "both in parallel"}]}], "tools": [WEATHER]}
    response = await client.post(GEMINI + ":streamGenerateContent?alt=sse", json=body)
    objects = sse_objects(response.text)
    calls = [o["candidates"][0]["content"]["parts"][0]["functionCall"] for o in objects[:-1]]
    assert [call["name"] for call in calls] == ["get_weather", "get_time"]
    assert objects[-1]["usageMetadata"]["candidatesTokenCount"] == math.ceil(
        len(json.dumps(calls[0]["args"], separators=(",", ":"))) / 8
    ) + math.ceil(len("{}") / 8)


async def test_json_output_fills_the_schema(client: httpx.AsyncClient) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    body = {
        **HELLO,
        "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": schema},
    }
    answer = (await client.post(GEMINI + ":generateContent", json=body)).json()
    assert json.loads(text_of(answer)) == {"n": 1}


async def test_count_tokens_agrees_with_generation(client: httpx.AsyncClient) -> None:
    body = {**HELLO, "systemInstruction": {"parts": [{"text": "be brief"}]}, "tools": [WEATHER]}
    used = (await client.post(GEMINI + ":generateContent", json=body)).json()["usageMetadata"]
    wrapped = {"generateContentRequest": {"model": "models/sim-chat", **body}}
    counted = (await client.post(GEMINI + ":countTokens", json=wrapped)).json()
    assert counted == {"totalTokens": used["promptTokenCount"]}
    vertex = await client.post(VERTEX + ":countTokens", json=body, headers={"x-goog-api-key": ""})
    assert vertex.status_code == 401  # Vertex AI wants a bearer token
    bearer = {"Authorization": f"Bearer {KEY}"}
    counted = (await client.post(VERTEX + ":countTokens", json=body, headers=bearer)).json()
    assert counted == {"totalTokens": used["promptTokenCount"]}


async def test_embeddings_are_deterministic_unit_vectors(client: httpx.AsyncClient) -> None:
    one = {"content": {"parts": [{"text": "embed me"}]}, "outputDimensionality": 16}
    single = (await client.post("/v1beta/models/sim-embed:embedContent", json=one)).json()
    values = single["embedding"]["values"]
    assert len(values) == 16 and math.isclose(math.fsum(v * v for v in values), 1, rel_tol=1e-5)
    batch = {"requests": [{"model": "models/sim-embed", **one}, {"model": "m", **one}]}
    answer = (await client.post("/v1beta/models/sim-embed:batchEmbedContents", json=batch)).json()
    assert [e["values"] for e in answer["embeddings"]] == [values, values]
    assert answer["usageMetadata"] == {"promptTokenCount": 4}
    vertex = VERTEX.replace("sim-chat", "sim-embed") + ":predict"
    body = {"instances": [{"content": "embed me"}], "parameters": {"outputDimensionality": 16}}
    bearer = {"Authorization": f"Bearer {KEY}"}
    answer = (await client.post(vertex, json=body, headers=bearer)).json()
    prediction = answer["predictions"][0]["embeddings"]
    assert prediction["values"] == values and prediction["statistics"]["token_count"] == 2


@pytest.mark.parametrize(
    ("path", "headers", "status", "name"),
    [
        (GEMINI, {"x-goog-api-key": "wrong"}, 400, "INVALID_ARGUMENT"),
        (GEMINI, {"x-goog-api-key": ""}, 403, "PERMISSION_DENIED"),
        (VERTEX, {"Authorization": "Bearer wrong"}, 401, "UNAUTHENTICATED"),
    ],
)
async def test_credentials_are_checked_the_way_google_does(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], status: int, name: str
) -> None:
    response = await client.post(path + ":generateContent", json=HELLO, headers=headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (status, name)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_failed_function_call_is_a_candidate_without_content(
    client: httpx.AsyncClient, stream: bool
) -> None:
    headers = {"x-sim-finish-reason": "MALFORMED_FUNCTION_CALL"}
    method = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
    response = await client.post(GEMINI + method, json=HELLO, headers=headers)
    assert response.status_code == 200
    if stream:
        [event] = [line for line in response.text.splitlines() if line.startswith("data: ")]
        answer = json.loads(event[6:])
    else:
        answer = response.json()
    assert answer["candidates"] == [{"finishReason": "MALFORMED_FUNCTION_CALL", "index": 0}]
    other = await client.post(
        GEMINI + ":generateContent", json=HELLO, headers={"x-sim-finish-reason": "OTHER"}
    )
    [candidate] = other.json()["candidates"]
    assert candidate["finishReason"] == "OTHER" and candidate["content"]["parts"][0]["text"]


async def test_faults_and_bad_requests_answer_in_googles_error_shape(
    client: httpx.AsyncClient,
) -> None:
    limited = await client.post(
        GEMINI + ":generateContent", json=HELLO, headers={"x-sim-fault": "status:429"}
    )
    # Google says how long to wait in the body (RetryInfo), not in a retry-after header.
    assert limited.status_code == 429 and "retry-after" not in limited.headers
    assert limited.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert limited.json()["error"]["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}
    ]
    missing = await client.post(GEMINI + ":generateContent", json={"contents": []})
    assert missing.status_code == 400
    assert missing.json()["error"]["status"] == "INVALID_ARGUMENT"
    unknown = await client.post(GEMINI + ":summon", json=HELLO)
    assert unknown.status_code == 404 and unknown.json()["error"]["status"] == "NOT_FOUND"


async def test_stop_after_cuts_a_stream_without_its_finish(client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(
            GEMINI + ":streamGenerateContent?alt=sse",
            json=HELLO,
            headers={"x-sim-fault": "stop-after:2"},
        )
    # Not streaming: the same fault resets the connection instead.
    with pytest.raises(httpx.TransportError):
        await client.post(
            GEMINI + ":generateContent", json=HELLO, headers={"x-sim-fault": "stop-after:2"}
        )


PNG = "iVBORw0KGgo="


def with_result(result: dict[str, Any]) -> dict[str, Any]:
    """A conversation whose last turn answers a ``snap`` call with ``result`` (the fields of
    its ``functionResponse`` beside the name)."""
    call = {"functionCall": {"name": "snap", "args": {}}}
    response = {"functionResponse": {"name": "snap", **result}}
    return {
        "contents": [
            *HELLO["contents"],
            {"role": "model", "parts": [call]},
            {"role": "user", "parts": [response]},
        ]
    }


async def test_a_function_responses_media_parts_are_read_as_images(
    client: httpx.AsyncClient,
) -> None:
    text_only = with_result({"response": {"output": "a cat"}})
    plain = (await client.post(GEMINI + ":generateContent", json=text_only)).json()
    image = {"inlineData": {"mimeType": "image/png", "data": PNG}}
    snake = {"inline_data": {"mime_type": "application/pdf", "data": "JVBERi0xLjQK"}}
    with_media = with_result({"response": {"output": "a cat"}, "parts": [image, snake]})
    answer = (await client.post(GEMINI + ":generateContent", json=with_media)).json()
    assert text_of(answer).startswith("Simulated reply to tool result: a cat")
    used, before = answer["usageMetadata"], plain["usageMetadata"]
    assert used["promptTokenCount"] == before["promptTokenCount"] + 2 * 85
    bearer = {"Authorization": f"Bearer {KEY}"}
    by_uri = {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/a.png"}}
    named = {"inlineData": {**image["inlineData"], "displayName": "a.png"}}
    on_vertex = with_result({"response": {}, "parts": [by_uri, named]})
    answer = await client.post(VERTEX + ":generateContent", json=on_vertex, headers=bearer)
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("result", "words"),
    [
        # The Gemini API's FunctionResponsePart holds inline data only.
        (
            {"parts": [{"fileData": {"mimeType": "image/png", "fileUri": "gs://b/a.png"}}]},
            'Unknown name "fileData"',
        ),
        ({"output": "a cat"}, 'Unknown name "output"'),
        (
            {"parts": [{"inlineData": {"mimeType": "image/png", "data": PNG, "x": 1}}]},
            'Unknown name "x"',
        ),
        ({"parts": [{}]}, "required oneof field 'data'"),
        ({"parts": [{"inlineData": {"data": PNG}}]}, "mime_type"),
        (
            {
                "parts": [
                    {"inlineData": {"mimeType": "image/png", "data": "data:image/png;base64,"}}
                ]
            },
            "Base64 decoding failed",
        ),
        ({"parts": {"inlineData": {}}}, "Invalid value at"),
        ({"response": "a cat"}, "google.protobuf.Struct"),
    ],
)
async def test_a_function_response_google_would_refuse_is_a_400(
    client: httpx.AsyncClient, result: dict[str, Any], words: str
) -> None:
    response = await client.post(GEMINI + ":generateContent", json=with_result(result))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and words in error["message"]
    assert "contents[2].parts[0].function_response" in error["message"]


async def test_vertex_ai_refuses_what_only_the_gemini_api_takes(
    client: httpx.AsyncClient,
) -> None:
    # Vertex AI's v1 FunctionResponse has no id (the Gemini API's does).
    body = with_result({"id": "call_1", "response": {}})
    assert (await client.post(GEMINI + ":generateContent", json=body)).status_code == 200
    bearer = {"Authorization": f"Bearer {KEY}"}
    response = await client.post(VERTEX + ":generateContent", json=body, headers=bearer)
    assert (
        response.status_code == 400 and 'Unknown name "id"' in response.json()["error"]["message"]
    )


@pytest.mark.parametrize("path", [GEMINI, VERTEX])
@pytest.mark.parametrize("count", [1, 2])
async def test_a_prompt_the_content_filter_catches_is_blocked_without_candidates(
    client: httpx.AsyncClient, path: str, count: int
) -> None:
    # As Google answers a blocked prompt: promptFeedback with a blockReason, no candidates
    # however many were asked for, the prompt's tokens in the usage; streamed, that one object.
    body = {**HELLO, "generationConfig": {"candidateCount": count}}
    headers = {"x-sim-content-filter": "prompt"}
    if path == VERTEX:
        headers["authorization"] = "Bearer " + KEY
    answer = (await client.post(path + ":generateContent", json=body, headers=headers)).json()
    stream = await client.post(path + ":streamGenerateContent?alt=sse", json=body, headers=headers)
    for blocked in [answer, *sse_objects(stream.text)]:
        assert "candidates" not in blocked
        assert blocked["promptFeedback"]["blockReason"] == "SAFETY"
        assert blocked["usageMetadata"]["promptTokenCount"] > 0
        assert "candidatesTokenCount" not in blocked["usageMetadata"]
    assert len(sse_objects(stream.text)) == 1
