"""Bedrock streams and calls: event-stream framing, stream events, the provider, SigV4, config."""

from __future__ import annotations

import datetime
import itertools
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tollway.auth.vault import Vault
from tollway.config.schema import DeploymentConfig, Settings
from tollway.config.types import SecretRef
from tollway.core.errors import InvalidModelOutput, UpstreamProtocolError, UpstreamStatusError
from tollway.core.types import (
    AwsCredentials,
    ChatRequest,
    Deployment,
    Message,
    UpstreamTimeouts,
    Usage,
)
from tollway.providers.base import ProviderResources
from tollway.providers.bedrock import BedrockProvider
from tollway.providers.eventstream import EventStreamDecoder
from tollway.routing.table import build_routing_table
from tollway.simulator import eventstream
from tollway.simulator.aws_auth import SignedRequest, verify_signature
from tollway.wire.bedrock_stream import StreamReader

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
KEY_ID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
USAGE = {"inputTokens": 5, "outputTokens": 3, "totalTokens": 8}


def converse_events(texts: list[str], calls: list[tuple[str, list[str]]]) -> list[bytes]:
    """The framed messages of a ConverseStream answer with these texts and tool calls."""
    frames = [eventstream.event("messageStart", {"role": "assistant", "p": "abc"})]
    index = 0
    if texts:
        for piece in texts:
            delta = {"contentBlockIndex": 0, "delta": {"text": piece}, "p": "ab"}
            frames.append(eventstream.event("contentBlockDelta", delta))
        frames.append(eventstream.event("contentBlockStop", {"contentBlockIndex": 0}))
        index = 1
    for number, (name, fragments) in enumerate(calls):
        use = {"toolUseId": f"tooluse_{number}", "name": name}
        start = {"contentBlockIndex": index, "start": {"toolUse": use}}
        frames.append(eventstream.event("contentBlockStart", start))
        for fragment in fragments:
            delta = {"contentBlockIndex": index, "delta": {"toolUse": {"input": fragment}}}
            frames.append(eventstream.event("contentBlockDelta", delta))
        frames.append(eventstream.event("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    stop = "tool_use" if calls else "end_turn"
    frames.append(eventstream.event("messageStop", {"stopReason": stop}))
    frames.append(eventstream.event("metadata", {"usage": USAGE, "metrics": {"latencyMs": 1}}))
    return frames


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets."""
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(st.lists(st.text(max_size=10), max_size=4), st.lists(st.integers(0, 10_000), max_size=12))
def test_decoder_finds_every_message_however_the_bytes_arrive(
    texts: list[str], cuts: list[int]
) -> None:
    frames = converse_events(texts, [("f", ['{"a":', "1}"])])
    decoder = EventStreamDecoder()
    messages = [m for piece in split(b"".join(frames), cuts) for m in decoder.feed(piece)]
    assert [m.payload for m in messages] == [f[-4 - len(m.payload) : -4] for f, m in zip(
        frames, messages, strict=True)]  # fmt: skip
    assert messages[0].headers == {
        ":event-type": "messageStart",
        ":content-type": "application/json",
        ":message-type": "event",
    }


@pytest.mark.parametrize("where", [8, -2, 30])
def test_a_corrupt_frame_is_a_protocol_error(where: int) -> None:
    frame = bytearray(eventstream.event("messageStart", {"role": "assistant"}))
    frame[where] ^= 0xFF
    with pytest.raises(UpstreamProtocolError, match="corrupt"):
        EventStreamDecoder().feed(bytes(frame))


def read(frames: list[bytes]) -> tuple[list[Any], StreamReader]:
    reader = StreamReader("m")
    decoder = EventStreamDecoder()
    chunks = []
    for message in decoder.feed(b"".join(frames)):
        chunk = reader.feed(message.headers, message.payload)
        if chunk is not None:
            chunks.append(chunk)
    return chunks, reader


def test_stream_events_become_chunks() -> None:
    chunks, reader = read(converse_events(["Hel", "lo"], [("a", ['{"x":', "1}"]), ("b", ["{}"])]))
    assert reader.stopped and reader.done
    assert chunks[0].choices[0].role == "assistant"
    assert "".join(c.choices[0].content or "" for c in chunks if c.choices) == "Hello"
    deltas = [d for c in chunks if c.choices for d in c.choices[0].tool_calls or ()]
    assert [(d.index, d.id, d.name, d.arguments) for d in deltas] == [
        (0, "tooluse_0", "a", ""),
        (0, None, None, '{"x":'),
        (0, None, None, "1}"),
        (1, "tooluse_1", "b", ""),
        (1, None, None, "{}"),
    ]
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].choices == []
    assert chunks[-1].usage == Usage(input_tokens=5, output_tokens=3)
    assert len({c.id for c in chunks}) == 1 and chunks[0].model == "m"


@pytest.mark.parametrize(
    ("frame", "status", "kind"),
    [
        (eventstream.exception("throttlingException", "slow down"), 429, "ThrottlingException"),
        (eventstream.exception("modelStreamErrorException", "x"), 502, "ModelStreamErrorException"),
        (eventstream.exception("internalServerException", "oops"), 502, "InternalServerException"),
        (
            eventstream.encode_message(
                {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "x"},
                b"",
            ),
            502,
            "InternalFailure",
        ),
    ],
)  # fmt: skip
def test_exception_frames_raise_the_failure_they_report(
    frame: bytes, status: int, kind: str
) -> None:
    first = eventstream.event("messageStart", {"role": "assistant"})
    with pytest.raises(UpstreamStatusError) as caught:
        read([first, frame])
    assert caught.value.status == status and caught.value.kind == kind
    # The exception's name is Bedrock's, never one of OpenAI's codes.
    assert caught.value.code == ("rate_limit_exceeded" if status == 429 else None)
    assert caught.value.message.startswith("upstream stream failed")


def test_malformed_events_are_protocol_errors() -> None:
    bad = [
        eventstream.encode_message({":message-type": "event", ":event-type": "x"}, b"{nope"),
        eventstream.event("contentBlockDelta", {"delta": {"text": "x"}}),
        eventstream.event("contentBlockDelta", {"contentBlockIndex": 3, "delta": {
            "toolUse": {"input": "{"}}}),
    ]  # fmt: skip
    for frame in bad:
        with pytest.raises(UpstreamProtocolError):
            read([frame])


def test_a_stream_ended_as_malformed_is_a_failure_naming_the_reason() -> None:
    frames = converse_events(["Let me", " call"], [])
    frames[-2] = eventstream.event("messageStop", {"stopReason": "malformed_tool_use"})
    with pytest.raises(InvalidModelOutput, match="Bedrock ended it with malformed_tool_use"):
        read(frames)


def test_unknown_events_and_deltas_are_ignored() -> None:
    frames = [
        eventstream.event("messageStart", {"role": "assistant"}),
        eventstream.event("somethingNew", {"x": 1}),
        eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {
            "citation": {"title": "x"}}}),
        eventstream.event("contentBlockStart", {"contentBlockIndex": 1, "start": {
            "toolResult": {"toolUseId": "t"}}}),
        eventstream.event("contentBlockStop", {"contentBlockIndex": 1}),
        eventstream.event("messageStop", {"stopReason": "end_turn"}),
    ]  # fmt: skip
    chunks, reader = read(frames)
    assert len(chunks) == 2 and reader.stopped and not reader.done


class FakeUpstream:
    """Stands in for ``UpstreamClient``: records the call, answers with the given bytes."""

    def __init__(self, pieces: list[bytes] | None = None, answer: Any = None) -> None:
        self.pieces = pieces or []
        self.answer = answer
        self.url: Any = None
        self.body = b""
        self.headers: dict[str, str] = {}

    async def post_json(self, url: Any, body: bytes, headers: dict[str, str], *_: Any) -> Any:
        self.url, self.body, self.headers = url, body, headers
        return self.answer

    async def post_bytes_stream(
        self, url: Any, body: bytes, headers: dict[str, str], *_: Any
    ) -> AsyncIterator[bytes]:
        self.url, self.body, self.headers = url, body, headers
        for piece in self.pieces:
            yield piece


def deployment(**changes: Any) -> Deployment:
    fields: dict[str, Any] = {
        "id": "d",
        "provider": "bedrock",
        "model": MODEL,
        "api_base": "https://bedrock-runtime.us-east-1.amazonaws.com",
        "timeouts": UpstreamTimeouts(1, 1, 1),
        "region": "us-east-1",
        "aws_credentials": AwsCredentials(SecretRef("env:KEY_ID"), SecretRef("env:SECRET")),
    }
    return Deployment(**(fields | changes))


def provider(upstream: FakeUpstream) -> BedrockProvider:
    vault = Vault({"KEY_ID": KEY_ID, "SECRET": SECRET, "BEARER": "bedrock-api-key"})
    return BedrockProvider(ProviderResources(client=upstream, vault=vault))  # type: ignore[arg-type]


REQUEST = ChatRequest(model="c", messages=[Message(role="user", content="hi")])


async def test_chat_signs_the_exact_url_and_body_it_sends() -> None:
    answer = {
        "output": {"message": {"role": "assistant", "content": [{"text": "hello"}]}},
        "stopReason": "end_turn",
        "usage": USAGE,
    }
    upstream = FakeUpstream(answer=answer)
    request = ChatRequest(
        model="c", messages=[Message(role="user", content="hi")], upstream_headers={"x-sim": "1"}
    )
    response = await provider(upstream).chat(request, deployment())
    assert response.choices[0].message.text() == "hello" and response.model == MODEL
    url = str(upstream.url)
    assert url.endswith("/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse")
    assert orjson.loads(upstream.body) == {
        "messages": [{"role": "user", "content": [{"text": "hi"}]}]
    }
    authorization = upstream.headers["Authorization"]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
    assert "/us-east-1/bedrock/aws4_request" in authorization
    assert "x-sim" in authorization.split("SignedHeaders=")[1]
    received = SignedRequest("POST", url, upstream.headers, upstream.body)
    assert verify_signature(received, (KEY_ID, SECRET)) is None


def test_signature_checks_catch_tampering_wrong_keys_and_old_dates() -> None:
    upstream = FakeUpstream(answer=None)
    prepared = provider(upstream)._prepare(REQUEST, deployment(), "converse")
    url, body, headers = str(prepared[0]), prepared[1], prepared[2]
    good = SignedRequest("POST", url, headers, body)
    assert verify_signature(good, (KEY_ID, SECRET)) is None
    tampered = SignedRequest("POST", url, headers, body.replace(b"hi", b"ho"))
    assert verify_signature(tampered, (KEY_ID, SECRET))[0] == "InvalidSignatureException"  # type: ignore[index]
    assert verify_signature(good, (KEY_ID, "other"))[0] == "InvalidSignatureException"  # type: ignore[index]
    assert verify_signature(good, ("AKIDOTHER", SECRET))[0] == "UnrecognizedClientException"  # type: ignore[index]
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=6)
    expired = verify_signature(good, (KEY_ID, SECRET), now=later)
    assert expired is not None and expired[1].startswith("Signature expired")
    unsigned = SignedRequest("POST", url, {}, body)
    assert verify_signature(unsigned, (KEY_ID, SECRET))[0] == "IncompleteSignatureException"  # type: ignore[index]


async def test_session_tokens_are_sent_and_bearer_keys_skip_signing() -> None:
    upstream = FakeUpstream(answer=None)
    credentials = AwsCredentials(
        SecretRef("env:KEY_ID"), SecretRef("env:SECRET"), SecretRef("literal-token")
    )
    _, _, headers, secret = provider(upstream)._prepare(
        REQUEST, deployment(aws_credentials=credentials), "converse"
    )
    assert headers["X-Amz-Security-Token"] == "literal-token"
    assert secret == (SECRET, KEY_ID, "literal-token")  # each masked in errors
    assert "x-amz-security-token" in headers["Authorization"]
    bearer = deployment(aws_credentials=None, api_key=SecretRef("env:BEARER"))
    _, _, headers, secret = provider(upstream)._prepare(REQUEST, bearer, "converse")
    assert headers["Authorization"] == "Bearer bedrock-api-key" and secret == "bedrock-api-key"
    assert "X-Amz-Date" not in headers


async def collect(pieces: list[bytes]) -> list[Any]:
    upstream = FakeUpstream(pieces)
    return [chunk async for chunk in provider(upstream).stream(REQUEST, deployment())]


async def test_provider_streams_until_metadata() -> None:
    data = b"".join(converse_events(["a", "b"], []))
    chunks = await collect([data[:7], data[7:100], data[100:]])
    assert "".join(c.choices[0].content or "" for c in chunks if c.choices) == "ab"
    assert chunks[-1].usage == Usage(input_tokens=5, output_tokens=3)


async def test_a_stream_without_message_stop_is_a_protocol_error() -> None:
    frames = converse_events(["a"], [])
    with pytest.raises(UpstreamProtocolError, match="messageStop"):
        await collect(frames[:-2])
    ended = await collect(frames[:-1])  # no metadata: complete, without usage
    assert ended[-1].choices[0].finish_reason == "stop"


async def test_metadata_before_message_stop_is_held_until_the_finish() -> None:
    frames = converse_events(["a"], [])
    frames[-2], frames[-1] = frames[-1], frames[-2]
    chunks = await collect(frames)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage == Usage(input_tokens=5, output_tokens=3)
    with pytest.raises(UpstreamProtocolError, match="messageStop"):
        await collect([*frames[:-2], frames[-2]])  # metadata, and no messageStop


def bedrock(**fields: Any) -> dict[str, Any]:
    return {"provider": "bedrock", "model": MODEL, **fields}


KEYS = {"aws_access_key_id": "env:A", "aws_secret_access_key": "env:S"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (KEYS, "needs region"),
        ({**KEYS, "region": "Mars"}, "AWS region"),
        ({"region": "us-east-1"}, "needs api_key"),
        ({**KEYS, "region": "us-east-1", "api_key": "env:K"}, "not both"),
        ({"region": "us-east-1", "aws_access_key_id": "env:A"}, "go together"),
        ({"region": "us-east-1", "api_key": "env:K", "aws_session_token": "env:T"}, "session"),
        ({"region": "us-east-1", "api_key": "env:K", "bedrock_family": "llama"}, "'claude'"),
        ({"region": "us-east-1", "api_key": "env:K", "bedrock_family": "nova"},
         "is a Claude model, not 'nova'"),
        ({"region": "us-east-1", "api_key": "env:K",
          "model": "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/a1"},
         "is in region 'eu-west-1', not the deployment's region 'us-east-1'"),
    ],
)  # fmt: skip
def test_config_says_what_a_bedrock_deployment_lacks(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DeploymentConfig.model_validate(bedrock(**fields))


def test_a_model_arn_in_the_deployments_region_or_without_one_is_taken() -> None:
    for model in (
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-v1:0",
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-v1:0",
        "us.anthropic.claude-3-haiku-v1:0",
    ):
        DeploymentConfig.model_validate(bedrock(model=model, region="us-east-1", api_key="env:K"))


def test_only_bedrock_deployments_declare_a_bedrock_family() -> None:
    openai = {"provider": "openai", "model": "gpt-4o", "bedrock_family": "claude"}
    with pytest.raises(ValidationError, match="'bedrock_family' is for provider 'bedrock'"):
        DeploymentConfig.model_validate(openai)
    profile = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2"
    declared = bedrock(model=profile, region="us-east-1", api_key="env:K", bedrock_family="nova")
    settings = Settings.model_validate({"models": [{"name": "n", "deployments": [declared]}]})
    (deployment,) = build_routing_table(settings, None).candidates("n", "chat")
    assert deployment.bedrock_family == "nova"


def test_config_names_the_extra_to_install_without_botocore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "botocore" else real(name, *a)
    )
    with pytest.raises(ValidationError, match=r"pip install tollway\[bedrock\]"):
        DeploymentConfig.model_validate(bedrock(region="us-east-1", api_key="env:K"))


def test_routing_builds_the_regional_endpoint_and_credentials() -> None:
    settings = Settings.model_validate(
        {
            "models": [
                {
                    "name": "claude",
                    "deployments": [
                        bedrock(region="eu-west-3", aws_session_token="env:T", **KEYS),
                        bedrock(region="us-west-2", api_key="env:K", api_base="http://x/"),
                    ],
                }
            ]
        }
    )
    signed, keyed = build_routing_table(settings, None).candidates("claude", "chat")
    assert signed.api_base == "https://bedrock-runtime.eu-west-3.amazonaws.com"
    assert signed.aws_credentials == AwsCredentials(
        SecretRef("env:A"), SecretRef("env:S"), SecretRef("env:T")
    )
    assert (keyed.api_base, keyed.aws_credentials, keyed.region) == ("http://x", None, "us-west-2")
    refs = settings.models[0].deployments[0].secret_refs()
    assert [ref.redacted() for ref in refs] == ["env:A", "env:S", "env:T"]
