"""The simulated Bedrock API on a real socket, driven by botocore's own bedrock-runtime client.

botocore signs with SigV4, serialises Converse bodies, decodes the event streams and maps
errors from ``x-amzn-errortype``, so passing here means the simulator speaks the real format.
botocore is synchronous: its calls run in a thread while the simulator serves this loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.session import get_session

from tollway.simulator import FILLER_WORDS, Simulator, SimulatorSettings
from tollway.simulator.bedrock_api import thinking_signature
from tollway.simulator.eventstream import CONTENT_TYPE

KEY_ID, SECRET = "AKIDSIMULATOR0000001", "simulator/secret+key"
MODEL = "anthropic.claude-sim-v1:0"
WEATHER: Any = {
    "toolSpec": {
        "name": "get_weather",
        "inputSchema": {
            "json": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            }
        },
    }
}
CLOCK: Any = {"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object"}}}}


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": [{"text": text}]}]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(
        SimulatorSettings(aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, api_key="bk-1")
    )
    await simulator.start()
    yield simulator
    await simulator.stop()


def client(sim: Simulator, secret: str = SECRET, headers: dict[str, str] | None = None) -> Any:
    """A botocore bedrock-runtime client for the simulator that never retries."""
    bedrock = get_session().create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=sim.url,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}),
    )

    def add_headers(request: Any, **_: Any) -> None:
        for name, value in (headers or {}).items():
            request.headers[name] = value

    bedrock.meta.events.register("before-sign.bedrock-runtime.*", add_headers)
    return bedrock


async def call(method: Callable[..., Any], **kwargs: Any) -> Any:
    return await asyncio.to_thread(method, **kwargs)


async def stream_events(bedrock: Any, **kwargs: Any) -> list[dict[str, Any]]:
    def run() -> list[dict[str, Any]]:
        return list(bedrock.converse_stream(**kwargs)["stream"])

    return await asyncio.to_thread(run)


async def test_converse_answers_with_text_usage_and_metrics(sim: Simulator) -> None:
    answer = await call(
        client(sim).converse,
        modelId=MODEL,
        system=[{"text": "be brief"}],
        messages=user("hello there bedrock"),
    )
    text = answer["output"]["message"]["content"][0]["text"]
    assert text.startswith("Simulated reply to: hello there bedrock alpha")
    assert answer["stopReason"] == "end_turn"
    usage = answer["usage"]
    assert usage["inputTokens"] == 3 + 2 + 3 + 3  # system and user turns, by the token rule
    assert usage["outputTokens"] == 16
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    assert "latencyMs" in answer["metrics"]
    recorded = sim.requests[-1]
    assert recorded.path == f"/model/{MODEL}/converse"
    assert recorded.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")


async def test_converse_stream_events_in_order(sim: Simulator) -> None:
    events = await stream_events(
        client(sim),
        modelId=MODEL,
        messages=user("stream please"),
        inferenceConfig={"maxTokens": 5},
    )
    kinds = [next(iter(event)) for event in events]
    assert kinds == ["messageStart", *["contentBlockDelta"] * 5, "contentBlockStop", "messageStop",
                     "metadata"]  # fmt: skip
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events[1:6])
    assert text == "Simulated reply to: stream please"
    assert events[-2]["messageStop"]["stopReason"] == "max_tokens"
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 5


@pytest.mark.parametrize(
    ("events", "last"),
    [
        ("metadata-first", ["metadata", "messageStop"]),
        ("no-stop", ["contentBlockStop", "metadata"]),
        ("no-metadata", ["contentBlockStop", "messageStop"]),
    ],
)
async def test_x_sim_events_reorders_or_leaves_out_the_last_events(
    sim: Simulator, events: str, last: list[str]
) -> None:
    bedrock = client(sim, headers={"x-sim-events": events})
    received = await stream_events(bedrock, modelId=MODEL, messages=user("x"))
    assert [next(iter(event)) for event in received][-2:] == last
    with pytest.raises(ClientError, match="x-sim-events must be"):
        await stream_events(client(sim, headers={"x-sim-events": "x"}), modelId=MODEL,
                            messages=user("x"))  # fmt: skip


async def test_tool_use_round_trip_and_streamed_calls(sim: Simulator) -> None:
    bedrock = client(sim)
    config = {"tools": [WEATHER, CLOCK]}
    first = await call(
        bedrock.converse, modelId=MODEL, messages=user("weather?"), toolConfig=config
    )
    assert first["stopReason"] == "tool_use"
    use = first["output"]["message"]["content"][0]["toolUse"]
    assert (use["name"], use["input"]) == ("get_weather", {"city": "sample"})
    result = {"toolResult": {"toolUseId": use["toolUseId"], "content": [{"json": {"t": 21}}]}}
    messages = [
        *user("weather?"),
        first["output"]["message"],
        {"role": "user", "content": [result]},
    ]
    second = await call(bedrock.converse, modelId=MODEL, messages=messages, toolConfig=config)
    assert second["stopReason"] == "end_turn"
    assert '{"t":21}' in second["output"]["message"]["content"][0]["text"]
    events = await stream_events(
        bedrock, modelId=MODEL, messages=user("both in parallel"), toolConfig=config
    )
    starts = [
        e["contentBlockStart"]["start"]["toolUse"] for e in events if "contentBlockStart" in e
    ]
    assert [s["name"] for s in starts] == ["get_weather", "get_time"]
    assert events[-2]["messageStop"]["stopReason"] == "tool_use"


async def test_forced_tool_and_structured_output(sim: Simulator) -> None:
    bedrock = client(sim)
    forced = await call(
        bedrock.converse,
        modelId=MODEL,
        messages=user("what time?"),
        toolConfig={"tools": [WEATHER, CLOCK], "toolChoice": {"tool": {"name": "get_time"}}},
    )
    assert forced["output"]["message"]["content"][0]["toolUse"]["name"] == "get_time"
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    text_format = {
        "type": "json_schema",
        "structure": {"jsonSchema": {"schema": json.dumps(schema), "name": "city"}},
    }
    structured = await call(
        bedrock.converse,
        modelId=MODEL,
        messages=user("json please"),
        outputConfig={"textFormat": text_format},
    )
    assert json.loads(structured["output"]["message"]["content"][0]["text"]) == {"city": "sample"}


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ([{"role": "assistant", "content": [{"text": "hi"}]}], "start with a user message"),
        ([*user("a"), *user("b")], "alternate between user and assistant"),
        (user(" "), "is blank"),
        (
            [{"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": []}}]}],
            "toolConfig field must be defined",
        ),
    ],
)
async def test_validation_errors(sim: Simulator, messages: list[Any], fragment: str) -> None:
    with pytest.raises(ClientError) as caught:
        await call(client(sim).converse, modelId=MODEL, messages=messages)
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException" and fragment in error["Message"]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        (
            {"toolConfig": {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {}}}}]}},
            "toolConfig.tools.0.toolSpec.inputSchema.json.type must be one of the following: "
            "object",
        ),
        (
            {"outputConfig": {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {
                "name": "c", "schema": json.dumps({"type": "object", "properties": {
                    "city": {"type": "string"}}, "additionalProperties": False, "$defs": {
                    "home": {"type": "object"}}})}}}}},
            "'additionalProperties' must be explicitly set to false",
        ),
    ],
)  # fmt: skip
async def test_schemas_bedrock_refuses_are_validation_errors(
    sim: Simulator, fields: dict[str, Any], fragment: str
) -> None:
    # Converse wants every tool's inputSchema an object's; structured output every object
    # closed (nested ones too).
    with pytest.raises(ClientError) as caught:
        await call(client(sim).converse, modelId=MODEL, messages=user("schemas"), **fields)
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException" and fragment in error["Message"]


def _document(name: str, document_format: str = "pdf") -> dict[str, Any]:
    return {"document": {"format": document_format, "name": name, "source": {"bytes": b"%PDF"}}}


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ([_document("report.pdf")], "The document file name can only contain alphanumeric"),
        ([_document("two  spaces")], "more than one consecutive whitespace character"),
        ([_document("a" * 201)], "length between 1 and 200"),
        ([_document("notes", "rtf")], "enum value set: [pdf, csv, doc, docx"),
        ([_document("same"), _document("same")], "can't contain duplicate document names"),
        (
            [{"image": {"format": "bmp", "source": {"bytes": b"BM"}}}],
            "enum value set: [png, jpeg, gif, webp]",
        ),
    ],
)
async def test_images_and_documents_bedrock_refuses_are_validation_errors(
    sim: Simulator, content: list[Any], fragment: str
) -> None:
    messages = [{"role": "user", "content": [*content, {"text": "read it"}]}]
    with pytest.raises(ClientError) as caught:
        await call(client(sim).converse, modelId=MODEL, messages=messages)
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException" and fragment in error["Message"]
    # Names Converse takes, underscores too (which its reference leaves out), pass.
    named = [_document("Q3 report (final) [v2]"), _document("q3_report-v2", "txt")]
    ok = [{"role": "user", "content": [*named, {"text": "read them"}]}]
    answer = await call(client(sim).converse, modelId=MODEL, messages=ok)
    assert answer["stopReason"] == "end_turn"


async def test_a_system_block_other_than_text_is_a_validation_error(sim: Simulator) -> None:
    # (botocore refuses to send it; a gateway speaking HTTP could.)
    document = {"document": {"format": "txt", "name": "rules", "source": {"bytes": "cnVsZXM="}}}
    body = {"messages": user("x"), "system": [{"text": "be brief"}, document]}
    url = f"{sim.url}/model/{MODEL}/converse"
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": "Bearer bk-1"}
        async with session.post(url, json=body, headers=headers) as response:
            assert response.status == 400
            assert "not document" in (await response.json())["message"]


async def test_faults_are_bedrock_exceptions(sim: Simulator) -> None:
    throttled = client(sim, headers={"x-sim-fault": "status:429"})
    with pytest.raises(ClientError) as caught:
        await call(throttled.converse, modelId=MODEL, messages=user("x"))
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    assert caught.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"
    broken = client(sim, headers={"x-sim-fault": "status:503"})
    with pytest.raises(ClientError) as caught:
        await stream_events(broken, modelId=MODEL, messages=user("x"))
    assert caught.value.response["Error"]["Code"] == "ServiceUnavailableException"


async def test_wrong_credentials_are_403s(sim: Simulator) -> None:
    with pytest.raises(ClientError) as caught:
        await call(client(sim, secret="wrong").converse, modelId=MODEL, messages=user("x"))
    assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    url = f"{sim.url}/model/{MODEL}/converse"
    body = json.dumps({"messages": user("bearer")})
    async with aiohttp.ClientSession() as session:
        for authorization, status, kind in [
            (None, 403, "MissingAuthenticationTokenException"),
            ("Bearer nope", 403, "UnrecognizedClientException"),
            ("Bearer bk-1", 200, None),
        ]:
            headers = {"Authorization": authorization} if authorization else {}
            async with session.post(url, data=body, headers=headers) as response:
                assert response.status == status
                if kind is not None:
                    assert response.headers["x-amzn-errortype"].startswith(kind + ":")
                    assert set(await response.json()) == {"message"}


async def test_stop_after_cuts_a_converse_stream(sim: Simulator) -> None:
    url = f"{sim.url}/model/{MODEL}/converse-stream"
    headers = {"Authorization": "Bearer bk-1", "x-sim-fault": "stop-after:2"}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"messages": user("cut")}, headers=headers) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == CONTENT_TYPE
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
        plain = {"Authorization": "Bearer bk-1"}
        async with session.post(
            url.removesuffix("-stream"), json={"messages": user("x")}, headers=plain
        ) as response:
            text = (await response.json())["output"]["message"]["content"][0]["text"]
    assert FILLER_WORDS[0] in text


THINKING = {"thinking": {"type": "enabled", "budget_tokens": 1024}}


async def test_thinking_opens_the_answer_with_signed_reasoning(sim: Simulator) -> None:
    bedrock = client(sim)
    ask: Any = {
        "modelId": MODEL,
        "inferenceConfig": {"maxTokens": 2048},
        "additionalModelRequestFields": THINKING,
    }
    answer = await call(bedrock.converse, messages=user("think, redacted too"), **ask)
    reasoning, redacted, text = answer["output"]["message"]["content"]
    thought = reasoning["reasoningContent"]["reasoningText"]
    assert thought["text"].startswith("Simulated reasoning about: think, redacted too")
    assert thought["signature"] == thinking_signature(thought["text"])
    # botocore reads redactedContent as the blob it is (base64 on the wire).
    assert redacted["reasoningContent"]["redactedContent"] == b"tollway simulated redacted thinking"
    assert "text" in text
    assert answer["usage"]["outputTokens"] == 32  # reasoning and answer, 16 tokens each
    events = await stream_events(bedrock, messages=user("think, redacted too"), **ask)
    deltas = [e["contentBlockDelta"] for e in events if "contentBlockDelta" in e]
    streamed = [d["delta"]["reasoningContent"] for d in deltas if d["contentBlockIndex"] == 0]
    assert "".join(d.get("text", "") for d in streamed) == thought["text"]
    assert streamed[-1] == {"signature": thought["signature"]}
    assert deltas[17]["delta"]["reasoningContent"]["redactedContent"] == (
        b"tollway simulated redacted thinking"
    )
    stops = [e["contentBlockStop"]["contentBlockIndex"] for e in events if "contentBlockStop" in e]
    assert stops == [0, 1, 2]


async def test_reasoning_must_come_back_as_it_was_given(sim: Simulator) -> None:
    bedrock = client(sim)
    ask: Any = {
        "modelId": MODEL,
        "inferenceConfig": {"maxTokens": 2048},
        "additionalModelRequestFields": THINKING,
        "toolConfig": {"tools": [WEATHER]},
    }
    first = await call(bedrock.converse, messages=user("weather?"), **ask)
    turn = first["output"]["message"]
    use = turn["content"][-1]["toolUse"]
    answered = {"toolResult": {"toolUseId": use["toolUseId"], "content": [{"text": "snow"}]}}
    result = {"role": "user", "content": [answered]}
    second = await call(bedrock.converse, messages=[*user("weather?"), turn, result], **ask)
    assert second["stopReason"] == "end_turn"
    without = {"role": "assistant", "content": turn["content"][1:]}
    forged = {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "made up", "signature": "x"}}},
        *turn["content"][1:]]}  # fmt: skip
    for assistant, fragment in [(without, "must start with a thinking block"),
                                (forged, "Invalid signature")]:  # fmt: skip
        with pytest.raises(ClientError) as caught:
            await call(bedrock.converse, messages=[*user("weather?"), assistant, result], **ask)
        assert fragment in caught.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    ("thinking", "max_tokens", "fragment"),
    [
        ({"type": "enabled", "budget_tokens": 100}, 2048, "at least 1024"),
        ({"type": "enabled", "budget_tokens": 4096}, 2048, "greater than thinking.budget_tokens"),
        ({"type": "sometimes"}, 2048, "thinking.type"),
    ],
)
async def test_thinking_is_checked_as_claude_checks_it(
    sim: Simulator, thinking: Any, max_tokens: int, fragment: str
) -> None:
    with pytest.raises(ClientError) as caught:
        await call(
            client(sim).converse,
            modelId=MODEL,
            messages=user("x"),
            inferenceConfig={"maxTokens": max_tokens},
            additionalModelRequestFields={"thinking": thinking},
        )
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert fragment in caught.value.response["Error"]["Message"]


def _uses(*ids: str) -> dict[str, Any]:
    """An assistant turn calling get_time once per id."""
    blocks = [{"toolUse": {"toolUseId": i, "name": "get_time", "input": {}}} for i in ids]
    return {"role": "assistant", "content": blocks}


def _results(*ids: str) -> dict[str, Any]:
    """A user turn answering each id with "noon"."""
    blocks = [{"toolResult": {"toolUseId": i, "content": [{"text": "noon"}]}} for i in ids]
    return {"role": "user", "content": blocks}


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (
            [*user("time?"), _uses("t1"), *user("never mind")],
            "Expected toolResult blocks at messages.2.content for the following Ids: t1",
        ),
        (
            [*user("time?"), _uses("t1", "t2"), _results("t2")],
            "Expected toolResult blocks at messages.2.content for the following Ids: t1",
        ),
        (
            [*user("time?"), _uses("t1"), _results("t9")],
            "Expected toolResult blocks at messages.2.content for the following Ids: t1, "
            "but found: t9",
        ),
        (
            [*user("time?"), _uses("t1"), _results("t1", "t9")],
            "The number of toolResult blocks at messages.2.content exceeds the number of "
            "toolUse blocks of previous turn.",
        ),
        (
            [_results("t1")],
            "The number of toolResult blocks at messages.0.content exceeds the number of "
            "toolUse blocks of previous turn.",
        ),
        (
            [*user("time?"), _uses("t1"), _results("t1"), _uses("t2"), _results("t1")],
            "Expected toolResult blocks at messages.4.content for the following Ids: t2, "
            "but found: t1",
        ),
    ],
)
async def test_tool_results_must_answer_the_tool_uses_before_them(
    sim: Simulator, messages: list[Any], expected: str
) -> None:
    """Each toolUse answered by a toolResult in the next turn, and each toolResult answering a
    toolUse of the turn before: otherwise Bedrock's ValidationException, in its words."""
    config = {"tools": [CLOCK]}
    with pytest.raises(ClientError) as caught:
        await call(client(sim).converse, modelId=MODEL, messages=messages, toolConfig=config)
    error = caught.value.response["Error"]
    assert (error["Code"], error["Message"]) == ("ValidationException", expected)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as caught:
        await stream_events(client(sim), modelId=MODEL, messages=messages, toolConfig=config)
    assert caught.value.response["Error"]["Message"] == expected


async def test_paired_tool_results_are_answered_in_any_order(sim: Simulator) -> None:
    # Results may come in any order, and a last assistant turn's calls await no answer yet.
    config = {"tools": [CLOCK]}
    messages = [*user("time?"), _uses("t1", "t2"), _results("t2", "t1")]
    answer = await call(client(sim).converse, modelId=MODEL, messages=messages, toolConfig=config)
    assert answer["stopReason"] == "end_turn"
    prefilled = [*user("time?"), _uses("t1")]
    await call(client(sim).converse, modelId=MODEL, messages=prefilled, toolConfig=config)


NOVA_2 = "us.amazon.nova-2-lite-v1:0"


async def test_nova_2_reasons_when_its_reasoning_config_asks(sim: Simulator) -> None:
    # Nova 2's reasoning comes as a reasoningContent block, unsigned (Nova does not sign it).
    thinking = {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "medium"}}
    answer = await call(
        client(sim).converse,
        modelId=NOVA_2,
        messages=user("nova thinks"),
        additionalModelRequestFields=thinking,
    )
    first, *rest = answer["output"]["message"]["content"]
    assert first["reasoningContent"]["reasoningText"]["text"]
    assert "signature" not in first["reasoningContent"]["reasoningText"]
    assert any("text" in block for block in rest)
    plain = await call(
        client(sim).converse,
        modelId=NOVA_2,
        messages=user("nova does not think"),
        additionalModelRequestFields={"reasoningConfig": {"type": "disabled"}},
    )
    assert all("reasoningContent" not in b for b in plain["output"]["message"]["content"])


@pytest.mark.parametrize(
    ("model", "config", "fragment"),
    [
        (NOVA_2, {"type": "enabled", "maxReasoningEffort": "xhigh"}, "maxReasoningEffort"),
        (NOVA_2, {"type": "on", "maxReasoningEffort": "low"}, "reasoningConfig.type"),
        (NOVA_2, {"type": "enabled", "budgetTokens": 2048}, "budgetTokens"),
        ("amazon.nova-lite-v1:0", {"type": "enabled", "maxReasoningEffort": "low"}, "extraneous"),
    ],
)
async def test_a_reasoning_config_nova_does_not_take_is_a_validation_error(
    sim: Simulator, model: str, config: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ClientError) as caught:
        await call(
            client(sim).converse,
            modelId=model,
            messages=user("nova reasoning config"),
            additionalModelRequestFields={"reasoningConfig": config},
        )
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException" and fragment in error["Message"]
